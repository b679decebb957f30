"""report.json and report.md from a run directory alone (no Flower, no torch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evaluation.clinical_report import clinical_markdown, clinical_section
from evaluation.convergence import convergence_figures, convergence_markdown, convergence_section
from evaluation.cv_report import cv_markdown, cv_section
from evaluation.modality_report import modality_markdown, modality_section
from evaluation.text import threshold_text
from evaluation.figures import report_figures
from evaluation.html import endpoint_text, render_html
from evaluation.personal_report import personal_markdown, personal_missing, personal_section
from evaluation.pooling import POOLING, curves, pooled_metrics
from evaluation.privacy_report import central_rows, privacy_markdown, privacy_rows
from evaluation.proportions import proportion_cis
from protocol.metrics import COMPARISON_METRICS

SCHEMA = "axilla.report/1"
ROW_FIELDS = (
    "n", "n_positive", "auc", "auc_ci", "accuracy", "accuracy_ci", "sensitivity", "sensitivity_ci",
    "specificity", "specificity_ci", "ppv", "ppv_ci", "npv", "npv_ci", "f1", "kappa", "pr_auc", "brier",
    "threshold", "threshold_midpoint", "calibration_slope", "calibration_intercept", "hl_stat", "hl_p",
)
SEGMENTATION_FIELDS = (
    "n", "dice", "dice_sd", "iou", "iou_sd", "precision", "precision_sd", "recall", "recall_sd", "n_truth_empty", "n_pred_empty",
)
_MODEL_ORDER = {"federated": 0, "pooled": 1}


def build_report(run_dir: Path) -> dict[str, Any]:
    """Assemble the report.json contract of DESIGN.md from config.json, metrics.jsonl and phantom.json."""
    run_dir = Path(run_dir)
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    lines = _read_lines(run_dir / "metrics.jsonl")
    run = config["run"]
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "run": {
            "id": run["run-id"] or run_dir.name,
            "task": run["task"],
            "endpoint": {  # what label 1 vs 0 means (run dirs older than these keys: the default endpoint)
                "name": run.get("endpoint", "axillary lymph-node metastasis"),
                "positive": run.get("endpoint-positive", "metastasis"),
                "negative": run.get("endpoint-negative", "no metastasis"),
            },
            "model": run["model"],
            "strategy": run["strategy"],
            "rounds": run["num-rounds"],
            "local_epochs": run["local-epochs"],
            "image_size": run["image-size"],
            "seed": run["seed"],
            "threshold_rule": run["threshold-rule"],
        },
        "sites": [_site_entry(s) for s in config["sites"]],
    }
    report["run"].update(config.get("description", {}))
    if run.get("personalise", "none") != "none":
        report["run"]["personalise"] = run["personalise"]
    if config.get("excluded"):
        report["excluded"] = config["excluded"]
    final = [line for line in lines if line["round"] == "final" and line["status"] == "ok"]
    order = list(report["run"].get("segmenters", []))
    report["segmentation"] = segmentation_rows([line for line in final if "seg_dice" in line["metrics"]], order)
    if not report["segmentation"]:
        del report["segmentation"]
    final = [line for line in final if "hist_pos" in line["metrics"] or "auc" in line["metrics"]]
    evaluated = [(line["model"], line["site"], line["split"], line["metrics"]) for line in final]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for model, _, split, metrics in evaluated:
        groups.setdefault((model, split), []).append(metrics)
    evaluated += [(model, "all", split, pooled_metrics(group)) for (model, split), group in groups.items() if len(group) > 1]
    evaluated.sort(key=lambda e: _row_key({"model": e[0], "site": e[1], "split": e[2]}))
    report["classification"] = [_classification_row(model, site, split, m) for model, site, split, m in evaluated]
    report["comparisons"] = _comparisons(run_dir / "comparisons.jsonl", report["classification"])
    report["curves"] = [{"model": model, "site": site, "split": split, **curves(m)} for model, site, split, m in evaluated]
    report["pooling"] = POOLING
    report["convergence"] = convergence_section(lines, run)
    privacy = privacy_rows(lines)
    if privacy:
        report["privacy"] = privacy
    central = central_rows(run, lines)
    if central:
        report["central_dp"] = central
    personalisation = personal_section(run_dir, report["classification"])
    if personalisation:
        report["personalisation"] = personalisation
    missing = [
        {k: line[k] for k in ("round", "model", "site", "split", "reason")} for line in lines if line["status"] == "missing"
    ] + personal_missing(personalisation)
    if missing:
        report["missing"] = missing
    clinical = clinical_section(run_dir)
    if clinical:
        report["clinical"] = clinical
    modalities = modality_section(lines, report["classification"])
    if modalities:
        report["modalities"] = modalities
    cross_validation = cv_section(run_dir)
    if cross_validation:
        report["cross_validation"] = cross_validation
    phantom = run_dir / "phantom.json"
    if phantom.exists():
        report["phantom"] = json.loads(phantom.read_text(encoding="utf-8"))
    return report


def segmentation_rows(lines: list[dict[str, Any]], order: list[str] | None = None) -> list[dict[str, Any]]:
    """``segmentation`` rows: one per (model, segmenter, site, split), and case-weighted means over sites (``all``).

    Within a model, segmenters follow ``order`` (the pipeline's), then fusions and others by name.
    """
    rank = {name: i for i, name in enumerate(order or [])}
    rows = []
    for line in lines:
        m = line["metrics"]
        row = {"model": line["model"], "segmenter": line.get("segmenter", ""), "site": line["site"], "split": line["split"]}
        row.update({k: m[f"seg_{k}"] for k in SEGMENTATION_FIELDS if f"seg_{k}" in m})
        if row.get("n"):
            rows.append(row)
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["segmenter"], row["split"]), []).append(row)
    for (model, segmenter, split), group in groups.items():
        if len(group) > 1:
            n = sum(r["n"] for r in group)
            pooled = {k: sum(r[k] * r["n"] for r in group) / n for k in ("dice", "iou", "precision", "recall")}
            empties = {k: sum(r.get(k, 0) for r in group) for k in ("n_truth_empty", "n_pred_empty")}
            rows.append({"model": model, "segmenter": segmenter, "site": "all", "split": split, "n": n, **pooled, **empties})
    return sorted(rows, key=lambda r: (*_row_key(r), rank.get(r["segmenter"], len(rank)), r["segmenter"]))


def write_report(run_dir: Path) -> dict[str, Any]:
    """Write report.json, report.md, figures/*.png and the self-contained report.html."""
    run_dir = Path(run_dir)
    report = build_report(run_dir)
    (run_dir / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    (run_dir / "report.md").write_text(render_markdown(report), encoding="utf-8")
    figures = report_figures(report) | convergence_figures(report.get("convergence"))
    folder = run_dir / "figures"
    folder.mkdir(exist_ok=True)
    for name, png in figures.items():
        (folder / name).write_bytes(png)
    (run_dir / "report.html").write_text(render_html(report, figures), encoding="utf-8")
    return report


def render_markdown(report: dict[str, Any]) -> str:
    """A readable report: sites, then one table of every model per site's test split."""
    run = report["run"]
    out = [
        f"# axilla report: run {run['id']}",
        "",
        f"Endpoint: {endpoint_text(run)}.",
        "",
        f"Task {run['task']}, model {run['model']}, strategy {run['strategy']}, {run['rounds']} rounds x "
        f"{run['local_epochs']} local epochs, {run['image_size']} px, operating point: {run['threshold_rule']}"
        + (f" (target {run['threshold_target']})" if "threshold_target" in run else "")
        + " on validation, applied unchanged at every site."
        + (f" Automatic pipeline: segmenters {', '.join(run['segmenters'])}, fused by {run['seg_fusion']}, classifier on predicted lesion crops."
           if run.get("pipeline") == "automatic" else "")
        + (f" Cine pipeline (seed 001): static {run['static_model']} on each case's key frame, then {', '.join(run['video_models'])} on "
           f"{run['clip_frames']}-frame clips of the loops, each compared with the static model at every site."
           if run.get("pipeline") == "cine" else "")
        + (f" Fusion pipeline (seeds 003/004): one model per modality ({', '.join(run.get('modalities', []))}), then a fusion model per block "
           f"({', '.join(run.get('fusion_strategies', []))}; encoders {run.get('fusion_training', '')}), each compared with every single-modality model at every site."
           if run.get("pipeline") == "fusion" else ""),
        "",
        "## Sites",
        "",
        "| site | role | cases | positive | train | val | test |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for s in report["sites"]:
        sp = s["splits"]
        out.append(f"| {s['name']} | {s['role']} | {s['n_cases']} | {s['n_positive']} | {sp['train']} | {sp['val']} | {sp['test']} |")
    if report.get("excluded"):
        out += ["", "Excluded at the handshake: " + "; ".join(f"{k}: {v}" for k, v in report["excluded"].items())]
    bayes = report.get("phantom", {}).get("bayes_auc", {})
    for site in [s["name"] for s in report["sites"]] + ["all"]:
        rows = [r for r in report["classification"] if r["site"] == site and r["split"] == "test"]
        if not rows:
            continue
        title = "all sites pooled (from aggregates)" if site == "all" else site
        out += ["", f"## {title}: test split", ""]
        if site in bayes:
            out += [f"Bayes ceiling (AUC of the true risk): {bayes[site]:.3f}", ""]
        out += [
            "| model | n | AUC (95% CI) | accuracy | sensitivity | specificity | PPV | NPV | F1 | threshold |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            auc = f"{r['auc']:.3f}" if "auc" in r else "n/a"
            if "auc_ci" in r:
                auc += f" ({r['auc_ci'][0]:.3f}-{r['auc_ci'][1]:.3f})"
            cells = [_fmt(r.get(k)) for k in ("accuracy", "sensitivity", "specificity", "ppv", "npv", "f1")] + [threshold_text(r)]
            out.append(f"| {r['model']} | {r['n']} | {auc} | " + " | ".join(cells) + " |")
        compared = [c for c in report.get("comparisons", []) if c["site"] == site and c["split"] == "test"]
        if compared:
            out += ["", "| model | vs | DeLong p | NRI | IDI |", "|---|---|---:|---:|---:|"]
            out += [f"| {c['model_a']} | {c['model_b']} | {_fmt(c.get('delong_p'))} | {_fmt(c.get('nri'))} | {_fmt(c.get('idi'))} |" for c in compared]
    out += personal_markdown(report)
    out += _segmentation_markdown(report)
    out += convergence_markdown(report)
    out += modality_markdown(report)
    out += cv_markdown(report)
    out += clinical_markdown(report)
    out += privacy_markdown(report)
    if report.get("missing"):
        out += ["", "## Missing replies", ""] + [
            f"- round {m['round']}, {m['site']} ({m['split']}): {m['reason']}" for m in report["missing"]
        ]
    return "\n".join(out) + "\n"


def _segmentation_markdown(report: dict[str, Any]) -> list[str]:
    """Segmentation quality per model, segmenter, site and split, like seed 000's Table 3."""
    rows = report.get("segmentation", [])
    if not rows:
        return []
    out = [
        "",
        "## Segmentation (as seed 000's Table 3)",
        "",
        "Means over the cases with a ground-truth mask; empty masks scored by the explicit rules of docs/report.md.",
        "",
        "| model | segmenter | site | split | n | Dice | IoU | precision | recall |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cells = [_fmt(r.get(k)) for k in ("dice", "iou", "precision", "recall")]
        out.append(f"| {r['model']} | {r['segmenter']} | {r['site']} | {r['split']} | {r['n']} | " + " | ".join(cells) + " |")
    return out


def _read_lines(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl as a list of dicts (empty if absent)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _site_entry(site: dict[str, Any]) -> dict[str, Any]:
    """A report ``sites`` entry from config.json's handshake record."""
    counts = site["counts"]
    splits = {sp: sum(int(v) for v in counts.get(sp, {}).values()) for sp in ("train", "val", "test")}
    positive = sum(int(counts.get(sp, {}).get("1", 0)) for sp in ("train", "val", "test"))
    return {"name": site["name"], "role": site["role"], "n_cases": sum(splits.values()), "n_positive": positive, "splits": splits}


def _classification_row(model: str, site: str, split: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """One ``classification`` row: the contract's fields that apply (others omitted), Wilson CIs from counts."""
    metrics = dict(metrics)
    if all(k in metrics for k in ("tp", "fp", "tn", "fn")):
        metrics.update(proportion_cis(metrics["tp"], metrics["fp"], metrics["tn"], metrics["fn"]))
    row: dict[str, Any] = {"model": model, "site": site, "split": split}
    row.update({k: metrics[k] for k in ROW_FIELDS if k in metrics})
    return row


def _comparisons(path: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Paired comparisons made at the sites, with both models' AUCs from the classification rows."""
    auc = {(r["model"], r["site"], r["split"]): r.get("auc") for r in rows}
    out = []
    for line in _read_lines(path):
        entry = {k: line[k] for k in ("site", "split", "model_a", "model_b")}
        for side in ("a", "b"):
            value = auc.get((line[f"model_{side}"], line["site"], line["split"]))
            if value is not None:
                entry[f"auc_{side}"] = value
        entry.update({k: line[k] for k in COMPARISON_METRICS if k in line})
        out.append(entry)
    return sorted(out, key=lambda c: (c["site"], c["model_b"]))


def _row_key(row: dict[str, Any]) -> tuple[Any, ...]:
    """Order rows by split, site (the pooled ``all`` last), then federated, pooled, local models (a stage's ``<model>/<stage>`` with its model)."""
    return (row["split"], row["site"] == "all", row["site"], _MODEL_ORDER.get(row["model"].split("/")[0], 2), row["model"])


def _fmt(value: Any) -> str:
    """Three decimals, or n/a for an omitted value."""
    return "n/a" if value is None else f"{value:.3f}"
