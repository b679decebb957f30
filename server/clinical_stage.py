"""The clinical stage of a run: after the image model, the clinical models fitted on the sites' sums.

``clinical = combined`` (seed 000): Table 1; univariable ORs of every clinical variable and of the
image model's signature; the combined model (signature + clinical factors) and the clinical-only
model, each by univariable screening, a VIF check and backward AIC; the nomogram of the combined
model. ``clinical = fusion`` (seed 004): Table 1; univariate t-tests, correlation pruning and the
site-stratified cross-validated LASSO over every clinical column, the signature and (``clinical-features``)
the final image model's per-modality embeddings; the single models (clinical columns, the deep
signature, each modality's selected features), pre-fusion (every selected feature) and post-fusion
(a logistic regression over the single models' linear predictors). Every model is then evaluated
at every site (operating point from the pooled validation histograms, as the image model's), with
DeLong, NRI and IDI against the image model computed at the site, and the readers compared.

Everything the report needs goes to ``clinical.json``; the rows go to ``metrics.jsonl`` and
``comparisons.jsonl`` like every other model's. A training site that fails a statistics job is
left out and the fits start again without it (the sums must be exact); a fit that cannot be
made (separation, no variable) stops the stage with the reason recorded, never the run.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from flwr.app import ArrayRecord

from evaluation.cohort_stats import Moments, prune_correlated
from evaluation.pooling import at_threshold
from evaluation.table1 import ContinuousCell, categorical_rows, continuous_rows
from models.federated_logit import INTERCEPT, LogitFit, SeparationError
from models.run_config import RunConfig
from models.stages import Plan, plan_for
from protocol.clinical import SIGNATURE, Design, FeatureBlock, Fit, LinearScore, Spec, Variable
from server.clinical_features import feature_blocks
from server.clinical_federation import SIGNATURE_MODEL, ClinicalFederation, SiteFailure
from server.clinical_models import (
    cv_folds, design_moments, fit_rows, lasso_selection, multivariable, refit, univariable, univariate_tests,
)  # fmt: skip
from server.clinical_schema import ClinicalError, Harmonised, harmonise, reader_variables
from server.federation import Courier, Grid
from server.operating_point import threshold_from_site_metrics
from server.run_dir import RunDirectory
from strategies.sites import NodeSite

logger = logging.getLogger("axilla.server")
BINS = 80  # fixed bins of a continuous variable's histogram: pooled mean +/- 4 SD (values beyond count in the end bins)
Model = tuple[tuple[int, ...], tuple[float, ...]]  # design columns and coefficients


def clinical_stage(grid: Grid, plan: Plan, sites: Mapping[int, NodeSite], run_dir: RunDirectory, courier: Courier, models: Mapping[str, ArrayRecord]) -> None:
    """Fit, evaluate and record the run's clinical models (``clinical`` run config key); nothing when it is ``off``."""
    cfg, last = plan.cfg, plan.last
    if cfg.clinical == "off":
        return
    started = time.perf_counter()
    fed = ClinicalFederation(grid, sites, last.cfg, courier, {**models, SIGNATURE_MODEL: models[last.name]}, last.crop_with)
    excluded: dict[str, str] = {}
    result: dict[str, Any] = {}
    while True:
        result.clear()
        try:
            _evaluate(fed, cfg, run_dir, _fit(fed, cfg, feature_blocks(last.cfg), excluded, result), result)
            break
        except SiteFailure as err:
            logger.error("clinical models: %s; fitting again without it", err)
            excluded[err.site] = err.reason
            fed.exclude(err.site)
            if sum(s.trains for s in fed.sites.values()) < cfg.min_train_sites:
                result["stopped"] = f"fewer than min-train-sites={cfg.min_train_sites} training sites answered the clinical jobs"
                break
        except (ClinicalError, SeparationError) as err:
            logger.error("clinical models stopped: %s", err)
            result["stopped"] = str(err)  # what was fitted before stays in the record
            break
    result |= {"mode": cfg.clinical, "excluded": excluded, "message_rounds": fed.rounds, "seconds": round(time.perf_counter() - started, 1), "signature": SIGNATURE_TEXT}
    (run_dir.path / "clinical.json").write_text(json.dumps(result, indent=1, default=_plain) + "\n", encoding="utf-8")
    logger.info("clinical models (%s): %d message rounds; %s", cfg.clinical, fed.rounds, result.get("stopped", "done"))


SIGNATURE_TEXT = "dl_signature: the logit of the final image model's probability for the case, computed at its site (clipped to +/-12)"


def _plain(value: Any) -> Any:
    """numpy values as JSON."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(type(value).__name__)


def coding(schemas: Mapping[str, list[Variable]], trainers: list[str], cfg: RunConfig) -> tuple[Harmonised, tuple[Variable, ...], list[str]]:
    """The harmonised variables, the readers' columns and the notes on both; ``ClinicalError`` when the run config asks the impossible."""
    readers_wanted = cfg.reader_list
    harmonised = harmonise(schemas, trainers, cfg.clinical_variable_list, readers_wanted)
    readers, reader_notes = reader_variables(schemas, readers_wanted) if readers_wanted else ((), [])
    return harmonised, readers, harmonised.notes + reader_notes


def clinical_preflight(grid: Grid, sites: Mapping[int, NodeSite], cfg: RunConfig) -> None:
    """Before any training: every site's schema, harmonised as the stage will, so that a run config the sites' columns
    cannot serve (an untyped ``clinical-variables`` or ``readers`` column, kinds that disagree) stops the run at once.

    A site that cannot give its schema is only named here: the stage leaves it out later.
    """
    if cfg.clinical == "off":
        return
    blocks = feature_blocks(plan_for(cfg).last.cfg)  # a modality the final image model lacks stops the run here
    fed = ClinicalFederation(grid, sites, cfg, Courier(), {})
    schemas, failed = fed.schemas()
    for site, why in failed.items():
        logger.error("clinical models: site %s gave no clinical schema (%s); it will be left out of them", site, why)
    trainers = [s.name for s in sites.values() if s.trains and s.name in schemas]
    if len(trainers) < cfg.min_train_sites:
        raise ClinicalError(
            f"{len(trainers)} training site(s) gave their clinical schema, fewer than min-train-sites={cfg.min_train_sites} ("
            + "; ".join(f"{site}: {why}" for site, why in failed.items()) + ")"
        )
    harmonised, readers, notes = coding(schemas, trainers, cfg)
    logger.info(
        "clinical models (%s) will use %s%s", cfg.clinical, ", ".join(f"{v.name} ({v.kind})" for v in harmonised.variables),
        f"; readers {', '.join(r.name for r in readers)}" if readers else "",
    )  # fmt: skip
    for block in blocks:
        logger.info("clinical models: %d %s features of the final image model are candidate variables", len(block.names), block.modality)
    for note in notes:
        logger.warning("clinical models: %s", note)


@dataclass(frozen=True)
class Fitted:
    """What the evaluation evaluates: the models as columns and coefficients of one design, and the readers."""

    models: dict[str, Model]
    design: Design
    readers: tuple[Variable, ...]


def _fit(fed: ClinicalFederation, cfg: RunConfig, blocks: tuple[FeatureBlock, ...], excluded: dict[str, str], out: dict[str, Any]) -> Fitted:
    """Schema, harmonisation, Table 1 and the mode's models (``blocks``: the image features among the candidates); what the report shows goes to ``out``."""
    schemas, failed = fed.schemas()
    for site, why in failed.items():
        if any(s.name == site and s.trains for s in fed.sites.values()):
            raise SiteFailure(site, why)
        excluded[site] = why
        fed.exclude(site)
    trainers = [s.name for s in fed.trainers.values()]
    harmonised, readers, notes = coding(schemas, trainers, cfg)
    variables = harmonised.variables
    out |= {
        "variables": [v.to_dict() for v in variables], "readers": [r.to_dict() for r in readers], "notes": notes,
        "fit_split": "train", "training_sites": trainers,
    }  # fmt: skip
    out["table1"] = table1(fed, variables)
    if blocks:
        out["image_features"] = {b.modality: list(b.names) for b in blocks}
    design = Design(variables, signature=True, features=blocks)
    moments, counts = design_moments(fed, design)
    out["univariable"] = univariable(fed, design)
    if cfg.clinical == "combined":
        return Fitted(_combined(fed, cfg, design, moments, out), design, readers)
    models, evaluated_on = _fusion(fed, cfg, design, moments, counts, out)
    return Fitted(models, evaluated_on, readers)


def _combined(fed: ClinicalFederation, cfg: RunConfig, design: Design, moments: Any, out: dict[str, Any]) -> dict[str, Model]:
    """Seed 000: the combined (signature + clinical) and clinical-only models, and the combined model's nomogram."""
    uni = out["univariable"]
    models, out["multivariable"] = {}, {}
    for name, d, keep in (("combined", design, (SIGNATURE,)), ("clinical", Design(design.variables), ())):
        chosen = multivariable(fed, d, uni, cfg.clinical_screen_p, cfg.clinical_max_vif, keep, moments)
        fit: LogitFit = chosen.pop("fit")
        out["multivariable"][name] = chosen | fit_rows(fit)
        models[name] = _model(design, fit)
    combined = out["multivariable"]["combined"]
    out["nomogram"] = nomogram_spec(design, combined, moments)
    return models


def _fusion(
    fed: ClinicalFederation, cfg: RunConfig, design: Design, moments: Any, counts: Mapping[str, tuple[int, int]], out: dict[str, Any]
) -> tuple[dict[str, Model], Design]:
    """Seed 004: univariate tests, correlation pruning, the cross-validated LASSO, then single, pre- and post-fusion models.

    Returns the models and the design they are evaluated on (the clinical columns and the single models' scores).
    """
    names = list(design.names)
    tests = univariate_tests(moments, names)
    screened = [j for j in range(1, len(names)) if tests[names[j]] < cfg.clinical_screen_p]
    both = moments[0] + moments[1]
    corr = both.correlation()
    kept_names, pruned = prune_correlated([names[j] for j in screened], corr[np.ix_(screened, screened)], [tests[names[j]] for j in screened], cfg.clinical_prune_r)
    if not kept_names:
        raise ClinicalError(f"no feature has a univariate p below {cfg.clinical_screen_p} (run config 'clinical-screen-p')")
    kept = [names.index(n) for n in kept_names]
    folds = cv_folds(counts, cfg.clinical_folds, out["table1"]["min_cell_count"])
    if folds < cfg.clinical_folds:
        out["notes"].append(f"LASSO cross-validation in {folds} folds, not clinical-folds={cfg.clinical_folds}: a site's smallest fold would hold fewer cases than its privacy.min_cell_count")
    lasso = lasso_selection(fed, design, moments, kept, folds)
    selected = lasso["selected"] or [kept_names[0]]
    out["selection"] = {
        "tests": tests, "screened": [names[j] for j in screened], "pruned": [{"dropped": a, "kept": b, "r": r} for a, b, r in pruned],
        "lasso": lasso, "selected": selected, "screen_p": cfg.clinical_screen_p, "prune_r": cfg.clinical_prune_r, "folds": folds,
        "counts": {"start": len(names) - 1, "univariate": len(screened), "correlation": len(kept), "lasso": len(lasso["selected"])},
    }  # fmt: skip
    fits: dict[str, LogitFit] = {}
    by_modality = {f"{b.modality}-features": [n for n in selected if n in set(b.names)] for b in design.features}
    image = {n for columns in by_modality.values() for n in columns}
    clinical_columns = [n for n in selected if n != SIGNATURE and n not in image]
    notes = out["notes"]

    def fit(name: str, on: Design, columns: list[str]) -> None:
        """An unpenalised refit; one that separates is named in the notes and left out, the others go on."""
        try:
            fits[name] = refit(fed, on, columns)
        except SeparationError as err:
            notes.append(f"{name} model not fitted: {err}")

    if clinical_columns:
        fit("clinical", design, clinical_columns)
    else:
        notes.append("the LASSO kept no clinical column: no clinical single model")
    fit("deep", design, [SIGNATURE])
    for name, columns in by_modality.items():  # the image features' own single model (seed 004's radiomics model)
        if columns:
            fit(name, design, columns)
        else:
            notes.append(f"the LASSO kept no {name.removesuffix('-features')} feature: no {name} single model")
    fit("pre-fusion", design, selected)
    singles = ("clinical", "deep", *by_modality)
    scores = tuple(LinearScore(name, design, *_model(design, fits[name])) for name in singles if name in fits)
    eval_design = replace(design, scores=scores)
    if len(scores) >= 2:
        fit("post-fusion", eval_design, [f"score:{s.name}" for s in scores])
    else:
        notes.append(f"post-fusion needs at least two single models ({', '.join(singles)}): not fitted")
    if not fits:
        raise ClinicalError("no fusion-stage model could be fitted (see the notes)")
    out["models"] = {name: fit_rows(fit) for name, fit in fits.items()}
    return {name: _model(eval_design, f) for name, f in fits.items()}, eval_design


def _model(design: Design, fit: LogitFit) -> Model:
    """A fit as columns of ``design`` and coefficients."""
    names = list(design.names)
    return tuple(names.index(n) for n in fit.names), tuple(float(c) for c in fit.coef)


def nomogram_spec(design: Design, fit: Mapping[str, Any], moments: Any) -> dict[str, Any]:
    """What the report draws the nomogram from: the fit's coefficients and each column's range (mean +/- 2 SD; an ordinal's ranks; 0/1)."""
    both = moments[0] + moments[1]
    names = list(design.names)
    mean, sd = both.mean, both.sd
    kinds = {c: v for v in design.variables for c in v.columns()}
    ranges, binary, levels, categorical = {}, [], {}, {}
    fitted = {row["variable"] for row in fit["columns"]}
    for row in fit["columns"]:
        name = row["variable"]
        if name == INTERCEPT:
            continue
        variable = kinds.get(name)
        if variable is not None and variable.kind == "categorical":
            columns = dict(zip(variable.levels[1:], variable.columns()))
            categorical[variable.name] = {level: (columns[level] if columns.get(level) in fitted else None) for level in variable.levels}
        elif variable is not None and variable.kind == "binary":
            binary.append(name)
        elif variable is not None and variable.kind == "ordinal":
            ranges[name], levels[name] = [0.0, float(len(variable.levels) - 1)], list(variable.levels)
        else:
            j = names.index(name)
            ranges[name] = [float(mean[j] - 2 * sd[j]), float(mean[j] + 2 * sd[j])]
    return {"model": "combined", "coef": {r["variable"]: r["coef"] for r in fit["columns"]}, "ranges": ranges, "binary": binary, "levels": levels, "categorical": categorical}


def table1(fed: ClinicalFederation, variables: tuple[Variable, ...]) -> dict[str, Any]:
    """Table 1 over every site's cases: moments first, then fixed bins around the pooled mean for the continuous variables."""
    first, failed = fed.ask("table1", "all", Spec(variables=variables), fed.sites, strict=False)
    if len(first) < 1:
        raise ClinicalError(f"no site answered the Table 1 job ({failed})")
    edges = {}
    for v in variables:
        if v.kind == "continuous":
            total = sum((np.array(m[f"{v.name}|{g}/moments"]) for m in first.values() for g in (0, 1)), np.zeros(3))
            mean = total[1] / max(total[0], 1)
            sd = float(np.sqrt(max(total[2] / max(total[0], 1) - mean**2, 1e-12)))
            edges[v.name] = tuple(float(e) for e in np.linspace(mean - 4 * sd, mean + 4 * sd, BINS + 1))
    got, failed2 = fed.ask("table1", "all", Spec(variables=variables, edges=edges), fed.sites, strict=False)
    k_by_site = {site: int(m["min_cell_count"]) for site, m in got.items()}
    k = max(k_by_site.values())  # the pooled columns follow the strictest site's rule
    rows = []
    for v in variables:
        missing = {site: int(sum(m[f"{v.name}|{g}/missing"] for g in (0, 1))) for site, m in got.items()}
        if v.kind == "continuous":
            cells = {
                site: {g: ContinuousCell(Moments(int(m[f"{v.name}|{g}/moments"][0]), *m[f"{v.name}|{g}/moments"][1:]), np.array(m[f"{v.name}|{g}/hist"])) for g in (0, 1)}
                for site, m in got.items()
            }  # fmt: skip
            row = continuous_rows(v.name, cells, np.array(edges[v.name]))
        else:
            counts = {site: {g: dict(zip(v.levels, m[f"{v.name}|{g}/counts"])) for g in (0, 1)} for site, m in got.items()}
            row = categorical_rows(v.name, counts, v.levels, k)
            row["type"] = v.kind
        rows.append(row | {"missing": missing})
    return {"rows": rows, "small_cell": k, "min_cell_count": k_by_site, "sites": list(got), "failed": {**failed, **failed2}, "continuous": f"mean +/- SD exact; median [IQR] from {BINS} fixed bins over the pooled mean +/- 4 SD"}


def _evaluate(fed: ClinicalFederation, cfg: RunConfig, run_dir: RunDirectory, fitted: Fitted, result: dict[str, Any]) -> None:
    """Every clinical model at every site: validation picks each one's operating point, then the test splits, comparisons and readers."""
    design, models, readers = fitted.design, fitted.models, fitted.readers
    reference = run_dir.model
    signature = list(design.names).index(SIGNATURE)
    fits = tuple(Fit(cols, beta, name) for name, (cols, beta) in models.items()) + (Fit((signature,), (1.0,), reference),)
    validators = {n: s for n, s in fed.sites.items() if s.validates}
    testers = {n: s for n, s in fed.sites.items() if s.tests}
    val, val_failed = fed.ask("evaluate", "val", Spec(design=design, fits=fits), validators, strict=False)
    thresholds = {}
    for name in models:
        per_site = [_prefixed(m, name) for m in val.values()]
        try:
            thresholds[name] = threshold_from_site_metrics(per_site, cfg)
        except ValueError:
            thresholds[name] = 0.5
    compare = [(name, reference) for name in models if name != "deep"]  # deep: the image model's score recalibrated, the same AUC
    if "combined" in models and "clinical" in models:
        compare.append(("combined", "clinical"))
    singles = [n for n in models if n not in ("pre-fusion", "post-fusion", "combined")]
    for name in ("pre-fusion", "post-fusion"):
        if name in models:
            compare += [(name, other) for other in singles]
    reader_model = "combined" if "combined" in models else next(iter(models))
    spec = Spec(design=design, fits=fits, thresholds=thresholds, compare=tuple(compare), readers=readers, reader_model=reader_model)
    test, test_failed = fed.ask("evaluate", "test", spec, testers, strict=False)
    for split, nodes, got, failed in (("val", validators, val, val_failed), ("test", testers, test, test_failed)):
        for site in nodes.values():
            for name in models:
                metrics = _prefixed(got.get(site.name, {}), name)
                if "auc" in metrics or "hist_pos" in metrics:
                    run_dir.record("final", name, site.name, split, at_threshold(metrics, thresholds[name]) if split == "val" else metrics)
                else:
                    run_dir.record("final", name, site.name, split, None, failed.get(site.name, "too few complete cases of both classes"))
    for site, metrics in test.items():
        for new, ref in compare:
            row = _prefixed(metrics, f"{new}~{ref}")
            if row:
                run_dir.record_comparison(site, "test", {"model_a": new, "model_b": ref, **row})
    result["thresholds"] = thresholds
    result["reader_rows"] = [
        {"site": site, "reader": r.name, "model": reader_model, **_prefixed(metrics, f"reader:{r.name}")} for site, metrics in test.items() for r in readers
    ]  # fmt: skip


def _prefixed(metrics: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The metrics named ``<prefix>/<name>``, by name."""
    head = prefix + "/"
    return {k[len(head):]: v for k, v in metrics.items() if k.startswith(head)}
