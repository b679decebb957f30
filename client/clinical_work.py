"""A site's answers to the clinical jobs (``protocol/clinical.py``): sums over its own cases, never a row.

The cases are the manifest's (the split a job names, or ``all``), coded with the harmonised
variables the server sends. A job's cases are the complete ones: a case missing any variable the
job's design uses (or a reader's value, for that reader) is left out, and the job's ``n`` says how
many remained. Statistics over fewer cases than the site's ``privacy.min_cell_count`` are refused.
The image model's signature is its probability for each case (as a logit, clipped to
[-12, 12]), and its image features (``clinical-features``) a modality encoder's embedding of the
case, both computed here with the held model the query names and kept in the site's cache
(``client/case_outputs.py``); a case lacking the modality is incomplete for those columns.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from client.clinical import ClinicalVariable, clinical_columns, is_missing
from client.clinical_design import design_matrix
from client.errors import SiteDataError
from client.manifest import Case
from client.model_store import ModelStore
from client.node_site import LocalSite
from client.site_config import SiteConfig
from client.site_index import read_cases
from protocol.clinical import MAX_LEVELS, SIGNATURE, ClinicalQuery, Design, FeatureBlock, Spec, Variable
from protocol.messages import Metrics

logger = logging.getLogger("axilla.client")


@dataclass(frozen=True)
class JobCases:
    """The cases a job reads: manifest rows with labels, their split, the image model's signature (NaN when not asked) and its asked embeddings by modality."""

    cases: list[Case]
    labels: np.ndarray
    splits: list[str]
    signature: np.ndarray
    features: dict[str, np.ndarray] = field(default_factory=dict)


def schema(config: SiteConfig) -> list[Variable]:
    """The site's typed clinical columns (declared or inferred); a categorical column with too many levels is left out, logged."""
    cases, _ = read_cases(config)
    out = []
    for v in clinical_columns(cases, config.data.clinical, config.data.manifest).variables.values():
        if v.kind == "categorical" and len(v.levels) > MAX_LEVELS:
            logger.warning("site %s: clinical column %s has %d levels (more than %d): not offered to the clinical models", config.site, v.name, len(v.levels), MAX_LEVELS)
            continue
        out.append(Variable(v.name, v.kind, v.levels))
    return out


def job_cases(site: LocalSite, query: ClinicalQuery, store: ModelStore, needs_signature: bool, blocks: Sequence[FeatureBlock] = ()) -> JobCases:
    """The cases of the query's split at this node (a pooled node: its members'), with the signature and the blocks' embeddings when asked."""
    cases: list[Case] = []
    splits: list[str] = []
    for config in site.members:
        member_cases, member_splits = read_cases(config)
        for case in member_cases:
            if query.split in ("all", member_splits[case.case_id]):
                cases.append(case)
                splits.append(member_splits[case.case_id])
    labels = np.array([c.label for c in cases], dtype=np.float64)
    if not needs_signature and not blocks:
        return JobCases(cases, labels, splits, np.full(len(cases), np.nan))
    from client.case_outputs import case_outputs  # torch only where the image model's outputs are needed

    outputs = case_outputs(site, query, store)
    keys = [(c.case_id, s) for c, s in zip(cases, splits)]
    features = {}
    for block in blocks:
        if block.modality not in outputs.embeddings:
            has = ", ".join(outputs.embeddings) or "none: it is not a multimodal model"
            raise SiteDataError.public_fact(
                f"run config 'clinical-features' asks for the image model's {block.modality} embeddings; its modality encoders: {has}"
            )
        features[block.modality] = outputs.features(block.modality, keys)
        if features[block.modality].shape[1] != len(block.names):
            raise SiteDataError.public_fact(
                f"the request names {len(block.names)} {block.modality} features; the image model's encoder gives {features[block.modality].shape[1]}"
            )
    return JobCases(cases, labels, splits, outputs.signature(keys), features)


def feature_blocks(design: Design) -> list[FeatureBlock]:
    """Every image-feature block a design reads, its fitted scores' included (one per modality)."""
    out = {b.modality: b for b in design.features}
    for score in design.scores:
        out |= {b.modality: b for b in feature_blocks(score.design) if b.modality not in out}
    return list(out.values())


def _clinical_variable(variable: Variable) -> ClinicalVariable:
    return ClinicalVariable(variable.name, variable.kind, variable.levels)


def _design_variables(design: Design) -> list[Variable]:
    """Every clinical variable a design reads, its fitted scores' included."""
    out = list(design.variables)
    for score in design.scores:
        out += [v for v in _design_variables(score.design) if v not in out]
    return out


def complete(cases: JobCases, variables: Sequence[Variable], signature: bool, modalities: Sequence[str] = ()) -> np.ndarray:
    """Which cases have every value the job reads (the signature, every embedding of ``modalities``, when asked)."""
    keep = np.array([all(not is_missing(c.clinical.get(v.name, "")) for v in variables) for c in cases.cases], dtype=bool)
    if signature:
        keep &= np.isfinite(cases.signature)
    for modality in modalities:
        keep &= np.isfinite(cases.features[modality]).all(axis=1)
    return keep


def design_rows(cases: JobCases, design: Design, keep: np.ndarray) -> np.ndarray:
    """The design matrix of the kept cases (every value was checked complete), standardised when the design says so."""
    chosen = [c for c, k in zip(cases.cases, keep) if k]
    extra = {SIGNATURE: cases.signature[keep]} if design.signature else {}
    built = design_matrix(chosen, [_clinical_variable(v) for v in design.variables], extra)
    if len(built.left_out):
        raise SiteDataError.public_fact("a clinical value changed while the job ran")
    columns = [built.x, *(cases.features[b.modality][keep] for b in design.features)]
    for score in design.scores:
        inner = design_rows(cases, score.design, keep)
        columns.append((inner[:, list(score.columns)] @ np.array(score.beta))[:, None])
    x = np.hstack(columns)
    if design.center:
        x = (x - np.array(design.center)) / np.array(design.scale)
    return x


def folds_of(cases: JobCases, keep: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Each kept case's fold (0..k-1), stratified by label: cases ordered by a seeded hash of their id within each label, dealt in turn."""
    fold = np.full(len(cases.cases), -1)
    for label in (0, 1):
        members = [i for i in range(len(cases.cases)) if keep[i] and cases.labels[i] == label]
        members.sort(key=lambda i: hashlib.sha256(f"{seed}|{cases.cases[i].case_id}".encode()).hexdigest())
        for rank, i in enumerate(members):
            fold[i] = rank % k
    return fold


def check_cell(n: int, config: SiteConfig, what: str) -> None:
    """Refuse statistics over fewer cases than the site's small-cell rule allows."""
    if n < config.privacy.min_cell_count:
        raise SiteDataError.public_fact(f"{what}: {n} complete case(s), fewer than this site's privacy.min_cell_count={config.privacy.min_cell_count}")


def table1(cases: JobCases, spec: Spec) -> Metrics:
    """Per variable and label group: level counts and missing values; continuous moments and fixed-bin counts (values outside the bins count in the end bins)."""
    out: Metrics = {}
    for v in spec.variables:
        for g in (0, 1):
            values = [c.clinical.get(v.name, "") for c, y in zip(cases.cases, cases.labels) if y == g]
            present = [x.strip() for x in values if not is_missing(x)]
            out[f"{v.name}|{g}/missing"] = len(values) - len(present)
            if v.kind == "continuous":
                numbers = np.array([float(x) for x in present], dtype=np.float64)
                out[f"{v.name}|{g}/moments"] = [float(numbers.size), float(numbers.sum()), float((numbers**2).sum())]
                if v.name in spec.edges:
                    edges = np.array(spec.edges[v.name])
                    counts, _ = np.histogram(np.clip(numbers, edges[0], edges[-1]), bins=edges)
                    out[f"{v.name}|{g}/hist"] = [int(c) for c in counts]
            else:
                coded = [_level(v, x) for x in present]
                out[f"{v.name}|{g}/counts"] = [sum(1 for x in coded if x == level) for level in v.levels]
    return out


def _level(variable: Variable, value: str) -> str:
    """A present value as one of the variable's levels (binary 1.0 is level '1')."""
    if variable.kind == "binary":
        return str(int(float(value)))
    if value not in variable.levels:
        raise SiteDataError.public_fact(f"clinical column '{variable.name}' holds a level the harmonised levels lack")
    return value


def moments(x: np.ndarray, labels: np.ndarray) -> Metrics:
    """Per label group: the design's row count, column sums and cross products."""
    out: Metrics = {}
    for g in (0, 1):
        rows = x[labels == g]
        out[f"g{g}/n"] = int(rows.shape[0])
        out[f"g{g}/sum"] = rows.sum(axis=0).tolist()
        out[f"g{g}/cross"] = (rows.T @ rows).ravel().tolist()
    return out


def logit(x: np.ndarray, labels: np.ndarray, spec: Spec, fold: np.ndarray, config: SiteConfig) -> Metrics:
    """Each requested fit's score, information, log-likelihood and counts (``models/federated_logit.site_statistics``), on its fold's cases."""
    from models.federated_logit import site_statistics

    out: Metrics = {}
    for i, fit in enumerate(spec.fits):
        rows = np.ones(len(labels), dtype=bool) if fit.fold < 0 else (fold == fit.fold) == fit.held_out
        check_cell(int(rows.sum()), config, f"clinical statistics on fold {fit.fold}")
        s = site_statistics(x[rows][:, list(fit.columns)], labels[rows], np.array(fit.beta))
        out |= {f"r{i}/score": s.score.tolist(), f"r{i}/information": s.information.ravel().tolist(), f"r{i}/loglik": s.loglik}
        out |= {f"r{i}/n": s.n, f"r{i}/n_positive": s.n_positive, f"r{i}/n_extreme": s.n_extreme}
    return out


def evaluate(x: np.ndarray, labels: np.ndarray, spec: Spec, cases: JobCases, keep: np.ndarray) -> Metrics:
    """Each model's classification metrics at its threshold, the paired comparisons and the readers, on the same complete cases."""
    from client.site import classification_metrics
    from evaluation.paired import paired_comparisons

    out: Metrics = {}
    probabilities = {fit.name: 1.0 / (1.0 + np.exp(-(x[:, list(fit.columns)] @ np.array(fit.beta)))) for fit in spec.fits}
    if len(set(labels.tolist())) < 2:
        return out
    for name, p in probabilities.items():
        out |= {f"{name}/{key}": value for key, value in classification_metrics(labels, p, spec.thresholds.get(name, 0.5)).items()}
        out[f"{name}/n"], out[f"{name}/n_positive"] = int(labels.size), int(labels.sum())
    for new, reference in spec.compare:
        for row in paired_comparisons(labels, {new: probabilities[new], reference: probabilities[reference]}, new):
            out |= {f"{new}~{reference}/{key}": float(value) for key, value in row.items() if key not in ("model_a", "model_b")}
    kept = [c for c, k in zip(cases.cases, keep) if k]
    model_calls = None
    if spec.reader_model in probabilities:
        model_calls = (probabilities[spec.reader_model] >= spec.thresholds.get(spec.reader_model, 0.5)).astype(int)
    for reader in spec.readers:
        out |= _reader(reader, kept, labels, model_calls)
    return out


def _reader(reader: Variable, cases: list[Case], labels: np.ndarray, model_calls: np.ndarray | None) -> Metrics:
    """One reader against the truth and the model, on the cases the reader scored: binary calls, or an ordinal score called positive from its middle level up."""
    from evaluation.readers import kappa, ordinal_auc, paired_calls, reader_metrics

    values = [c.clinical.get(reader.name, "") for c in cases]
    has = np.array([not is_missing(v) for v in values], dtype=bool)
    y = labels[has].astype(int)
    prefix = f"reader:{reader.name}/"
    if has.sum() == 0 or len(set(y.tolist())) < 2:
        return {prefix + "n": int(has.sum())}
    present = [v.strip() for v, h in zip(values, has) if h]
    if reader.kind == "ordinal":
        ranks = np.array([reader.levels.index(_level(reader, v)) for v in present], dtype=float)
        calls = (ranks >= len(reader.levels) // 2).astype(int)
    else:
        ranks, calls = None, np.array([int(float(v)) for v in present])
    out: Metrics = {prefix + "n": int(has.sum()), prefix + "n_positive": int(y.sum())}
    metrics = reader_metrics(y, calls)
    out |= {prefix + k: float(metrics[k]) for k in ("sensitivity", "specificity", "ppv", "npv", "accuracy", "kappa", "kappa_se") if k in metrics}
    if ranks is not None:
        auc = ordinal_auc(y, ranks)
        out |= {prefix + "auc": float(auc["auc"]), prefix + "auc_ci_lo": float(auc["auc_ci"][0]), prefix + "auc_ci_hi": float(auc["auc_ci"][1])}
    if model_calls is not None:
        paired = paired_calls(y, calls, model_calls[has])
        agreement = kappa(calls, model_calls[has])
        out |= {prefix + k: v for k, v in paired.items()}
        out |= {prefix + "model_kappa": agreement["kappa"], prefix + "model_kappa_se": agreement["kappa_se"]}
    return {k: v for k, v in out.items() if np.isfinite(v)}


def clinical_metrics(site: LocalSite, query: ClinicalQuery, store: ModelStore) -> Metrics:
    """Answer a clinical job other than ``schema``: its metrics (``ClinicalQuery.allowed_metrics`` names them all)."""
    spec = query.parsed
    config = site.config
    if query.job == "table1":
        cases = job_cases(site, query, store, needs_signature=False)
        return table1(cases, spec) | {"min_cell_count": config.privacy.min_cell_count}
    design = spec.design
    variables = _design_variables(design)
    readers = list(spec.readers) if query.job == "evaluate" else []
    blocks = feature_blocks(design)
    cases = job_cases(site, query, store, needs_signature=design.uses_signature, blocks=blocks)
    keep = complete(cases, variables, design.uses_signature, [b.modality for b in blocks])
    _check_levels(cases, variables, keep)
    check_cell(int(keep.sum()), config, f"clinical {query.job} on the {query.split} split")
    x, y = design_rows(cases, design, keep), cases.labels[keep]
    if query.job == "moments":
        return moments(x, y)
    if query.job == "logit":
        fold = folds_of(cases, keep, spec.folds, query.run.seed)[keep] if spec.folds else np.zeros(len(y), dtype=int)
        return logit(x, y, spec, fold, config)
    if query.job == "evaluate":
        _check_levels(cases, readers, keep)
        return evaluate(x, y, spec, cases, keep)
    raise SiteDataError.public_fact(f"no clinical job '{query.job}'")


def _check_levels(cases: JobCases, variables: Sequence[Variable], keep: np.ndarray) -> None:
    """Every kept value of a categorical or ordinal variable is one of its harmonised levels."""
    for v in variables:
        if v.kind not in ("categorical", "ordinal"):
            continue
        for case, k in zip(cases.cases, keep):
            value = case.clinical.get(v.name, "").strip()
            if k and not is_missing(value) and value not in v.levels:
                raise SiteDataError(
                    f"manifest row {case.row} (case {case.case_id}): column '{v.name}' = {value!r} is none of the harmonised levels {', '.join(v.levels)}",
                    f"clinical column '{v.name}' holds a level outside the harmonised ones",
                )
