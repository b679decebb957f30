"""Federated L1-penalised logistic regression (LASSO) and its penalty chosen by site-stratified K-fold CV.

Minimises ``-loglik(beta) + lam * sum_j |beta_j|`` over the penalised coefficients (the intercept
is not penalised), as scikit-learn's ``LogisticRegression(penalty="l1", C=1/lam)`` does on the
pooled rows. Each outer step is a proximal Newton step: the sites' summed score and information
(``models/federated_logit.py``: only p-vectors and p x p matrices leave a site) define the
quadratic model of the log-likelihood exactly, the server minimises it plus the L1 penalty by
coordinate descent, and a backtracking line search on the federated log-likelihood keeps every
step a descent. K-fold cross-validation splits every site's own rows into K stratified folds;
fold k's model trains on the other folds of every site and is scored by the deviance of fold k,
summed over the sites.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from models.federated_logit import INTERCEPT, LogitStatistics, Statistics, fit_logit


@dataclass(frozen=True)
class LassoFit:
    """An L1-penalised fit: coefficients (zeros where a variable is dropped), the penalty and the objective."""

    names: tuple[str, ...]
    coef: np.ndarray
    lam: float
    loglik: float
    iterations: int

    @property
    def selected(self) -> tuple[str, ...]:
        """The variables with a non-zero coefficient (the intercept left out)."""
        return tuple(n for n, c in zip(self.names, self.coef) if n != INTERCEPT and c != 0.0)


def fit_lasso(statistics: Statistics, names: Sequence[str], lam: float, start: np.ndarray | None = None, tol: float = 1e-9, max_iter: int = 100) -> LassoFit:
    """Proximal Newton with coordinate descent on the federated quadratic model and a backtracking line search."""
    columns = list(range(len(names)))
    penalised = np.array([n != INTERCEPT for n in names])
    beta = np.zeros(len(names)) if start is None else np.array(start, dtype=np.float64)
    total = statistics(beta, columns)
    objective = -total.loglik + lam * np.abs(beta[penalised]).sum()
    for iteration in range(1, max_iter + 1):
        target = _coordinate_descent(total, beta, lam, penalised)
        direction = target - beta
        if np.max(np.abs(direction)) < tol:
            break
        step, candidate, new_total, new_objective = 1.0, beta, total, objective
        while step > 1e-10:  # backtracking: the quadratic model may overshoot the log-likelihood
            candidate = beta + step * direction
            new_total = statistics(candidate, columns)
            new_objective = -new_total.loglik + lam * np.abs(candidate[penalised]).sum()
            if new_objective <= objective + 1e-12 * max(1.0, abs(objective)):
                break
            step /= 2
        converged = objective - new_objective < tol * max(1.0, abs(objective))
        beta, total, objective = candidate, new_total, new_objective
        if converged:
            break
    return LassoFit(tuple(names), beta, lam, total.loglik, iteration)


def _coordinate_descent(total: LogitStatistics, beta: np.ndarray, lam: float, penalised: np.ndarray, sweeps: int = 500) -> np.ndarray:
    """Minimise the quadratic model ``-g'(b - beta) + (b - beta)'H(b - beta)/2 + lam |b|_1`` over ``b``."""
    h, g = total.information, total.score
    b = beta.copy()
    for _ in range(sweeps):
        largest = 0.0
        for j in range(b.size):
            if h[j, j] <= 0:
                continue
            # the partial derivative of the smooth part at b, without coordinate j's own term
            rest = -g[j] + h[j] @ (b - beta) - h[j, j] * (b[j] - beta[j])
            raw = beta[j] - rest / h[j, j]
            new = np.sign(raw) * max(abs(raw) - lam / h[j, j], 0.0) if penalised[j] else raw
            largest = max(largest, abs(new - b[j]))
            b[j] = new
        if largest < 1e-13:
            break
    return b


def lambda_max(statistics: Statistics, names: Sequence[str]) -> float:
    """The smallest penalty that drops every variable: the largest |score| of a penalised one at the intercept-only fit."""
    beta = np.zeros(len(names))
    intercept = [i for i, n in enumerate(names) if n == INTERCEPT]
    if intercept:
        beta[intercept] = fit_logit(statistics, names, intercept).coef
    total = statistics(beta, list(range(len(names))))
    return float(max(abs(total.score[j]) for j, n in enumerate(names) if n != INTERCEPT))


@dataclass(frozen=True)
class LassoPath:
    """Cross-validated penalties: each lambda's mean held-out deviance per case, and the chosen one."""

    lambdas: np.ndarray
    cv_deviance: np.ndarray
    chosen: float
    fit: LassoFit


FoldStatistics = Callable[[int, bool], Statistics]
"""``fold(k, held_out)``: the federation's statistics on every site's fold k (``held_out``) or on its other folds."""


def fold_deviance(train: Statistics, held: Statistics, names: Sequence[str], lambdas: np.ndarray) -> np.ndarray:
    """One fold's held-out deviance per case along the path (warm starts from the largest penalty down)."""
    out = np.zeros(lambdas.size)
    start = None
    columns = list(range(len(names)))
    for i, lam in enumerate(lambdas):
        fit = fit_lasso(train, names, lam, start)
        start = fit.coef
        test = held(fit.coef, columns)
        out[i] = -2.0 * test.loglik / max(test.n, 1)
    return out


FoldMap = Callable[[Callable[[int], np.ndarray], range], Sequence[np.ndarray]]


def cross_validated_lasso(
    fold: FoldStatistics, full: Statistics, names: Sequence[str], k: int, n_lambdas: int = 20, ratio: float = 1e-3, map_folds: FoldMap | None = None,
) -> LassoPath:
    """Choose the penalty on a log-spaced path below ``lambda_max`` by K-fold CV deviance; refit on all rows with it.

    ``map_folds(work, range(k))`` runs each fold's path (default: one after the other); the
    federation runs them in lockstep so that each round of messages serves every fold.
    """
    top = lambda_max(full, names)
    lambdas = top * np.logspace(0, np.log10(ratio), n_lambdas)
    work = lambda i: fold_deviance(fold(i, False), fold(i, True), names, lambdas)  # noqa: E731
    per_fold = list((map_folds or (lambda f, r: [f(i) for i in r]))(work, range(k)))
    deviance = np.mean(per_fold, axis=0)
    chosen = float(lambdas[int(np.argmin(deviance))])
    return LassoPath(lambdas, deviance, chosen, fit_lasso(full, names, chosen))
