"""report.html: one self-contained page (inline CSS, embedded PNGs, no scripts, no external URLs)."""

from __future__ import annotations

import base64
from html import escape
from typing import Any

from evaluation.clinical_report import NOMOGRAM, clinical_html
from evaluation.convergence import figure_file, series_title
from evaluation.cv_report import cv_html
from evaluation.modality_report import modality_html
from evaluation.personal_report import personal_html
from evaluation.figures import figure_name, model_order, report_sites, safe_name, split_rank
from evaluation.text import finite as _finite
from evaluation.text import number as _num
from evaluation.text import p_value as _p
from evaluation.text import threshold_text

_CSS = """
body{font-family:"DejaVu Sans",Arial,Helvetica,sans-serif;margin:0;color:#1d2330;background:#fff;font-size:14px}
main{max-width:1240px;margin:0 auto;padding:16px 20px 40px}
h1{font-size:24px;margin:8px 0 4px}
h2{font-size:19px;margin:28px 0 8px;border-bottom:2px solid #1f77b4;padding-bottom:4px}
h3{font-size:16px;margin:18px 0 6px}
p.meta{color:#4a5160;margin:4px 0 12px}
nav a{margin-right:12px}
table{border-collapse:collapse;margin:6px 0 10px;font-size:12px}
th,td{border:1px solid #d5d9e0;padding:3px 6px;text-align:right;white-space:nowrap}
th{background:#eef1f6;text-align:center}
td.l,th.l{text-align:left}
tr:nth-child(even) td{background:#f8f9fb}
td.na{color:#9aa0aa}
.scroll{overflow-x:auto}
.row{display:flex;flex-wrap:wrap;gap:0 24px}
.notice{border-left:4px solid #d62728;background:#fdf1f1;padding:6px 12px;margin:10px 0}
.notice ul{margin:4px 0;padding-left:20px}
.figs{display:flex;flex-wrap:wrap;gap:8px;margin:6px 0 12px}
.figs figure{margin:0;flex:1 1 380px;max-width:410px}
figure img{width:100%;height:auto;display:block;border:1px solid #e3e6eb}
figure.wide{max-width:640px}
figcaption{font-size:11px;color:#4a5160;text-align:center}
footer{margin-top:28px;font-size:12px;color:#4a5160;border-top:1px solid #d5d9e0;padding-top:8px}
"""
_CI_METRICS = (
    ("accuracy", "accuracy"), ("sensitivity", "sensitivity"), ("specificity", "specificity"), ("ppv", "PPV"), ("npv", "NPV"),
)
_FIGURE_KINDS = (("roc", "ROC"), ("calibration", "Calibration"), ("decision", "Decision curve"))
HEATMAP = "auc_heatmap_test.png"


def render_html(report: dict[str, Any], figures: dict[str, bytes]) -> str:
    """The whole report as one HTML page; figures are embedded by file name as base64 data URIs."""
    used: set[str] = set()
    sites = report_sites(report)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>axilla report: run {escape(str(report.get('run', {}).get('id', '')))}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        _header(report, sites),
        _sites_table(report),
        _notices(report),
    ]
    if HEATMAP in figures:
        used.add(HEATMAP)
        parts.append('<h2 id="auc-heatmap">AUC by site and model (test)</h2>')
        heatmap = _figure(HEATMAP, figures[HEATMAP], "AUC by site and model (test split)", wide=True)
        parts.append(f'<div class="figs">{heatmap}</div>')
    parts.append(personal_html(report))
    parts.append(_segmentation_section(report))
    parts.append(_convergence_section(report, figures, used))
    parts.append(modality_html(report))
    parts.append(cv_html(report))
    parts.append(clinical_html(report, figures, _figure))
    used.add(NOMOGRAM)
    for site in sites:
        parts.append(_site_section(report, site, figures, used))
    others = [name for name in figures if name not in used]
    if others:
        parts.append('<h2 id="other-figures">Other figures</h2><div class="figs">')
        parts += [_figure(name, figures[name], name) for name in others]
        parts.append("</div>")
    parts += [_footer(report), "</main></body></html>"]
    return "\n".join(p for p in parts if p) + "\n"


def endpoint_text(run: dict[str, Any]) -> str:
    """What the models predict, e.g. 'lesion malignancy (positive: malignant, negative: benign)'."""
    endpoint = run.get("endpoint", {})
    return f"{endpoint.get('name', '?')} (positive: {endpoint.get('positive', '?')}, negative: {endpoint.get('negative', '?')})"


def _header(report: dict[str, Any], sites: list[str]) -> str:
    """Title, run summary and a table of contents."""
    run = report.get("run", {})
    fields = [
        ("endpoint", endpoint_text(run)), ("task", run.get("task")), ("model", run.get("model")), ("strategy", run.get("strategy")),
        ("rounds", run.get("rounds")), ("local epochs", run.get("local_epochs")), ("image size", run.get("image_size")),
        ("seed", run.get("seed")), ("threshold rule", run.get("threshold_rule")),
    ]
    summary = " · ".join(f"{escape(k)}: <b>{escape(_text(v))}</b>" for k, v in fields)
    links = " ".join(f'<a href="#site-{escape(safe_name(s))}">{escape(_site_title(s))}</a>' for s in sites)
    return (
        f"<header><h1>axilla cross-site validation: run {escape(_text(run.get('id')))}</h1>"
        f'<p class="meta">{summary}</p><p class="meta">Operating point chosen on validation '
        f"({escape(_text(run.get('threshold_rule')))}), applied unchanged at every site.</p>"
        f"<nav>{links}</nav></header>"
    )


def _sites_table(report: dict[str, Any]) -> str:
    """The participating sites and their case counts."""
    rows = []
    for s in report.get("sites", []):
        splits = s.get("splits", {})
        cells = [s.get("n_cases"), s.get("n_positive"), splits.get("train"), splits.get("val"), splits.get("test")]
        rows.append(
            f'<tr><td class="l">{escape(_text(s.get("name")))}</td><td class="l">{escape(_text(s.get("role")))}</td>'
            + "".join(_cell(_text(c)) for c in cells) + "</tr>"
        )
    head = "".join(f"<th>{h}</th>" for h in ("cases", "positive", "train", "val", "test"))
    return (
        '<h2 id="sites">Sites</h2><div class="scroll"><table><thead><tr><th class="l">site</th><th class="l">role</th>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _notices(report: dict[str, Any]) -> str:
    """Excluded sites and missing replies, when there are any."""
    out = []
    if report.get("excluded"):
        items = "".join(f"<li><b>{escape(str(k))}</b>: {escape(str(v))}</li>" for k, v in report["excluded"].items())
        out.append(f'<div class="notice" id="excluded"><b>Excluded at the handshake</b><ul>{items}</ul></div>')
    if report.get("missing"):
        items = "".join(
            "<li>" + escape(
                f"round {_text(m.get('round'))}, {_text(m.get('model'))} at {_text(m.get('site'))} "
                f"({_text(m.get('split'))}): {_text(m.get('reason'))}"
            ) + "</li>"
            for m in report["missing"]
        )
        out.append(f'<div class="notice" id="missing"><b>Missing replies</b><ul>{items}</ul></div>')
    return "".join(out)


def _site_section(report: dict[str, Any], site: str, figures: dict[str, bytes], used: set[str]) -> str:
    """One site: per split (test first) its metrics table, comparisons and figures."""
    rows = [r for r in report.get("classification", []) if r.get("site") == site]
    splits = {r["split"] for r in rows} | {c["split"] for c in report.get("curves", []) if c.get("site") == site}
    anchor = safe_name(site)
    out = [f'<section id="site-{escape(anchor)}"><h2>{escape(_site_title(site))}</h2>']
    bayes = (report.get("phantom") or {}).get("bayes_auc") or {}
    if site in bayes:
        out.append(f'<p class="meta">Bayes ceiling (AUC of the true risk): <b>{escape(_num(bayes[site]))}</b></p>')
    for split in sorted(splits, key=lambda s: (split_rank(s), s)):
        sub = f"site-{anchor}-{safe_name(split)}"
        out.append(f'<h3 id="{escape(sub)}">{escape(site)}: {escape(split)} split</h3>')
        split_rows = [r for r in rows if r["split"] == split]
        comparisons = [c for c in report.get("comparisons", []) if c.get("site") == site and c.get("split") == split]
        if split_rows:
            out.append(_metrics_table(split_rows))
        side = [_calibration_table(split_rows)] if split_rows else []
        side += [_comparisons_table(comparisons)] if comparisons else []
        if side:
            out.append(f'<div class="row">{"".join(side)}</div>')
        figs = []
        for kind, label in _FIGURE_KINDS:
            name = figure_name(kind, site, split)
            if name in figures:
                used.add(name)
                figs.append(_figure(name, figures[name], f"{label} — {site} ({split})"))
        if figs:
            out.append(f'<div class="figs">{"".join(figs)}</div>')
    out.append("</section>")
    return "".join(out)


def _segmentation_section(report: dict[str, Any]) -> str:
    """Segmentation quality of every segmenter and fusion at every site (seed 000's Table 3)."""
    rows = report.get("segmentation", [])
    if not rows:
        return ""
    body = []
    for r in rows:
        cells = [escape(_text(r.get(k))) for k in ("segmenter", "site", "split")]
        numbers = [_cell(_text(r.get("n")))] + [_cell(_num(r.get(k))) for k in ("dice", "iou", "precision", "recall")]
        body.append(f'<tr><td class="l">{escape(r["model"])}</td>' + "".join(f'<td class="l">{c}</td>' for c in cells) + "".join(numbers) + "</tr>")
    head = "".join(f'<th class="l">{h}</th>' for h in ("segmenter", "site", "split"))
    head += "".join(f"<th>{h}</th>" for h in ("n", "Dice", "IoU", "precision", "recall"))
    return (
        '<h2 id="segmentation">Segmentation</h2><p class="meta">Means over the cases with a ground-truth mask, per model, '
        'segmenter (fusions included), site and split.</p><div class="scroll"><table><thead><tr><th class="l">model</th>'
        f"{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _convergence_section(report: dict[str, Any], figures: dict[str, bytes], used: set[str]) -> str:
    """Per-round validation curves per model and stage, or why the run has none."""
    section = report.get("convergence")
    if not section:
        return ""
    head = '<h2 id="convergence">Convergence (per-round validation)</h2>'
    if section.get("note"):
        return f'{head}<p class="meta">{escape(section["note"])}.</p>'
    figs = []
    for series in section.get("series", []):
        name = figure_file(series)
        if name in figures:
            used.add(name)
            figs.append(_figure(name, figures[name], f"Convergence — {series_title(series)}", wide=True))
    return f'{head}<p class="meta">{escape(section.get("pooling", ""))}.</p><div class="figs">{"".join(figs)}</div>'


def _metrics_table(rows: list[dict[str, Any]]) -> str:
    """Every model's discrimination and operating-point metrics at one site and split."""
    heads = ["n (pos.)", "AUC (95% CI)"] + [f"{h} (95% CI)" for _, h in _CI_METRICS] + ["F1", "kappa", "threshold"]
    body = []
    for r in _by_model(rows):
        cells = [_cell(_count(r)), _cell(_with_ci(r, "auc"))]
        cells += [_cell(_with_ci(r, key)) for key, _ in _CI_METRICS]
        cells += [_cell(_num(r.get(k))) for k in ("f1", "kappa")] + [_cell(escape(threshold_text(r)))]
        body.append(f'<tr><td class="l">{escape(r["model"])}</td>{"".join(cells)}</tr>')
    return _table("model", heads, body)


def _calibration_table(rows: list[dict[str, Any]]) -> str:
    """Every model's probabilistic metrics at one site and split."""
    heads = ["PR-AUC", "Brier", "cal. slope", "cal. intercept", "HL p"]
    body = []
    for r in _by_model(rows):
        cells = [_cell(_num(r.get(k))) for k in ("pr_auc", "brier", "calibration_slope", "calibration_intercept")]
        cells.append(_cell(_p(r.get("hl_p"))))
        body.append(f'<tr><td class="l">{escape(r["model"])}</td>{"".join(cells)}</tr>')
    return _table("model", heads, body)


def _by_model(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows ordered federated, pooled, then the others."""
    order = model_order(r["model"] for r in rows)
    return sorted(rows, key=lambda r: order.index(r["model"]))


def _table(first: str, heads: list[str], body: list[str]) -> str:
    """A table with a left-aligned first column."""
    head = "".join(f"<th>{escape(h)}</th>" for h in heads)
    return (
        f'<div class="scroll"><table><thead><tr><th class="l">{escape(first)}</th>{head}</tr></thead>'
        f'<tbody>{"".join(body)}</tbody></table></div>'
    )


def _comparisons_table(rows: list[dict[str, Any]]) -> str:
    """Paired comparisons of the federated model with each other model."""
    body = []
    for c in rows:
        cells = [_cell(_num(c.get(k))) for k in ("auc_a", "auc_b", "delong_z")] + [_cell(_p(c.get("delong_p")))]
        cells += [_cell(_with_p(c, "nri")), _cell(_with_p(c, "idi"))]
        pair = f"{_text(c.get('model_a'))} vs {_text(c.get('model_b'))}"
        body.append(f'<tr><td class="l">{escape(pair)}</td>{"".join(cells)}</tr>')
    return _table("comparison", ["AUC A", "AUC B", "DeLong z", "DeLong p", "NRI (p)", "IDI (p)"], body)


def _figure(name: str, png: bytes, caption: str, wide: bool = False) -> str:
    """An embedded PNG with its caption."""
    data = base64.b64encode(png).decode("ascii")
    cls = ' class="wide"' if wide else ""
    return (
        f'<figure{cls}><img alt="{escape(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{escape(caption)} · {escape(name)}</figcaption></figure>"
    )


def _footer(report: dict[str, Any]) -> str:
    """How the pooled "all" rows were computed."""
    pooling = report.get("pooling") or {}
    text = (
        f'Rows at site "all" pool every site\'s cases from aggregates only: method {_text(pooling.get("method"))}, '
        f"{_text(pooling.get('bins'))} score bins, resolution {_text(pooling.get('resolution'))}. "
        "Intervals: AUC 95% DeLong CI; proportions 95% Wilson CI. n/a: undefined or not reported."
    )
    return f"<footer><p>{escape(text)}</p><p>Schema {escape(_text(report.get('schema')))}.</p></footer>"


def _site_title(site: str) -> str:
    """Section title of a site; the pooled pseudo-site is named as such."""
    return "all sites (pooled)" if site == "all" else site


def _cell(text: str) -> str:
    """A right-aligned table cell, greyed when not available."""
    cls = ' class="na"' if text == "n/a" else ""
    return f"<td{cls}>{escape(text)}</td>"


def _with_ci(row: dict[str, Any], key: str) -> str:
    """``0.812 (0.70–0.90)``, the value alone without a CI, or n/a."""
    value, ci = row.get(key), row.get(f"{key}_ci")
    if not _finite(value):
        return "n/a"
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_finite(v) for v in ci):
        return f"{value:.3f} ({ci[0]:.2f}–{ci[1]:.2f})"
    return f"{value:.3f}"


def _with_p(row: dict[str, Any], key: str) -> str:
    """``0.113 (p 0.041)``, the value alone without p, or n/a."""
    value, p = row.get(key), row.get(f"{key}_p")
    if not _finite(value):
        return "n/a"
    return f"{value:.3f} (p {_p(p)})" if _finite(p) else f"{value:.3f}"


def _count(row: dict[str, Any]) -> str:
    """``n (positives)``, n alone, or n/a."""
    if row.get("n") is None:
        return "n/a"
    return f"{row['n']} ({row['n_positive']})" if row.get("n_positive") is not None else str(row["n"])


def _text(value: Any) -> str:
    """A value as text, n/a when absent."""
    return "n/a" if value is None else str(value)
