"""The personalisation section of a report: per test site, the global and the personalised model's test AUC and their DeLong test.

Read from ``personalisation.jsonl`` (written by the server at the final evaluation,
``server/personalisation.py``); the global model's AUC comes from the classification rows. An
external site keeps the global model; a training site that sent no personal metrics is listed with why.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

HEADS = ("site", "status", "global AUC (95% CI)", "personalised AUC (95% CI)", "difference", "epochs", "DeLong p")


def personal_section(run_dir: Path, classification: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """report.json's ``personalisation`` rows, one per test site ([] when the run did not personalise)."""
    path = Path(run_dir) / "personalisation.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in (json.loads(text) for text in path.read_text(encoding="utf-8").splitlines() if text.strip()):
        row: dict[str, Any] = {"site": line["site"], "model": line["model"], "status": line["status"]}
        glob = next((r for r in classification if (r["model"], r["site"], r["split"]) == (line["model"], line["site"], "test")), {})
        row.update({f"global_{k}": glob[k] for k in ("auc", "auc_ci") if k in glob})
        personal, comparison = line.get("metrics", {}), line.get("comparison", {})
        row.update({f"personal_{k}": personal[k] for k in ("auc", "auc_ci", "n") if k in personal})
        if "epochs" in personal:
            row["epochs"] = int(personal["epochs"])
        if "global_auc" in row and "personal_auc" in row:
            row["auc_difference"] = row["personal_auc"] - row["global_auc"]
        row.update({k: comparison[k] for k in ("delong_z", "delong_p") if k in comparison})
        if "reason" in line:
            row["reason"] = line["reason"]
        rows.append(row)
    return sorted(rows, key=lambda r: r["site"])


def personal_missing(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The report's ``missing`` entries of the training sites that sent no personalised metrics."""
    return [{"round": "final", "model": "personalised", "site": r["site"], "split": "test", "reason": r["reason"]} for r in rows if r["status"] == "missing"]


def _cells(row: dict[str, Any]) -> list[str]:
    """One row's cells, in ``HEADS`` order."""
    status = {"ok": "personalised", "global only": "external: global model only"}.get(row["status"], f"missing: {row.get('reason', '')}")
    return [
        row["site"], status, _auc(row, "global"), _auc(row, "personal"), _num(row.get("auc_difference"), signed=True),
        str(row["epochs"]) if "epochs" in row else "n/a", _p(row.get("delong_p")),
    ]


def personal_markdown(report: dict[str, Any]) -> list[str]:
    """The personalisation table in Markdown ([] when the run did not personalise)."""
    rows = report.get("personalisation", [])
    if not rows:
        return []
    out = ["", "## Personalisation (test split)", "", _intro(report), "", "| " + " | ".join(HEADS) + " |", "|---|---|---|---|---:|---:|---:|"]
    return out + ["| " + " | ".join(_cells(r)) + " |" for r in rows]


def personal_html(report: dict[str, Any]) -> str:
    """The personalisation table as HTML ('' when the run did not personalise)."""
    rows = report.get("personalisation", [])
    if not rows:
        return ""
    head = "".join(f'<th class="l">{escape(h)}</th>' if i < 2 else f"<th>{escape(h)}</th>" for i, h in enumerate(HEADS))
    body = "".join(
        "<tr>" + "".join(f'<td class="l">{escape(c)}</td>' if i < 2 else f"<td>{escape(c)}</td>" for i, c in enumerate(_cells(r))) + "</tr>" for r in rows
    )
    return (
        f'<h2 id="personalisation">Personalisation</h2><p class="meta">{escape(_intro(report))}</p>'
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
    )


def _intro(report: dict[str, Any]) -> str:
    """What the personalised models are."""
    how = report.get("run", {}).get("personalise", "")
    what = {
        "finetune": "the global model fine-tuned on the site's training split, its epoch count chosen on the site's validation split",
        "ditto": "the site's Ditto personal model, trained alongside the global one",
    }.get(how, "the site's personalised model")
    return f"Each training site's personalised model ({what}) on its own test cases, next to the global model; DeLong's test of the two on the same cases. The personalised models never left their sites."


def _auc(row: dict[str, Any], side: str) -> str:
    """``AUC (lo-hi)`` of one side, or n/a."""
    if f"{side}_auc" not in row:
        return "n/a"
    ci = row.get(f"{side}_auc_ci")
    return f"{row[f'{side}_auc']:.3f}" + (f" ({ci[0]:.3f}-{ci[1]:.3f})" if ci else "")


def _num(value: Any, signed: bool = False) -> str:
    """Three decimals (with a sign), or n/a."""
    return "n/a" if value is None else f"{value:+.3f}" if signed else f"{value:.3f}"


def _p(value: Any) -> str:
    """A p-value, or n/a."""
    return "n/a" if value is None else "<0.001" if value < 0.001 else f"{value:.3f}"
