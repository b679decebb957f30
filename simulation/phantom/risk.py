"""The phantom's known outcome model: logistic risk, per-site intercept, label draw, Bayes AUC."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.metrics import roc_auc_score

from simulation.phantom.features import Features

Term = Callable[[Features], np.ndarray]


def _type_is(name: str) -> Term:
    """Return a term that is 1 for cases of histologic type ``name``."""
    return lambda f: (f["histologic_type"] == name).astype(float)


# Each term: (beta, standardised feature). Image terms are what the renderer shows on screen.
IMAGE_TERMS: dict[str, tuple[float, Term]] = {
    "tumor_size": (1.0, lambda f: (np.log(f["tumor_size_mm"]) - np.log(21.0)) / 0.45),
    "margin_irregularity": (0.5, lambda f: (f["margin_irregularity"] - 0.5) / 0.23),
    "taller_than_wide": (0.7, lambda f: (np.log(f["aspect_ratio"]) + 0.3) / 0.28),
    "posterior_shadowing": (0.9, lambda f: -f["posterior"] / 0.6),
    "hypoechogenicity": (0.7, lambda f: -(f["echogenicity"] - 0.28) / 0.08),
    "microcalcifications": (0.2, lambda f: (np.log1p(f["n_calcifications"]) - 0.9) / 0.6),
}
CLINICAL_TERMS: dict[str, tuple[float, Term]] = {
    "her2": (0.8, lambda f: f["her2"].astype(float)),
    "er": (0.3, lambda f: f["er"].astype(float)),
    "ki67": (0.4, lambda f: (np.log(f["ki67"]) - np.log(22.0)) / 0.7),
    "grade": (0.4, lambda f: f["histologic_grade"] - 2.0),
    "type_ilc": (0.35, _type_is("ILC")),
    "type_dcis": (-1.8, _type_is("DCIS")),
    "type_other": (-0.6, _type_is("other")),
    "age": (-0.18, lambda f: (f["age"] - 51.0) / 10.0),
}


def linear_predictor(features: Features, which: str = "all") -> np.ndarray:
    """Return the intercept-free log-odds of every case.

    Args:
        features: one site's feature columns.
        which: ``"all"``, ``"image"`` or ``"clinical"`` terms.

    Returns:
        One value per case.
    """
    terms = {"all": {**IMAGE_TERMS, **CLINICAL_TERMS}, "image": IMAGE_TERMS, "clinical": CLINICAL_TERMS}[which]
    n = len(features["age"])
    total = np.zeros(n)
    for beta, term in terms.values():
        total = total + beta * term(features)
    return total


def solve_intercept(lp: np.ndarray, prevalence: float, tol: float = 1e-10) -> float:
    """Find by bisection the intercept whose mean risk over the cases equals ``prevalence``.

    Args:
        lp: intercept-free log-odds of the site's cases.
        prevalence: the target expected prevalence, in (0, 1).
        tol: the bracket width at which to stop.

    Returns:
        The intercept.
    """
    lo, hi = -30.0, 30.0
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if np.mean(1.0 / (1.0 + np.exp(-(mid + lp)))) < prevalence:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def true_risk(features: Features, prevalence: float) -> np.ndarray:
    """Return every case's true probability of lymph-node metastasis at one site."""
    lp = linear_predictor(features)
    intercept = solve_intercept(lp, prevalence)
    return 1.0 / (1.0 + np.exp(-(intercept + lp)))


def draw_labels(risk: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw each case's label from Bernoulli(risk) with the site's own label generator."""
    return (rng.random(risk.shape[0]) < risk).astype(int)


def bayes_auc(labels: np.ndarray, risk: np.ndarray) -> float:
    """Return the AUC of the true risk against the drawn labels: the site's Bayes ceiling."""
    if labels.min() == labels.max():
        return float("nan")
    return float(roc_auc_score(labels, risk))


def image_share(features: Features) -> float:
    """Return the share of the log-odds variance carried by the image terms alone."""
    image = linear_predictor(features, "image")
    clinical = linear_predictor(features, "clinical")
    return float(np.var(image) / (np.var(image) + np.var(clinical)))


READER_CUTS = (-1.5, 0.0, 1.5)  # a reader's impression on the image log-odds scale: scores 2 | 3 | 4 | 5
READER_CALL_AT = 0.8  # the other reader calls the axilla positive above this impression
READER_NOISE = 1.2  # SD of each reader's error on that scale


def reader_reads(features: Features, rng: np.random.Generator,
                 image_logodds: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Two radiologists' reads of each case from what the image shows (never the label): a 2-5 suspicion score and a 0/1 call.

    Each reader sees the image terms' log-odds (or ``image_logodds``, what a cine loop shows) with an
    independent error of SD ``READER_NOISE``; the score cuts it at ``READER_CUTS``, the call at ``READER_CALL_AT``.
    """
    image = linear_predictor(features, "image") if image_logodds is None else image_logodds
    score = 2 + np.searchsorted(READER_CUTS, image + READER_NOISE * rng.normal(size=image.shape[0]))
    call = (image + READER_NOISE * rng.normal(size=image.shape[0]) > READER_CALL_AT).astype(int)
    return score.astype(int), call
