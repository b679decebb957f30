"""The multimodal section of a report: which sites had which modalities, and every model's test AUC at every site.

Read from the final rows of ``metrics.jsonl``: a multimodal model's evaluation replies count the
cases of the split having each modality (``n_<modality>``); the fusion pipeline's rows are named by
modality (a single-modality model) and ``fusion-<block>`` (a fusion model).
"""

from __future__ import annotations

from html import escape
from typing import Any

from models.run_config import MODALITIES


def modality_section(lines: list[dict[str, Any]], classification: list[dict[str, Any]]) -> dict[str, Any]:
    """report.json's ``modalities``: per site and split the cases with each modality, and the models' test AUCs by site ({} for a single-input run)."""
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for line in lines:
        if line["round"] != "final" or line["status"] != "ok":
            continue
        found = {m: int(line["metrics"][f"n_{m}"]) for m in MODALITIES if f"n_{m}" in line["metrics"]}
        if found:
            held = counts.setdefault(line["site"], {}).setdefault(line["split"], {})
            for modality, n in found.items():
                held[modality] = max(held.get(modality, 0), n)
    if not counts:
        return {}
    models = sorted(dict.fromkeys(r["model"] for r in classification if r["split"] == "test"), key=lambda m: ("/fusion-" in m, m))  # single modalities first
    sites = list(dict.fromkeys(r["site"] for r in classification if r["split"] == "test"))
    auc = {
        (r["model"], r["site"]): {k: r[k] for k in ("auc", "auc_ci", "n") if k in r}
        for r in classification if r["split"] == "test"
    }  # fmt: skip
    return {"cases": counts, "models": models, "sites": sites, "test_auc": [{"model": m, "site": s, **auc[(m, s)]} for m in models for s in sites if (m, s) in auc]}


INTRO = "Cases of each split having each modality (a model reads what a case has; a site without a modality trains its fusion models on the others)."


def _tables(section: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """The section's two tables as (title, header, rows): cases per modality, and the models' test AUCs by site."""
    modalities = [m for m in MODALITIES if any(m in split for site in section["cases"].values() for split in site.values())]
    counts = [[site, split, *(str(held.get(m, 0)) for m in modalities)] for site, splits in section["cases"].items() for split, held in sorted(splits.items())]
    cells = {(r["model"], r["site"]): r for r in section["test_auc"]}
    aucs = [[model, *(_auc(cells.get((model, site), {})) for site in section["sites"])] for model in section["models"]]
    return [
        ("Modalities per site", ["site", "split", *modalities], counts),
        ("Test AUC (95% CI) of every model at every site", ["model", *section["sites"]], aucs),
    ]


def _auc(cell: dict[str, Any]) -> str:
    """``AUC (lo-hi)``, or n/a."""
    if "auc" not in cell:
        return "n/a"
    return f"{cell['auc']:.3f}" + (f" ({cell['auc_ci'][0]:.3f}-{cell['auc_ci'][1]:.3f})" if "auc_ci" in cell else "")


def modality_markdown(report: dict[str, Any]) -> list[str]:
    """The section as Markdown: the modality table, then the models-by-sites AUC table."""
    section = report.get("modalities")
    if not section:
        return []
    out: list[str] = []
    for i, (title, heads, rows) in enumerate(_tables(section)):
        out += ["", f"{'##' if i == 0 else '###'} {title}", ""] + ([INTRO, ""] if i == 0 else [])
        out += ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)] + ["| " + " | ".join(row) + " |" for row in rows]
    return out


def modality_html(report: dict[str, Any]) -> str:
    """The section as HTML tables."""
    section = report.get("modalities")
    if not section:
        return ""
    parts = []
    for i, (title, heads, rows) in enumerate(_tables(section)):
        tag = "h2" if i == 0 else "h3"
        intro = f'<p class="meta">{escape(INTRO)}</p>' if i == 0 else ""
        head = "".join(f"<th>{escape(h)}</th>" for h in heads)
        body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
        parts.append(f'<{tag} id="modalities-{i}">{escape(title)}</{tag}>{intro}<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>')
    return "".join(parts)
