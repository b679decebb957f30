"""report.json and report.md from a run directory alone (no Flower, no torch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMA = "axilla.report/1"
ROW_FIELDS = (
    "n", "n_positive", "auc", "auc_ci", "accuracy", "sensitivity", "specificity", "ppv", "npv", "f1",
    "kappa", "pr_auc", "brier", "threshold", "hl_p",
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
    if config.get("excluded"):
        report["excluded"] = config["excluded"]
    rows = [_classification_row(line) for line in lines if line["round"] == "final" and line["status"] == "ok"]
    report["classification"] = sorted(rows, key=_row_key)
    missing = [
        {k: line[k] for k in ("round", "model", "site", "split", "reason")} for line in lines if line["status"] == "missing"
    ]
    if missing:
        report["missing"] = missing
    phantom = run_dir / "phantom.json"
    if phantom.exists():
        report["phantom"] = json.loads(phantom.read_text(encoding="utf-8"))
    return report


def write_report(run_dir: Path) -> dict[str, Any]:
    """Write report.json and report.md into the run directory; return the report."""
    report = build_report(run_dir)
    Path(run_dir, "report.json").write_text(json.dumps(report, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    Path(run_dir, "report.md").write_text(render_markdown(report), encoding="utf-8")
    return report


def render_markdown(report: dict[str, Any]) -> str:
    """A readable report: sites, then one table of every model per site's test split."""
    run = report["run"]
    out = [
        f"# axilla report: run {run['id']}",
        "",
        f"Task {run['task']}, model {run['model']}, strategy {run['strategy']}, {run['rounds']} rounds x "
        f"{run['local_epochs']} local epochs, {run['image_size']} px, operating point: {run['threshold_rule']} "
        "on validation, applied unchanged at every site.",
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
    for site in [s["name"] for s in report["sites"]]:
        rows = [r for r in report["classification"] if r["site"] == site and r["split"] == "test"]
        if not rows:
            continue
        out += ["", f"## {site}: test split", ""]
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
            cells = [_fmt(r.get(k)) for k in ("accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "threshold")]
            out.append(f"| {r['model']} | {r['n']} | {auc} | " + " | ".join(cells) + " |")
    if report.get("missing"):
        out += ["", "## Missing replies", ""] + [
            f"- round {m['round']}, {m['site']} ({m['split']}): {m['reason']}" for m in report["missing"]
        ]
    return "\n".join(out) + "\n"


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


def _classification_row(line: dict[str, Any]) -> dict[str, Any]:
    """One ``classification`` row: the contract's fields that the metrics hold (others omitted)."""
    metrics = line["metrics"]
    row: dict[str, Any] = {"model": line["model"], "site": line["site"], "split": line["split"]}
    row.update({k: metrics[k] for k in ROW_FIELDS if k in metrics})
    return row


def _row_key(row: dict[str, Any]) -> tuple[Any, ...]:
    """Order rows by split, site, then federated, pooled, local models."""
    return (row["split"], row["site"], _MODEL_ORDER.get(row["model"], 2), row["model"])


def _fmt(value: Any) -> str:
    """Three decimals, or n/a for an omitted value."""
    return "n/a" if value is None else f"{value:.3f}"
