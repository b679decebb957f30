"""The cross-validation section of a report: each model's per-fold validation and mean +/- SD, and the chosen fold.

Read from ``cv.json`` (written by the server at the end of cross-validation, ``server/federation.py``).
The SD is the sample SD over folds (ddof 1), as cross-validation results are usually given.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

SUMMARISED = ("auc", "accuracy", "sensitivity", "specificity")


def cv_section(run_dir: Path) -> dict[str, Any]:
    """report.json's ``cross_validation``: cv.json with each model's mean and SD over folds ({} without cross-validation)."""
    path = Path(run_dir) / "cv.json"
    if not path.exists():
        return {}
    payload = json.loads(path.read_text(encoding="utf-8"))
    for model in payload["models"]:
        for key in SUMMARISED:
            values = [f[key] for f in model["folds"] if f.get(key) is not None]
            if values:
                model[f"mean_{key}"] = float(np.mean(values))
                if len(values) > 1:
                    model[f"sd_{key}"] = float(np.std(values, ddof=1))
    return payload


def _mean_sd(model: dict[str, Any], key: str) -> str:
    """``mean +/- SD`` of one metric over the folds (n/a when no fold has it)."""
    if f"mean_{key}" not in model:
        return "n/a"
    sd = model.get(f"sd_{key}")
    return f"{model[f'mean_{key}']:.3f}" + (f" +/- {sd:.3f}" if sd is not None else "")


def _rows(model: dict[str, Any]) -> list[list[str]]:
    """One table row per fold (chosen marked), then the mean +/- SD row."""
    sites = sorted({s for f in model["folds"] for s in f.get("sites", {})})
    rows = []
    for fold in model["folds"]:
        mark = " (chosen)" if fold["fold"] == model["chosen_fold"] else ""
        cells = [f"{fold['fold']}{mark}", str(fold.get("n", "n/a"))]
        cells += ["n/a" if fold.get(k) is None else f"{fold[k]:.3f}" for k in SUMMARISED]
        cells += ["n/a" if fold.get("sites", {}).get(s) is None else f"{fold['sites'][s]:.3f}" for s in sites]
        rows.append(cells)
    rows.append(["mean +/- SD", ""] + [_mean_sd(model, k) for k in SUMMARISED] + [""] * len(sites))
    return rows


def _heads(model: dict[str, Any]) -> list[str]:
    """The per-fold table's column heads: pooled metrics, then each validating site's AUC."""
    sites = sorted({s for f in model["folds"] for s in f.get("sites", {})})
    return ["fold", "n", "pooled AUC", "accuracy", "sensitivity", "specificity"] + [f"AUC {s}" for s in sites]


def _intro(section: dict[str, Any]) -> str:
    """What the section shows."""
    return (
        f"{section['folds']}-fold federated cross-validation: each site's non-test cases dealt into folds stratified by label; "
        f"one federated model per fold, validated on its fold at every training site (pooled from the sites' aggregates; "
        f"proportions at 0.5). Chosen fold: {section['selection']}; only it is tested."
    )


def cv_markdown(report: dict[str, Any]) -> list[str]:
    """The cross-validation section as markdown."""
    section = report.get("cross_validation")
    if not section:
        return []
    out = ["", "## Cross-validation (validation folds)", "", _intro(section)]
    for model in section["models"]:
        heads = _heads(model)
        out += ["", f"### {model['model']}", "", "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
        out += ["| " + " | ".join(row) + " |" for row in _rows(model)]
    return out


def cv_html(report: dict[str, Any]) -> str:
    """The cross-validation section as HTML tables."""
    section = report.get("cross_validation")
    if not section:
        return ""
    parts = [f'<h2 id="cross-validation">Cross-validation</h2><p class="meta">{escape(_intro(section))}</p>']
    for model in section["models"]:
        head = "".join(f"<th>{escape(h)}</th>" for h in _heads(model))
        body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in _rows(model))
        parts.append(f'<h3>{escape(model["model"])}</h3><div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>')
    return "".join(parts)
