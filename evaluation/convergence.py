"""Per-round validation curves of a run: each training site's and the pooled (case-weighted) value per model and stage."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from evaluation.figures import DPI, _png, safe_name
from evaluation.text import finite as _finite
from evaluation.text import number as _fmt

NO_ROUNDS = "no per-round validation was recorded (validate-every = {every}): convergence curves need validate-every >= 1"
POOLING_NOTE = "pooled: the mean of the sites' values weighted by their validation cases (n) in that round"
_SITE_COLORS = ("#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#1f77b4", "#ff7f0e")


def convergence_section(lines: Iterable[Mapping[str, Any]], run: Mapping[str, Any]) -> dict[str, Any]:
    """report.json's ``convergence``: one series per (model, stage) of the per-round ``val`` rows, or a note when there are none."""
    per_round = [line for line in lines if isinstance(line["round"], int) and line["split"] == "val" and line["status"] == "ok"]
    rounds_per_stage = int(run.get("num-rounds") or 0) or None
    names = stage_names(run)
    groups: dict[tuple[str, int, str], list[Mapping[str, Any]]] = {}
    for line in per_round:
        metric = "dice" if "seg_dice" in line["metrics"] else "auc" if "auc" in line["metrics"] else ""
        if metric:
            stage = (line["round"] - 1) // rounds_per_stage if rounds_per_stage else 0
            groups.setdefault((line["model"], stage, metric), []).append(line)
    series = [_series(model, names.get(stage, ""), stage, metric, rows, rounds_per_stage) for (model, stage, metric), rows in groups.items()]
    series.sort(key=lambda s: (s["offset"], s["model"]))
    section: dict[str, Any] = {"series": series, "pooling": POOLING_NOTE}
    if not series:
        section["note"] = NO_ROUNDS.format(every=run.get("validate-every", "?"))
    return section


def stage_names(run: Mapping[str, Any]) -> dict[int, str]:
    """The run's stages by index (``unet``, ``classifier``, ``static``... with ``fold k`` under cross-validation); empty if unknown."""
    from models.run_config import RunConfig, RunConfigError  # noqa: PLC0415
    from models.stages import plan_for  # noqa: PLC0415

    try:
        plan = plan_for(RunConfig.from_mapping(run))
    except (RunConfigError, KeyError, TypeError, ValueError):
        return {}
    rounds = plan.cfg.num_rounds
    return {s.offset // rounds: s.name + (f" (fold {s.fold})" if s.fold else "") for s in plan.stages if s.name or s.fold}


def pooled_series(sites: Mapping[str, Mapping[str, list[float | None]]], key: str) -> list[float | None]:
    """Per round, the case-weighted mean of ``key`` over the sites that reported it (None when none did)."""
    length = max((len(s[key]) for s in sites.values()), default=0)
    out: list[float | None] = []
    for i in range(length):
        pairs = [(s[key][i], s["n"][i]) for s in sites.values() if _finite(s[key][i]) and _finite(s["n"][i]) and s["n"][i] > 0]
        total = sum(n for _, n in pairs)
        out.append(sum(v * n for v, n in pairs) / total if total else None)
    return out


def figure_file(series: Mapping[str, Any]) -> str:
    """File name of one series' figure, e.g. ``convergence_federated.png`` or ``convergence_federated_unet.png``."""
    stage = f"_{safe_name(series['stage'])}" if series["stage"] else ""
    return f"convergence_{safe_name(series['model'])}{stage}.png"


def series_title(series: Mapping[str, Any]) -> str:
    """A series' label: its model, and its stage when the model's rows do not already name it."""
    return f"{series['model']} · {series['stage']}" if series["stage"] else series["model"]


def convergence_figures(section: Mapping[str, Any] | None) -> dict[str, bytes]:
    """One PNG per series: the metric (left) and the validation loss (right), each site thin, pooled thick."""
    out: dict[str, bytes] = {}
    for series in (section or {}).get("series", []):
        fig = Figure(figsize=(9.0, 3.6), dpi=DPI, layout="constrained")
        label = series["metric"].upper() if series["metric"] == "auc" else "Dice"
        for ax, key, ylabel in zip(fig.subplots(1, 2), ("value", "loss"), (label, "loss")):
            for i, (site, values) in enumerate(sorted(series["sites"].items())):
                ax.plot(series["rounds"], _nan(values[key]), marker="o", markersize=3, linewidth=1.0,
                        color=_SITE_COLORS[i % len(_SITE_COLORS)], label=site)  # fmt: skip
            ax.plot(series["rounds"], _nan(series["pooled"][key]), color="black", marker="s", markersize=5, linewidth=2.2, label="pooled")
            ax.set_xlabel("round (within the stage)")
            _round_ticks(ax, series["rounds"])
            ax.set_ylabel(f"validation {ylabel}")
            ax.grid(True, color="#e5e5e5", linewidth=0.6)
            ax.legend(fontsize=8, loc="best")
        fig.suptitle(f"Convergence — {series_title(series)}", fontsize=11)
        out[figure_file(series)] = _png(fig)
    return out


def overlay_figure(curves: Mapping[str, tuple[list[int], list[float | None]]], metric: str) -> bytes:
    """Several runs' pooled validation curves on one axes (``curves``: label -> rounds, values)."""
    fig = Figure(figsize=(6.0, 4.5), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for i, (label, (rounds, values)) in enumerate(curves.items()):
        ax.plot(rounds, _nan(values), marker="o", markersize=3, color=_SITE_COLORS[i % len(_SITE_COLORS)], label=label)
    ax.set_title(f"Pooled validation {metric.upper() if metric == 'auc' else 'Dice'} per round", fontsize=11)
    ax.set_xlabel("round")
    _round_ticks(ax, sorted({r for rounds, _ in curves.values() for r in rounds}))
    ax.set_ylabel(metric.upper() if metric == "auc" else "Dice")
    ax.grid(True, color="#e5e5e5", linewidth=0.6)
    if curves:
        ax.legend(fontsize=8, loc="best")
    else:
        ax.text(0.5, 0.5, "no per-round validation", ha="center", va="center", transform=ax.transAxes)
    return _png(fig)


def convergence_markdown(report: Mapping[str, Any]) -> list[str]:
    """report.md's convergence section: the figures, the last round's pooled values, or why there are none."""
    section = report.get("convergence")
    if not section:
        return []
    out = ["", "## Convergence (per-round validation)", ""]
    if section.get("note"):
        return out + [section["note"] + "."]
    out += [section["pooling"] + ".", "", "| model | stage | metric | rounds | last pooled | last pooled loss | figure |", "|---|---|---|---:|---:|---:|---|"]
    for s in section["series"]:
        cells = [_fmt(_last(s["pooled"]["value"])), _fmt(_last(s["pooled"]["loss"]))]
        out.append(f"| {s['model']} | {s['stage'] or '-'} | {s['metric']} | {len(s['rounds'])} | {cells[0]} | {cells[1]} | figures/{figure_file(s)} |")
    return out


def _series(model: str, stage: str, index: int, metric: str, rows: list[Mapping[str, Any]], rounds_per_stage: int | None) -> dict[str, Any]:
    """One (model, stage)'s rounds, per-site values and pooled values."""
    offset = index * rounds_per_stage if rounds_per_stage else 0
    stage = "" if stage == model.split("/")[-1] else stage  # the cine and fusion pipelines' rows already name their stage
    rounds = sorted({int(r["round"]) for r in rows})
    sites: dict[str, dict[str, list[float | None]]] = {}
    for line in rows:
        i = rounds.index(int(line["round"]))
        m = line["metrics"]
        entry = sites.setdefault(line["site"], {k: [None] * len(rounds) for k in ("value", "loss", "n")})
        entry["value"][i] = m.get("seg_dice" if metric == "dice" else "auc")
        entry["loss"][i] = m.get("loss")
        entry["n"][i] = m.get("seg_n" if metric == "dice" else "n", m.get("num_examples"))
    pooled = {key: pooled_series(sites, key) for key in ("value", "loss")}
    return {"model": model, "stage": stage, "metric": metric, "offset": offset, "rounds": [r - offset for r in rounds], "sites": sites, "pooled": pooled}


def _round_ticks(ax: Axes, rounds: list[int]) -> None:
    """Whole-round ticks: every round when there are few, else integer ticks."""
    if 0 < len(rounds) <= 12:
        ax.set_xticks(rounds)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _nan(values: list[float | None]) -> list[float]:
    """None as NaN, for plotting gaps."""
    return [v if _finite(v) else math.nan for v in values]


def _last(values: list[float | None]) -> float | None:
    """The last reported value of a series."""
    return next((v for v in reversed(values) if _finite(v)), None)
