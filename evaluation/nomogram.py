"""A nomogram of a fitted logistic model: a points scale per variable, total points to probability.

Each variable's points are linear in its value: the variable whose effect over its range is
largest spans 0 to 100 points, the others in proportion (Iasonos et al. 2008, the layout of R's
``rms::nomogram``). A case's total points map back to its linear predictor, so reading the
probability scale at the total gives exactly the model's predicted probability.
"""

from __future__ import annotations

import io
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from models.federated_logit import INTERCEPT

MAX_POINTS = 100.0
MIN_LABEL_GAP = 6.0  # points between two tick labels above an axis; a closer one is written below it


@dataclass(frozen=True)
class Scale:
    """One variable's axis: its value range and the points at each end."""

    name: str
    low: float
    high: float
    points_low: float
    points_high: float
    binary: bool = False  # a 0/1 variable: ticks at its two values only
    labels: tuple[str, ...] = ()  # an ordinal's levels: ticks at ranks 0, 1, ... labelled with them
    level_points: tuple[tuple[str, float], ...] = ()  # a categorical variable: each level's points (its value is the level)

    def ticks(self) -> list[tuple[float, str]]:
        """The axis ticks as (points, label)."""
        if self.level_points:
            return [(points, level) for level, points in self.level_points]
        if self.labels:
            return [(self.points(float(i)), label) for i, label in enumerate(self.labels)]
        values = (0.0, 1.0) if self.binary else np.linspace(self.low, self.high, 5)
        return [(self.points(v), "yes" if self.binary and v else "no" if self.binary else f"{v:.3g}") for v in values]

    def points(self, value: float | str) -> float:
        """The points of one value (linear between the ends; a categorical variable's level: its own points)."""
        if self.level_points:
            return dict(self.level_points)[str(value)]
        assert not isinstance(value, str)
        return self.points_low + (value - self.low) / (self.high - self.low) * (self.points_high - self.points_low)


@dataclass(frozen=True)
class Nomogram:
    """The variables' scales and the map from total points to probability."""

    scales: tuple[Scale, ...]
    per_point: float  # linear-predictor units per point
    offset: float  # linear predictor at 0 total points

    def probability(self, total_points: float) -> float:
        """The predicted probability at a total of points."""
        return 1.0 / (1.0 + math.exp(-(self.offset + self.per_point * total_points)))

    def total_points(self, values: Mapping[str, float | str]) -> float:
        """A case's total points."""
        return sum(scale.points(values[scale.name]) for scale in self.scales)


def build_nomogram(
    coef: Mapping[str, float],
    ranges: Mapping[str, tuple[float, float]],
    binary: Collection[str] = (),
    levels: Mapping[str, Sequence[str]] | None = None,
    categorical: Mapping[str, Mapping[str, str | None]] | None = None,
) -> Nomogram:
    """The nomogram of a fitted model's coefficients (intercept under ``INTERCEPT``) over each variable's value range.

    ``binary`` variables (0/1) range over (0, 1); an ordinal in ``levels`` ranges over its ranks with the
    levels as tick labels; a ``categorical`` variable maps each level to its indicator column (None for the
    reference level) and gets one axis whose ticks are its levels, at their coefficients' points.
    """
    levels, categorical = levels or {}, categorical or {}
    grouped = {column for columns in categorical.values() for column in columns.values() if column}
    variables = [n for n in coef if n != INTERCEPT and n not in grouped]
    missing = [n for n in variables if n not in ranges and n not in binary]
    if missing:
        raise ValueError(f"nomogram: no value range for {', '.join(missing)}")
    level_coef = {name: {level: coef.get(column, 0.0) if column else 0.0 for level, column in columns.items()} for name, columns in categorical.items()}
    effects = {n: abs(coef[n]) * (1.0 if n in binary else ranges[n][1] - ranges[n][0]) for n in variables}
    effects |= {name: max(c.values()) - min(c.values()) for name, c in level_coef.items()}
    largest = max(effects.values(), default=0.0)
    if largest <= 0:
        raise ValueError("nomogram: every variable has zero effect over its range")
    per_point = largest / MAX_POINTS
    scales, offset = [], coef.get(INTERCEPT, 0.0)
    for name in variables:
        low, high = (0.0, 1.0) if name in binary else ranges[name]
        span = effects[name] / per_point
        rising = coef[name] >= 0
        scales.append(Scale(name, low, high, 0.0 if rising else span, span if rising else 0.0, name in binary, tuple(levels.get(name, ()))))
        offset += coef[name] * (low if rising else high)  # the value scored 0 points
    for name, by_level in level_coef.items():
        floor = min(by_level.values())
        points = tuple((level, (c - floor) / per_point) for level, c in sorted(by_level.items(), key=lambda item: item[1]))
        scales.append(Scale(name, 0.0, 1.0, 0.0, effects[name] / per_point, level_points=points))
        offset += floor
    return Nomogram(tuple(scales), per_point, offset)


def nomogram_png(nomogram: Nomogram, title: str = "Nomogram") -> bytes:
    """The nomogram drawn as a PNG: a points ruler, one axis per variable, total points and probability."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    rows = len(nomogram.scales) + 3
    fig, ax = plt.subplots(figsize=(8, 0.55 * rows + 0.8))
    total_max = sum(max(s.points_low, s.points_high) for s in nomogram.scales)
    _axis(ax, rows - 1, "Points", 0, MAX_POINTS, [(p, f"{p:g}") for p in np.linspace(0, MAX_POINTS, 11)])
    for i, scale in enumerate(nomogram.scales):
        _axis(ax, rows - 2 - i, scale.name, min(scale.points_low, scale.points_high), max(scale.points_low, scale.points_high), scale.ticks())
    scale_total = MAX_POINTS / max(total_max, 1e-9)
    _axis(ax, 1, "Total points", 0, total_max * scale_total, [(t * scale_total, f"{t:.0f}") for t in np.linspace(0, total_max, 6)])
    ticks = []
    for p in (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95):
        total = (math.log(p / (1 - p)) - nomogram.offset) / nomogram.per_point
        if 0 <= total <= total_max:
            ticks.append((total * scale_total, f"{p:g}"))
    _axis(ax, 0, "Probability", min((t for t, _ in ticks), default=0), max((t for t, _ in ticks), default=0), ticks)
    ax.set_xlim(-30, MAX_POINTS + 5)
    ax.set_ylim(-0.8, rows - 0.3)
    ax.axis("off")
    ax.set_title(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _axis(ax: object, y: float, label: str, start: float, end: float, ticks: list[tuple[float, str]]) -> None:
    """One horizontal axis at height ``y`` with its label on the left and labelled ticks."""
    ax.plot([start, end], [y, y], color="black", linewidth=1)  # type: ignore[attr-defined]
    ax.text(-2, y, label, ha="right", va="center", fontsize=9)  # type: ignore[attr-defined]
    above = -math.inf  # where the last label above the axis stands: a label too close to it goes below
    for x, text in sorted(ticks):
        ax.plot([x, x], [y, y + 0.12], color="black", linewidth=1)  # type: ignore[attr-defined]
        if x - above >= MIN_LABEL_GAP:
            ax.text(x, y + 0.18, text, ha="center", va="bottom", fontsize=7)  # type: ignore[attr-defined]
            above = x
        else:
            ax.text(x, y - 0.1, text, ha="center", va="top", fontsize=7)  # type: ignore[attr-defined]
