"""The multimodal section of a report: which sites had which modalities, and every model's test AUC at every site.

Read from the final rows of ``metrics.jsonl``: a multimodal model's evaluation replies count the
cases of the split having each modality (``n_<modality>``); the fusion pipeline's rows are named by
modality (a single-modality model) and ``fusion-<block>`` (a fusion model).
"""

from __future__ import annotations

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


def modality_markdown(report: dict[str, Any]) -> list[str]:
    """The section as Markdown: the modality table, then the models-by-sites AUC table."""
    section = report.get("modalities")
    if not section:
        return []
    modalities = [m for m in MODALITIES if any(m in split for site in section["cases"].values() for split in site.values())]
    out = ["", "## Modalities per site", "", "Cases of each split having each modality (a model reads what a case has; a site without a modality trains its fusion models on the others).", ""]
    out += ["| site | split | " + " | ".join(modalities) + " |", "|---|---|" + "---:|" * len(modalities)]
    for site, splits in section["cases"].items():
        for split, held in sorted(splits.items()):
            out.append(f"| {site} | {split} | " + " | ".join(str(held.get(m, 0)) for m in modalities) + " |")
    cells = {(r["model"], r["site"]): r for r in section["test_auc"]}
    out += ["", "### Test AUC (95% CI) of every model at every site", ""]
    out += ["| model | " + " | ".join(section["sites"]) + " |", "|---|" + "---|" * len(section["sites"])]
    for model in section["models"]:
        row = []
        for site in section["sites"]:
            cell = cells.get((model, site), {})
            text = f"{cell['auc']:.3f}" if "auc" in cell else "n/a"
            if "auc_ci" in cell:
                text += f" ({cell['auc_ci'][0]:.3f}-{cell['auc_ci'][1]:.3f})"
            row.append(text)
        out.append(f"| {model} | " + " | ".join(row) + " |")
    return out
