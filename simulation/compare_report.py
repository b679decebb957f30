"""comparison.json, comparison.md and a self-contained comparison.html (the strategies' pooled validation curves embedded)."""

from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path
from typing import Any

from evaluation.convergence import overlay_figure

FIGURE = "comparison_convergence.png"
_CSS = (
    "body{font-family:'DejaVu Sans',Arial,sans-serif;margin:20px;color:#1d2330;font-size:14px}"
    "table{border-collapse:collapse;margin:8px 0;font-size:12px}th,td{border:1px solid #d5d9e0;padding:3px 6px;text-align:right}"
    "th{background:#eef1f6}td.l{text-align:left}.notice{border-left:4px solid #d62728;background:#fdf1f1;padding:6px 12px}"
    "img{max-width:640px;border:1px solid #e3e6eb}"
)


def write_comparison(out: Path, table: dict[str, Any]) -> None:
    """Write the three files of a comparison and its figure into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.json").write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    (out / "comparison.md").write_text(render_markdown(table), encoding="utf-8")
    png = overlay_figure({k: (v["rounds"], v["pooled"]) for k, v in table.get("curves", {}).items()}, table["metric"])
    (out / FIGURE).write_bytes(png)
    (out / "comparison.html").write_text(render_html(table, png), encoding="utf-8")


def columns(table: dict[str, Any]) -> list[str]:
    """The table's site columns: external first, then the sites, pooled ``all`` last."""
    seen = {site for row in table["rows"] for site in row["sites"]}
    named = sorted(seen - {"external", "all"})
    return [s for s in ("external",) if s in seen] + named + [s for s in ("all",) if s in seen]


def cell(stats: dict[str, Any] | None) -> tuple[str, str, str]:
    """``mean ± SD``, fraction of pooled, fraction of the ceiling (empty when not known)."""
    if not stats or stats.get("mean") is None:
        return "n/a", "", ""
    value = f"{stats['mean']:.3f}" + (f" ± {stats['sd']:.3f}" if stats.get("sd") is not None else "")
    return value, _pct(stats.get("frac_pooled")), _pct(stats.get("frac_ceiling"))


def render_markdown(table: dict[str, Any]) -> str:
    """The comparison as Markdown: the table, wall times, failed runs and notes."""
    metric = table["metric"].upper() if table["metric"] == "auc" else "Dice"
    sites = columns(table)
    out = [
        "# axilla strategy comparison", "",
        f"Sites {table['sites_dir']}; seeds {', '.join(map(str, table['seeds']))}; {table['jobs']} runs at a time, "
        f"{table['threads_per_job']} thread(s) each. Test-split {metric}: mean ± SD over seeds, then the per-seed fraction "
        "of the pooled baseline's value and of the site's Bayes ceiling, averaged over seeds.", "",
        "| model | " + " | ".join(f"{s} {metric} | {s} / pooled | {s} / ceiling" for s in sites) + " | wall s (mean) | failed |",
        "|---|" + "---:|---:|---:|" * len(sites) + "---:|---|",
    ]  # fmt: skip
    for row in table["rows"]:
        cells = [c for site in sites for c in cell(row["sites"].get(site))]
        wall = row.get("wall_s", {})
        wall_text = "" if wall.get("mean") is None else f"{wall['mean']:.1f}" + (" (with baselines)" if wall.get("includes_baselines") else "")
        failed = "; ".join(f"seed {f['seed']}: {f['error']}" for f in row["failed"])
        out.append(f"| {row['model']} | " + " | ".join(cells) + f" | {wall_text} | {failed} |")
    out += ["", *_notes(table)]
    return "\n".join(out) + "\n"


def render_html(table: dict[str, Any], png: bytes) -> str:
    """The comparison as one HTML page with the convergence overlay embedded."""
    metric = table["metric"].upper() if table["metric"] == "auc" else "Dice"
    sites = columns(table)
    head = "".join(f'<th colspan="3">{escape(s)}</th>' for s in sites)
    sub = "".join(f"<th>{metric}</th><th>/ pooled</th><th>/ ceiling</th>" for _ in sites)
    body = []
    for row in table["rows"]:
        cells = "".join(f"<td>{escape(c)}</td>" for site in sites for c in cell(row["sites"].get(site)))
        wall = row.get("wall_s", {})
        wall_text = "" if wall.get("mean") is None else f"{wall['mean']:.1f}"
        failed = "; ".join(f"seed {f['seed']}: {f['error']}" for f in row["failed"])
        body.append(f'<tr><td class="l">{escape(row["model"])}</td>{cells}<td>{escape(wall_text)}</td><td class="l">{escape(failed)}</td></tr>')
    notes = "".join(f"<p>{escape(n)}</p>" for n in _notes(table))
    data = base64.b64encode(png).decode("ascii")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>axilla strategy comparison</title>'
        f"<style>{_CSS}</style></head><body><h1>axilla strategy comparison</h1>"
        f"<p>Seeds {escape(', '.join(map(str, table['seeds'])))}; test-split {metric}, mean ± SD over seeds; fractions of pooled and of "
        "the Bayes ceiling per seed, averaged.</p>"
        f'<table><thead><tr><th rowspan="2">model</th>{head}<th rowspan="2">wall s</th><th rowspan="2">failed</th></tr>'
        f"<tr>{sub}</tr></thead><tbody>{''.join(body)}</tbody></table>{notes}"
        f'<h2>Pooled validation per round</h2><figure><img alt="pooled validation {metric} per round" src="data:image/png;base64,{data}">'
        f"<figcaption>{FIGURE}: each strategy's federated model, pooled (case-weighted) over the training sites, mean over seeds</figcaption></figure>"
        "</body></html>\n"
    )


def _notes(table: dict[str, Any]) -> list[str]:
    """Why columns are empty, how the baselines were made, which runs failed."""
    notes = [
        "pooled, local mean and local best come from the first variant's run of each seed (the same sites and seed); "
        "local mean: per site, the mean over the local-only models; local best: per site, the best local-only model there.",
        "external: the mean over the external (never-training) sites. Wall time: a run's own time, so the first variant's includes the baselines.",
    ]
    if table.get("personalised"):
        notes.append(
            f"{', '.join(table['personalised'])}: at each training site, that site's personalised model (personalise = finetune or ditto) "
            "on its own test cases; at the external sites, the global model (they never train, so they keep it); no 'all' column (each "
            "training site has its own model); a training site that sent no personalised metrics is left out of that seed."
        )
    if table.get("ceiling_note"):
        notes.append(table["ceiling_note"] + ".")
    else:
        notes.append("Ceilings: each site's Bayes AUC (the AUC of the true risk); external: the mean of the external sites'; all (pooled over sites) has none.")
    if not table.get("curves"):
        notes.append("No run recorded per-round validation (validate-every = 0), so there are no convergence curves.")
    failed = [r for r in table["runs"] if r["status"] == "failed"]
    notes += [f"Failed: {r['strategy']} seed {r['seed']}: {r['error']}" for r in failed]
    return notes


def _pct(value: float | None) -> str:
    """A fraction as a percentage, or empty."""
    return "" if value is None else f"{100 * value:.1f}%"
