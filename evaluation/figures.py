"""PNG figures of a report: ROC, calibration and decision curves per site, and an AUC heatmap."""

from __future__ import annotations

import io
import math
import re
import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from evaluation.clinical_report import nomogram_figure

FIGSIZE = (6.0, 4.5)
DPI = 100
_FIXED = {"federated": "#1f77b4", "pooled": "#ff7f0e"}
_LOCAL = ("#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
_MISSING = "#d9d9d9"


def model_order(models: Iterable[str]) -> list[str]:
    """Distinct model names: federated, pooled (and their stages' ``<model>/<stage>``), then the others alphabetically."""
    rank = {"federated": 0, "pooled": 1}
    return sorted(set(models), key=lambda m: (rank.get(m.split("/")[0], 2), m))


def model_colors(models: Iterable[str]) -> dict[str, str]:
    """A colour per model: federated and pooled fixed, the others in order from a palette."""
    out: dict[str, str] = {}
    ordered = model_order(models)
    others = [m for m in ordered if m not in _FIXED]
    for model in ordered:
        if model in _FIXED:
            out[model] = _FIXED[model]
        else:
            i = others.index(model)
            out[model] = _LOCAL[i] if i < len(_LOCAL) else _extra_color(i - len(_LOCAL))
    return out


def safe_name(site: str) -> str:
    """A file-name-safe form of a site name; unsafe names get a checksum suffix to stay distinct."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", site).strip("._") or "site"
    if clean == site:
        return site
    return f"{clean}-{zlib.crc32(site.encode('utf-8')):08x}"


def figure_name(kind: str, site: str, split: str) -> str:
    """File name of one figure, e.g. ``roc_hospital_ext_test.png``."""
    return f"{kind}_{safe_name(site)}_{safe_name(split)}.png"


def roc_figure(
    site: str,
    split: str,
    curves: list[dict[str, Any]],
    aucs: dict[str, float],
    *,
    bayes_auc: float | None = None,
    colors: dict[str, str] | None = None,
) -> bytes:
    """Every model's ROC at one site, with its CI band where present, the chance diagonal and AUCs."""
    fig, ax = _new_axes()
    colors = colors or model_colors(c["model"] for c in curves)
    ax.plot([0, 1], [0, 1], linestyle="--", color="#999999", linewidth=1, label="chance")
    for curve in _ordered(curves):
        model, color = curve["model"], colors.get(curve["model"], "#333333")
        band = curve.get("roc_band")
        if band and all(k in band for k in ("fpr", "tpr_lo", "tpr_hi")):
            lo, hi = _arr(band["tpr_lo"]), _arr(band["tpr_hi"])
            ax.fill_between(_arr(band["fpr"]), lo, hi, color=color, alpha=0.15, linewidth=0)
        roc = curve.get("roc") or {}
        if "fpr" in roc and "tpr" in roc:
            label = f"{model} (AUC {_num(aucs.get(model))})"
            ax.plot(_arr(roc["fpr"]), _arr(roc["tpr"]), color=color, linewidth=1.8, label=label)
    title = f"ROC — {site} ({split})"
    if bayes_auc is not None:
        title += f"\nBayes ceiling AUC {_num(bayes_auc)}"
    _finish(ax, title, "1 − specificity (false-positive rate)", "sensitivity (true-positive rate)", (0, 1), (0, 1.02))
    return _png(fig)


def calibration_figure(
    site: str, split: str, curves: list[dict[str, Any]], *, colors: dict[str, str] | None = None
) -> bytes:
    """Observed against predicted risk per model (marker area grows with the bin's cases), ideal diagonal."""
    fig, ax = _new_axes()
    colors = colors or model_colors(c["model"] for c in curves)
    ax.plot([0, 1], [0, 1], linestyle="--", color="#999999", linewidth=1, label="ideal")
    cals = [(c["model"], c.get("calibration") or {}) for c in _ordered(curves)]
    largest = max((np.nanmax(_arr(cal["n"])) for _, cal in cals if len(cal.get("n") or [])), default=1.0)
    for model, cal in cals:
        if not ("predicted" in cal and "observed" in cal):
            continue
        pred, obs = _arr(cal["predicted"]), _arr(cal["observed"])
        n = _arr(cal["n"]) if len(cal.get("n") or []) == len(pred) else np.full(len(pred), largest)
        color = colors.get(model, "#333333")
        ax.plot(pred, obs, color=color, linewidth=1.5, label=model)
        sizes = 15 + 135 * np.nan_to_num(n) / max(largest, 1.0)
        ax.scatter(pred, obs, s=sizes, color=color, alpha=0.7, edgecolors="white", linewidths=0.5)
    lim = (-0.02, 1.02)
    _finish(ax, f"Calibration — {site} ({split})", "predicted risk", "observed frequency", lim, lim)
    return _png(fig)


def decision_figure(
    site: str, split: str, curves: list[dict[str, Any]], *, colors: dict[str, str] | None = None
) -> bytes:
    """Net benefit against threshold probability per model, with treat-all and treat-none."""
    fig, ax = _new_axes()
    colors = colors or model_colors(c["model"] for c in curves)
    peaks: list[float] = []
    xmax = 1.0
    treat_all: tuple[np.ndarray, np.ndarray] | None = None
    for curve in _ordered(curves):
        dec = curve.get("decision") or {}
        if not ("thresholds" in dec and "net_benefit" in dec):
            continue
        x, y = _arr(dec["thresholds"]), _arr(dec["net_benefit"])
        ax.plot(x, y, color=colors.get(curve["model"], "#333333"), linewidth=1.6, label=curve["model"])
        peaks.append(_finite_max(y))
        xmax = _finite_max(x) if np.isfinite(_finite_max(x)) else xmax
        if treat_all is None and "treat_all" in dec:
            treat_all = (x, _arr(dec["treat_all"]))
    if treat_all is not None:
        ax.plot(*treat_all, color="#444444", linestyle="--", linewidth=1, label="treat all")
        peaks.append(_finite_max(treat_all[1]))
    ax.axhline(0.0, color="#999999", linewidth=1, label="treat none")
    top = max((p for p in peaks if np.isfinite(p)), default=0.45)
    ylim = (-0.05, max(top, 0.0) + 0.05)
    _finish(ax, f"Decision curve — {site} ({split})", "threshold probability", "net benefit", (0, xmax), ylim)
    return _png(fig)


def auc_heatmap(report: dict[str, Any], split: str = "test") -> bytes:
    """Site x model AUC matrix of one split (pooled "all" last), annotated, missing cells grey."""
    rows = [r for r in report.get("classification", []) if r.get("split") == split]
    sites = report_sites(report, rows)
    models = model_order(r["model"] for r in rows)
    values = np.full((len(sites), len(models)), np.nan)
    for r in rows:
        if isinstance(r.get("auc"), (int, float)) and math.isfinite(r["auc"]):
            values[sites.index(r["site"]), models.index(r["model"])] = r["auc"]
    fig, ax = _new_axes()
    ax.set_title(f"AUC by site and model ({split})", fontsize=11)
    if not values.size:
        ax.text(0.5, 0.5, "no classification results", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return _png(fig)
    finite = values[np.isfinite(values)]
    vmin = min(0.5, float(finite.min())) if finite.size else 0.5
    cmap = colormaps["viridis"].with_extremes(bad=_MISSING)
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=1.0, aspect="auto")
    fig.colorbar(image, ax=ax, label="AUC", fraction=0.05, pad=0.03)
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            ink = "black" if v > vmin + 0.6 * (1 - vmin) else "white"
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=9, color=ink)
        else:
            ax.text(j, i, "n/a", ha="center", va="center", fontsize=9, color="#777777")
    crowded = len(models) > 3
    ax.set_xticks(range(len(models)), models, rotation=20 if crowded else 0, ha="right" if crowded else "center", fontsize=9)
    ax.set_yticks(range(len(sites)), sites, fontsize=9)
    ax.set_xlabel("model")
    ax.set_ylabel("evaluated at site")
    ax.tick_params(length=0)
    return _png(fig)


def report_sites(report: dict[str, Any], rows: Iterable[dict[str, Any]] | None = None) -> list[str]:
    """Sites in report order, then others alphabetically, pooled "all" last; only those in ``rows`` if given."""
    present = {r["site"] for r in (rows if rows is not None else report.get("classification", []))}
    if rows is None:
        present |= {c["site"] for c in report.get("curves", [])}
    declared = [s["name"] for s in report.get("sites", []) if s["name"] in present and s["name"] != "all"]
    extra = sorted(present - set(declared) - {"all"})
    return declared + extra + (["all"] if "all" in present else [])


def report_figures(report: dict[str, Any]) -> dict[str, bytes]:
    """Every figure of a report by file name: ROC, calibration and decision per (site, split), and the heatmap."""
    curves = report.get("curves", [])
    colors = model_colors([c["model"] for c in curves] + [r["model"] for r in report.get("classification", [])])
    bayes = (report.get("phantom") or {}).get("bayes_auc") or {}
    out: dict[str, bytes] = {}
    for site, split in curve_keys(report):
        group = [c for c in curves if c["site"] == site and c["split"] == split]
        aucs = {
            r["model"]: r["auc"]
            for r in report.get("classification", [])
            if r["site"] == site and r["split"] == split and "auc" in r
        }
        roc = roc_figure(site, split, group, aucs, bayes_auc=bayes.get(site), colors=colors)
        out[figure_name("roc", site, split)] = roc
        out[figure_name("calibration", site, split)] = calibration_figure(site, split, group, colors=colors)
        out[figure_name("decision", site, split)] = decision_figure(site, split, group, colors=colors)
    out["auc_heatmap_test.png"] = auc_heatmap(report, "test")
    if report.get("clinical"):
        out |= nomogram_figure(report["clinical"])
    return out


def curve_keys(report: dict[str, Any]) -> list[tuple[str, str]]:
    """Distinct (site, split) pairs that have curves: sites in report order, test before val."""
    pairs = {(c["site"], c["split"]) for c in report.get("curves", [])}
    sites = report_sites(report)
    return sorted(pairs, key=lambda p: (sites.index(p[0]), split_rank(p[1]), p[1]))


def split_rank(split: str) -> int:
    """Order of splits in a report: test, val, train, then anything else."""
    return {"test": 0, "val": 1, "train": 2}.get(split, 3)


def _new_axes() -> tuple[Figure, Axes]:
    """A 6 x 4.5 in figure at 100 dpi with one axes."""
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    return fig, fig.add_subplot()


def _finish(
    ax: Axes, title: str, xlabel: str, ylabel: str, xlim: tuple[float, float], ylim: tuple[float, float]
) -> None:
    """Title, labels, limits, grid and legend (when anything is labelled)."""
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.grid(True, color="#e5e5e5", linewidth=0.6)
    ax.set_axisbelow(True)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best", frameon=True, framealpha=0.9)


def _png(fig: Figure) -> bytes:
    """The figure as PNG bytes, with no software version or date embedded."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _ordered(curves: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Curves in model order (federated, pooled, others)."""
    order = model_order(c["model"] for c in curves)
    return sorted(curves, key=lambda c: order.index(c["model"]))


def _arr(values: Iterable[Any]) -> np.ndarray:
    """A float array, with None (JSON null) as NaN."""
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _finite_max(values: np.ndarray) -> float:
    """Largest finite value, or NaN when there is none."""
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else math.nan


def _num(value: float | None) -> str:
    """Three decimals, or n/a."""
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _extra_color(i: int) -> str:
    """Further distinct colours beyond the palette, from tab20's light shades."""
    return to_hex(colormaps["tab20"](2 * (i % 10) + 1))

