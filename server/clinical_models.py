"""The clinical models fitted on the federation's sums: univariable and multivariable logistic regression,
backward selection by AIC with a VIF check (seed 000), and univariate tests, correlation pruning and
the cross-validated LASSO before single, pre- and post-fusion models (seed 004).

Every function takes a ``ClinicalFederation`` (or anything with its ``lockstep``, ``summed`` and
``trainers``) and works on the training sites' training split; independent fits run in lockstep
(``models/lockstep.py``), so a round of messages serves them all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import stats

from evaluation.cohort_stats import CrossMoments, Moments, t_test, variance_inflation
from models.federated_lasso import cross_validated_lasso
from models.federated_logit import INTERCEPT, LogitFit, backward_selection, fit_logit
from protocol.clinical import SIGNATURE, Design, Spec
from server.clinical_federation import ClinicalFederation, Source, statistics_of
from server.clinical_schema import ClinicalError


@dataclass(frozen=True)
class Group:
    """A variable's columns in the full design (a categorical variable has one per non-reference level)."""

    name: str
    columns: tuple[int, ...]


def groups_of(design: Design) -> list[Group]:
    """Each variable's (and the signature's, and each image feature's) columns in ``design``, intercept excluded."""
    out, at = [], 1
    for v in design.variables:
        out.append(Group(v.name, tuple(range(at, at + v.width))))
        at += v.width
    if design.signature:
        out.append(Group(SIGNATURE, (at,)))
        at += 1
    for block in design.features:
        out += [Group(name, (at + i,)) for i, name in enumerate(block.names)]
        at += len(block.names)
    return out


def fit_rows(fit: LogitFit) -> dict[str, Any]:
    """A fit as the report stores it: per column coefficient, SE, OR with 95% CI and p; n, log-likelihood, AIC."""
    ci = fit.ci()
    columns = [
        {"variable": n, "coef": float(c), "se": float(s), "or": float(np.exp(c)), "ci_low": float(np.exp(lo)), "ci_high": float(np.exp(hi)), "p": float(p)}
        for n, c, s, (lo, hi), p in zip(fit.names, fit.coef, fit.se, ci, fit.p_values)
    ]  # fmt: skip
    return {"columns": columns, "n": fit.n, "n_positive": fit.n_positive, "loglik": fit.loglik, "aic": fit.aic, "iterations": fit.iterations}


def fit_all(fed: ClinicalFederation, source: Source, names: Sequence[str], column_sets: Sequence[Sequence[int]]) -> list[LogitFit | Exception]:
    """Fit each column set by Newton-Raphson, all in lockstep."""
    step = fed.lockstep()
    stats_fn = statistics_of(step, source)
    return step.run([lambda cols=list(cols): fit_logit(stats_fn, names, cols) for cols in column_sets])


def univariable(fed: ClinicalFederation, design: Design) -> dict[str, Any]:
    """One model per variable (and the signature): its ORs, Wald p-values and the likelihood-ratio p against the intercept-only model."""
    names, groups = design.names, groups_of(design)
    results = fit_all(fed, Source(design), names, [[0], *[[0, *g.columns] for g in groups]])
    null = results[0]
    if isinstance(null, Exception):
        raise null
    out: dict[str, Any] = {}
    for group, fit in zip(groups, results[1:]):
        if isinstance(fit, Exception):
            out[group.name] = {"error": str(fit)}
            continue
        lr = 2.0 * (fit.loglik - null.loglik)
        out[group.name] = fit_rows(fit) | {"lr_p": float(stats.chi2.sf(lr, len(group.columns)))}
    return out


def design_moments(fed: ClinicalFederation, design: Design) -> tuple[dict[int, CrossMoments], dict[str, tuple[int, int]]]:
    """The training sites' summed cross moments of the design per label group, and each site's complete cases (N0, N+)."""
    total, by_site = fed.summed("moments", "train", Spec(design=design))
    p = design.width
    moments = {g: CrossMoments(int(total[f"g{g}/n"]), total[f"g{g}/sum"], total[f"g{g}/cross"].reshape(p, p)) for g in (0, 1)}
    return moments, {site: (int(m["g0/n"]), int(m["g1/n"])) for site, m in by_site.items()}


def vif_of(moments: dict[int, CrossMoments], columns: Sequence[int]) -> dict[int, float]:
    """VIF of each of the columns (intercept excluded) among themselves, from the pooled cross moments."""
    both = moments[0] + moments[1]
    cols = [c for c in columns if c != 0]
    if len(cols) < 2:
        return dict.fromkeys(cols, 1.0)
    sub = CrossMoments(both.n, both.sums[cols], both.cross[np.ix_(cols, cols)])
    return dict(zip(cols, (float(v) for v in variance_inflation(sub))))


def backward(fed: ClinicalFederation, design: Design, chosen: Sequence[Group], keep: Sequence[str]) -> tuple[LogitFit, list[dict[str, Any]]]:
    """Backward stepwise selection by AIC over whole variables (all of a categorical variable's columns together); ``keep`` never dropped."""
    names = design.names
    fit, steps = backward_selection(lambda sets: fit_all(fed, Source(design), names, sets), [(g.name, g.columns) for g in chosen], (0,), keep)
    return fit, [{"dropped": s.dropped, "aic": s.aic, "columns": list(s.names)} for s in steps]


def multivariable(
    fed: ClinicalFederation, design: Design, uni: dict[str, Any], screen_p: float, max_vif: float, keep: Sequence[str], moments: dict[int, CrossMoments],
) -> dict[str, Any]:
    """Seed 000's multivariable model: variables with univariable LR p < ``screen_p`` (and ``keep``), the VIF check, then backward AIC."""
    groups = [g for g in groups_of(design) if g.name in keep or uni.get(g.name, {}).get("lr_p", 1.0) < screen_p]
    entered = [g.name for g in groups]
    vif_dropped = []
    while len(groups) > 1:
        vifs = vif_of(moments, [c for g in groups for c in g.columns])
        worst = max((g for g in groups if g.name not in keep), key=lambda g: max(vifs[c] for c in g.columns), default=None)
        if worst is None or max(vifs[c] for c in worst.columns) <= max_vif:
            break
        vif_dropped.append({"variable": worst.name, "vif": max(vifs[c] for c in worst.columns)})
        groups.remove(worst)
    if not groups:
        raise ClinicalError(f"no variable has a univariable p below {screen_p} (run config 'clinical-screen-p')")
    fit, steps = backward(fed, design, groups, keep)
    names = list(design.names)
    vifs = vif_of(moments, [names.index(n) for n in fit.names])
    final_vif = {names[c]: v for c, v in vifs.items()}
    return {"entered": entered, "vif_dropped": vif_dropped, "steps": steps, "vif": final_vif, "fit": fit}


def univariate_tests(moments: dict[int, CrossMoments], names: Sequence[str]) -> dict[str, float]:
    """Each column's Student t-test between N0 and N+, from the per-label moments (intercept excluded)."""
    out = {}
    for j, name in enumerate(names):
        if j == 0:
            continue
        cells = [Moments(m.n, float(m.sums[j]), float(m.cross[j, j])) for m in (moments[0], moments[1])]
        out[name] = float(t_test(*cells)[1])
    return out


def standardised(design: Design, moments: dict[int, CrossMoments]) -> Design:
    """The design with each column centred and scaled by the pooled mean and SD (the intercept kept as 1)."""
    both = moments[0] + moments[1]
    mean, sd = both.mean, np.maximum(both.sd, 1e-6)  # a constant column is left unscaled
    mean[0], sd[0] = 0.0, 1.0
    return replace(design, center=tuple(float(m) for m in mean), scale=tuple(float(s) for s in sd))


def raw_coefficients(std: Design, columns: Sequence[int], coef: np.ndarray) -> np.ndarray:
    """Coefficients on standardised columns as coefficients on the columns as coded (intercept first in ``columns``)."""
    mean, sd = np.array(std.center)[list(columns)], np.array(std.scale)[list(columns)]
    raw = coef / sd
    raw[0] = coef[0] - float(np.sum(coef[1:] * mean[1:] / sd[1:]))
    return raw


def cv_folds(counts: Mapping[str, tuple[int, int]], wanted: int, min_cell: Mapping[str, int]) -> int:
    """The most folds, at most ``wanted``, whose smallest held-out fold at every site keeps that site's ``min_cell`` cases.

    Folds are dealt in turn within each label (``client/clinical_work.folds_of``), so a site's smallest fold
    holds floor(N0/K) + floor(N+/K) cases; a site refuses statistics on fewer than its small-cell count.
    """
    for k in range(wanted, 1, -1):
        if all(n0 // k + n1 // k >= min_cell.get(site, 1) for site, (n0, n1) in counts.items()):
            return k
    small = min(counts, key=lambda s: sum(counts[s]) - 2 * min_cell.get(s, 1))
    raise ClinicalError(
        f"site {small} has {sum(counts[small])} complete training case(s) ({counts[small][1]} N+): too few for 2-fold "
        f"cross-validation with folds of at least its privacy.min_cell_count={min_cell.get(small, 1)} cases"
    )


def lasso_selection(fed: ClinicalFederation, design: Design, moments: dict[int, CrossMoments], kept: Sequence[int], folds: int) -> dict[str, Any]:
    """The L1 path on the standardised kept columns, the penalty chosen by site-stratified K-fold CV deviance."""
    std = standardised(design, moments)
    columns = [0, *kept]
    names = [design.names[c] for c in columns]
    step = fed.lockstep()

    def on(source: Source) -> Any:
        base = statistics_of(step, source)
        return lambda beta, cols: base(beta, [columns[c] for c in cols])

    full = on(Source(std))
    fold = lambda k, held: on(Source(std, folds=folds, fold=k, held_out=held))  # noqa: E731
    path = cross_validated_lasso(fold, full, names, folds, n_lambdas=12, map_folds=lambda work, ks: _checked(step.run([lambda k=k: work(k) for k in ks])))
    coef = raw_coefficients(std, columns, path.fit.coef)
    return {
        "lambdas": path.lambdas.tolist(), "cv_deviance": path.cv_deviance.tolist(), "chosen": path.chosen,
        "selected": list(path.fit.selected), "coef": dict(zip(names, coef.tolist())),
    }  # fmt: skip


def _checked(results: list[Any]) -> list[Any]:
    """The lockstep's results, raising the first failure."""
    for r in results:
        if isinstance(r, Exception):
            raise r
    return results


def refit(fed: ClinicalFederation, design: Design, column_names: Sequence[str]) -> LogitFit:
    """An unpenalised fit on the named columns (intercept added)."""
    names = list(design.names)
    (fit,) = fit_all(fed, Source(design), names, [[0, *[names.index(n) for n in column_names if n != INTERCEPT]]])
    if isinstance(fit, Exception):
        raise fit
    return fit

