"""Table 1 (baseline characteristics by cohort and by N0 / N+) from the sites' summed statistics.

Continuous variables: mean +/- SD from moments (exact), median [IQR] from fixed-bin histograms
(linear interpolation within a bin, so exact to within one bin width; the report states the bins),
and tests between cohorts (Student's t for two, one-way ANOVA for more) and between the label
groups (Student's t), all from moments. Categorical variables: counts and percentages with the
small-cell rule (0 < n < k shown as ``<k``), and chi-square (Fisher's exact test for a sparse 2 x 2)
between cohorts and between label groups, on the summed counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from evaluation.cohort_stats import SMALL_CELL, Moments, categorical_test, shown_count, summed_counts, t_test

GROUPS = (0, 1)  # label groups: N0, N+


@dataclass(frozen=True)
class ContinuousCell:
    """One site's (or one label group's) statistics of a continuous variable: moments and fixed-bin counts."""

    moments: Moments
    counts: np.ndarray  # per bin of the table's edges

    def __add__(self, other: ContinuousCell) -> ContinuousCell:
        """Both cells' cases together."""
        return ContinuousCell(self.moments + other.moments, self.counts + other.counts)


def histogram_quantile(edges: np.ndarray, counts: np.ndarray, q: float) -> float:
    """The q-quantile of values binned by ``edges`` (len(counts) + 1), interpolating linearly within the bin."""
    cumulative = np.concatenate([[0.0], np.cumsum(counts)])
    target = q * cumulative[-1]
    i = int(np.searchsorted(cumulative, target, side="left"))
    i = min(max(i, 1), len(counts))
    inside = counts[i - 1]
    fraction = 0.0 if inside == 0 else (target - cumulative[i - 1]) / inside
    return float(edges[i - 1] + fraction * (edges[i] - edges[i - 1]))


def one_way_anova(cells: Sequence[Moments]) -> tuple[float, float]:
    """One-way ANOVA F test of equal means across groups, from their moments: (F, p), as scipy's ``f_oneway``."""
    n = sum(c.n for c in cells)
    grand = sum(c.total for c in cells) / n
    between = sum(c.n * (c.mean - grand) ** 2 for c in cells)
    within = sum(c.squares - c.n * c.mean**2 for c in cells)
    df_between, df_within = len(cells) - 1, n - len(cells)
    f = (between / df_between) / (within / df_within)
    return float(f), float(stats.f.sf(f, df_between, df_within))


def continuous_rows(name: str, sites: Mapping[str, Mapping[int, ContinuousCell]], edges: np.ndarray) -> dict[str, Any]:
    """A continuous variable's Table 1 entry: per site, per label group and overall, with its tests."""

    def describe(cell: ContinuousCell) -> dict[str, float | int]:
        m = cell.moments
        return {
            "n": m.n, "mean": m.mean, "sd": m.sd,
            "median": histogram_quantile(edges, cell.counts, 0.5),
            "q1": histogram_quantile(edges, cell.counts, 0.25), "q3": histogram_quantile(edges, cell.counts, 0.75),
        }  # fmt: skip

    per_site = {site: _total(cells.values()) for site, cells in sites.items()}
    by_group = {g: _total(cells[g] for cells in sites.values() if g in cells) for g in GROUPS}
    cohort_moments = [cell.moments for cell in per_site.values()]
    cohorts = t_test(*cohort_moments) if len(cohort_moments) == 2 else one_way_anova(cohort_moments)
    return {
        "variable": name, "type": "continuous",
        "sites": {site: describe(cell) for site, cell in per_site.items()},
        "groups": {str(g): describe(cell) for g, cell in by_group.items()},
        "overall": describe(_total(per_site.values())),
        "p_cohorts": cohorts[1], "test_cohorts": "t-test" if len(cohort_moments) == 2 else "ANOVA",
        "p_groups": t_test(by_group[0].moments, by_group[1].moments)[1], "test_groups": "t-test",
        "bins": [float(e) for e in edges],
    }  # fmt: skip


def categorical_rows(name: str, sites: Mapping[str, Mapping[int, Mapping[str, int]]], levels: Sequence[str], k: int = SMALL_CELL) -> dict[str, Any]:
    """A categorical variable's Table 1 entry: counts shown with the small-cell rule, and its tests on the summed counts."""
    per_site = {site: {lv: sum(cells.get(g, {}).get(lv, 0) for g in GROUPS) for lv in levels} for site, cells in sites.items()}
    by_group = {g: {lv: sum(cells.get(g, {}).get(lv, 0) for cells in sites.values()) for lv in levels} for g in GROUPS}
    overall = {lv: sum(c[lv] for c in per_site.values()) for lv in levels}

    def shown(counts: Mapping[str, int]) -> dict[str, str]:
        total = sum(counts.values())
        return {lv: shown_count(counts[lv], total, k) for lv in levels}

    cohorts, groups = categorical_test(summed_counts(list(per_site.values()), levels)), categorical_test(summed_counts(list(by_group.values()), levels))
    return {
        "variable": name, "type": "categorical", "levels": list(levels),
        "sites": {site: shown(c) for site, c in per_site.items()},
        "groups": {str(g): shown(c) for g, c in by_group.items()},
        "overall": shown(overall),
        "p_cohorts": cohorts["p"], "test_cohorts": cohorts["test"], "p_groups": groups["p"], "test_groups": groups["test"],
        "small_cell": k,
    }  # fmt: skip


def _total(cells: Any) -> Any:
    """The sum of cells (ContinuousCell or Moments)."""
    cells = list(cells)
    total = cells[0]
    for cell in cells[1:]:
        total = total + cell
    return total
