"""Exact federated logistic regression: Newton-Raphson on the sites' summed gradients and Hessians.

Each site computes, for the current coefficients, ``LogitStatistics`` of its own rows: the score
vector ``X'(y - mu)`` (p), the information matrix ``X'WX`` (p x p), its log-likelihood and its
counts; only these leave a site. Their sums are exactly the pooled data's, so the Newton
iterates, the coefficients, the standard errors (from the inverse of the summed information),
Wald confidence intervals and p-values equal a pooled fit of the same rows (statsmodels' ``Logit``).
Backward stepwise selection by AIC runs on the same sums (variance inflation factors come from
the sites' cross moments: ``evaluation/cohort_stats.py``).

A fit that separates the classes perfectly has no finite maximum likelihood: it is refused
(``SeparationError``, naming the variables whose coefficients diverge), never returned with huge
coefficients.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

INTERCEPT = "intercept"
_EXTREME = 1e-12  # a fitted probability this close to 0 or 1 (|logit| > 27.6) counts as a separated case


class SeparationError(ValueError):
    """The outcome is (quasi-)completely separated by the predictors: the maximum likelihood is not finite."""


@dataclass(frozen=True)
class LogitStatistics:
    """What a site sends for one Newton step: score, information, log-likelihood and counts (no row)."""

    score: np.ndarray  # (p,) X'(y - mu)
    information: np.ndarray  # (p, p) X' diag(mu (1 - mu)) X
    loglik: float
    n: int
    n_positive: int
    n_extreme: int  # cases whose fitted probability is within 1e-12 of 0 or 1

    def __add__(self, other: LogitStatistics) -> LogitStatistics:
        """The statistics of both sites' rows together."""
        return LogitStatistics(
            self.score + other.score, self.information + other.information, self.loglik + other.loglik,
            self.n + other.n, self.n_positive + other.n_positive, self.n_extreme + other.n_extreme,
        )  # fmt: skip


def site_statistics(x: np.ndarray, y: np.ndarray, beta: np.ndarray) -> LogitStatistics:
    """One site's statistics at ``beta`` for its design matrix ``x`` (n, p; the intercept column included) and labels ``y``."""
    x, y, beta = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), np.asarray(beta, dtype=np.float64)
    eta = x @ beta
    mu = 1.0 / (1.0 + np.exp(-eta))
    weights = mu * (1.0 - mu)
    loglik = float(np.sum(y * eta - np.logaddexp(0.0, eta)))  # stable for large |eta|
    extreme = int(np.sum((mu < _EXTREME) | (mu > 1.0 - _EXTREME)))
    return LogitStatistics(x.T @ (y - mu), (x * weights[:, None]).T @ x, loglik, int(y.size), int(y.sum()), extreme)


Statistics = Callable[[np.ndarray, Sequence[int]], LogitStatistics]
"""The federation's sum of site statistics at coefficients ``beta`` for the design's columns ``columns``."""


@dataclass(frozen=True)
class LogitFit:
    """A fitted model: coefficients with standard errors, Wald statistics and 95% CIs, log-likelihood and AIC."""

    names: tuple[str, ...]
    coef: np.ndarray
    se: np.ndarray
    loglik: float
    n: int
    n_positive: int
    iterations: int

    @property
    def z(self) -> np.ndarray:
        """Wald z statistics."""
        return self.coef / self.se

    @property
    def p_values(self) -> np.ndarray:
        """Two-sided Wald p-values."""
        return 2.0 * stats.norm.sf(np.abs(self.z))

    def ci(self, level: float = 0.95) -> np.ndarray:
        """Wald confidence intervals (p, 2) of the coefficients."""
        half = stats.norm.ppf(0.5 + level / 2.0) * self.se
        return np.stack([self.coef - half, self.coef + half], axis=1)

    @property
    def aic(self) -> float:
        """Akaike's information criterion, -2 loglik + 2 p."""
        return -2.0 * self.loglik + 2.0 * len(self.names)

    def odds_ratios(self, level: float = 0.95) -> list[dict[str, float | str]]:
        """Odds ratio, its Wald CI and p-value per variable (the intercept left out): seed 000's Table 2 rows."""
        ci = np.exp(self.ci(level))
        return [
            {"variable": name, "or": float(math.exp(c)), "ci_low": float(lo), "ci_high": float(hi), "p": float(p)}
            for name, c, (lo, hi), p in zip(self.names, self.coef, ci, self.p_values)
            if name != INTERCEPT
        ]


def fit_logit(statistics: Statistics, names: Sequence[str], columns: Sequence[int] | None = None, tol: float = 1e-10, max_iter: int = 50) -> LogitFit:
    """Newton-Raphson on the federation's summed statistics for the design's ``columns`` (default: all of ``names``).

    Stops when the largest Newton step is below ``tol``; refuses a separated outcome.
    """
    columns = list(range(len(names)) if columns is None else columns)
    chosen = tuple(names[c] for c in columns)
    beta = np.zeros(len(columns))
    total = statistics(beta, columns)
    for iteration in range(1, max_iter + 1):
        if total.n_positive in (0, total.n):
            raise SeparationError(f"logistic regression on {', '.join(chosen)}: the rows hold one class only ({total.n_positive} of {total.n} positive)")
        if total.n_extreme:  # an iterate that fits cases with probability 0 or 1: the likelihood rises without bound
            _diverged(beta, chosen, total, iteration - 1)
        step = _solve(total.information, total.score, chosen)
        beta = beta + step
        total = statistics(beta, columns)
        if np.max(np.abs(step)) < tol:
            break
    else:
        _diverged(beta, chosen, total, max_iter)
    if total.n_extreme:
        _diverged(beta, chosen, total, iteration)
    se = np.sqrt(np.diag(np.linalg.inv(total.information)))
    return LogitFit(chosen, beta, se, total.loglik, total.n, total.n_positive, iteration)


def _solve(information: np.ndarray, score: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """The Newton step; a singular information matrix names collinear (or constant) variables."""
    try:
        return np.linalg.solve(information, score)
    except np.linalg.LinAlgError as err:
        raise SeparationError(
            f"logistic regression on {', '.join(names)}: the information matrix is singular (collinear or constant variables, "
            "or separated classes)"
        ) from err


def _diverged(beta: np.ndarray, names: tuple[str, ...], total: LogitStatistics, iterations: int) -> None:
    """Raise for a fit whose likelihood has no finite maximum, naming the diverging variables."""
    order = np.argsort(-np.abs(beta))
    worst = ", ".join(f"{names[i]} ({beta[i]:+.3g})" for i in order[:3] if names[i] != INTERCEPT) or names[int(order[0])]
    kind = "completely" if total.n_extreme == total.n else "quasi-completely"
    raise SeparationError(
        f"logistic regression on {', '.join(names)}: the outcome is {kind} separated ({total.n_extreme} of {total.n} cases fitted "
        f"with probability 0 or 1 after {iterations} Newton steps); the maximum likelihood is not finite. Largest coefficients: {worst}. "
        "Drop or merge these variables (or their sparse levels), or use a penalised fit"
    )


@dataclass(frozen=True)
class Step:
    """One step of backward selection: the variable dropped (None for the start) and the model's AIC."""

    dropped: str | None
    aic: float
    names: tuple[str, ...]


def backward_selection(
    fit_many: Callable[[list[list[int]]], list[LogitFit | Exception]],
    groups: Sequence[tuple[str, Sequence[int]]],
    always: Sequence[int] = (),
    keep: Collection[str] = (),
) -> tuple[LogitFit, list[Step]]:
    """Backward stepwise selection by AIC over groups of columns (a categorical variable's levels leave together).

    ``fit_many`` fits several column sets at once (in a federation: all in one message round); each
    step drops the group whose removal lowers AIC most, until none does. ``always`` columns (the
    intercept) and the groups named in ``keep`` are never dropped; a trial fit that fails
    (separation) is passed over. Returns the final fit and the steps.
    """
    current = list(groups)

    def columns(chosen: Sequence[tuple[str, Sequence[int]]]) -> list[int]:
        return [*always, *sorted(c for _, cols in chosen for c in cols)]

    (fit,) = fit_many([columns(current)])
    if isinstance(fit, Exception):
        raise fit
    steps = [Step(None, fit.aic, fit.names)]
    while True:
        candidates = [g for g in current if g[0] not in keep]
        trials = fit_many([columns([g for g in current if g is not c]) for c in candidates]) if candidates else []
        usable = [(t, c) for t, c in zip(trials, candidates) if isinstance(t, LogitFit)]
        if not usable:
            return fit, steps
        best, dropped = min(usable, key=lambda tc: tc[0].aic)
        if best.aic >= fit.aic:
            return fit, steps
        current.remove(dropped)
        fit = best
        steps.append(Step(dropped[0], fit.aic, fit.names))


def backward_aic(statistics: Statistics, names: Sequence[str], keep: Sequence[str] = (INTERCEPT,)) -> tuple[LogitFit, list[Step]]:
    """Backward stepwise selection by AIC over single columns, one fit at a time; ``keep`` never dropped (the intercept by default)."""

    def fit_many(sets: list[list[int]]) -> list[LogitFit | Exception]:
        out: list[LogitFit | Exception] = []
        for columns in sets:
            try:
                out.append(fit_logit(statistics, names, columns))
            except SeparationError as err:
                out.append(err)
        return out

    return backward_selection(fit_many, [(n, (i,)) for i, n in enumerate(names)], keep=keep)