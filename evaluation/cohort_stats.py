"""Cohort statistics from sites' sufficient statistics: Table 1 cells, univariate tests, correlation pruning.

A site sends, per group (cohort, or N0 / N+), only counts, sums and sums of squares of each
continuous variable, the cross-products of the candidate features, and category counts; their
sums equal the pooled rows', so means, SDs, Student's t-test, Pearson correlations, chi-square
and Fisher's exact test computed here equal those of a pooled analysis. Cells below the
small-cell threshold k are shown as ``<k`` (default 5).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

SMALL_CELL = 5


@dataclass(frozen=True)
class Moments:
    """Count, sum and sum of squares of one variable in one group."""

    n: int
    total: float
    squares: float

    @classmethod
    def of(cls, values: Sequence[float] | np.ndarray) -> Moments:
        """A site's moments of its own values."""
        v = np.asarray(values, dtype=np.float64)
        return cls(int(v.size), float(v.sum()), float((v * v).sum()))

    def __add__(self, other: Moments) -> Moments:
        """Both sites' values together."""
        return Moments(self.n + other.n, self.total + other.total, self.squares + other.squares)

    @property
    def mean(self) -> float:
        """The mean."""
        return self.total / self.n

    @property
    def sd(self) -> float:
        """The sample standard deviation (n - 1)."""
        return math.sqrt(max(self.squares - self.n * self.mean**2, 0.0) / (self.n - 1))


def t_test(a: Moments, b: Moments, equal_var: bool = True) -> tuple[float, float]:
    """Student's (or Welch's) two-sample t-test of two groups' means: (t, two-sided p), as scipy's ``ttest_ind``."""
    return tuple(
        float(v)
        for v in stats.ttest_ind_from_stats(a.mean, a.sd, a.n, b.mean, b.sd, b.n, equal_var=equal_var)
    )  # type: ignore[return-value]


@dataclass(frozen=True)
class CrossMoments:
    """Count, column sums (p) and cross-products X'X (p x p) of a set of features."""

    n: int
    sums: np.ndarray
    cross: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray) -> CrossMoments:
        """A site's cross moments of its own rows (n, p)."""
        x = np.asarray(x, dtype=np.float64)
        return cls(x.shape[0], x.sum(axis=0), x.T @ x)

    def __add__(self, other: CrossMoments) -> CrossMoments:
        """Both sites' rows together."""
        return CrossMoments(self.n + other.n, self.sums + other.sums, self.cross + other.cross)

    @property
    def mean(self) -> np.ndarray:
        """Each feature's mean."""
        return self.sums / self.n

    @property
    def sd(self) -> np.ndarray:
        """Each feature's population SD (0 for a constant one)."""
        return np.sqrt(np.maximum(np.diag(self.cross) / self.n - self.mean**2, 0.0))

    def correlation(self) -> np.ndarray:
        """Pearson's correlation matrix."""
        mean = self.mean
        cov = self.cross / self.n - np.outer(mean, mean)
        sd = np.sqrt(np.diag(cov))
        return cov / np.outer(sd, sd)


def variance_inflation(moments: CrossMoments) -> np.ndarray:
    """VIF of each feature, 1 / (1 - R_j^2) on the others with an intercept: the diagonal of the inverse correlation matrix."""
    return np.diag(np.linalg.inv(moments.correlation()))


def prune_correlated(names: Sequence[str], corr: np.ndarray, p_values: Sequence[float], threshold: float = 0.75) -> tuple[list[str], list[tuple[str, str, float]]]:
    """Keep features so that no kept pair has |r| > ``threshold``, preferring the smaller univariate p-value (seed 004).

    Features are taken in order of p-value; one correlated above the threshold with a feature already
    kept is dropped. Returns the kept names and (dropped, kept partner, r) for each dropped one.
    """
    order = sorted(range(len(names)), key=lambda i: (p_values[i], i))
    kept: list[int] = []
    dropped: list[tuple[str, str, float]] = []
    for i in order:
        partner = next((k for k in kept if abs(corr[i, k]) > threshold), None)
        if partner is None:
            kept.append(i)
        else:
            dropped.append((names[i], names[partner], float(corr[i, partner])))
    return [names[i] for i in sorted(kept)], dropped


def categorical_test(table: np.ndarray) -> dict[str, float | str]:
    """Chi-square test of a summed contingency table (groups x levels); Fisher's exact test for a 2 x 2 with an expected count below 5."""
    table = np.asarray(table, dtype=np.int64)
    table = table[:, table.sum(axis=0) > 0]
    chi2, p, dof, expected = stats.chi2_contingency(table, correction=False)
    if table.shape == (2, 2) and expected.min() < 5:
        return {"test": "fisher", "p": float(stats.fisher_exact(table)[1])}
    return {"test": "chi-square", "statistic": float(chi2), "dof": int(dof), "p": float(p)}


def shown_count(count: int, total: int, k: int = SMALL_CELL) -> str:
    """A Table 1 cell: ``n (x.x%)``, or ``<k`` when 0 < n < k (the site's small-cell rule)."""
    if 0 < count < k:
        return f"<{k}"
    return f"{count} ({100.0 * count / total:.1f}%)" if total else "0"


def level_counts(values: Sequence[str], levels: Sequence[str]) -> dict[str, int]:
    """A site's count of each level (levels it lacks count 0)."""
    counts = dict.fromkeys(levels, 0)
    for value in values:
        if value not in counts:
            raise ValueError(f"level {value!r} is not one of the harmonised levels ({', '.join(levels)})")
        counts[value] += 1
    return counts


def summed_counts(sites: Sequence[Mapping[str, int]], levels: Sequence[str]) -> np.ndarray:
    """The per-site level counts as one table (sites x levels)."""
    return np.array([[site.get(level, 0) for level in levels] for site in sites], dtype=np.int64)
