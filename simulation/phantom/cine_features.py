"""The cine phantom's extra features and outcome terms, and which risk features a sweep shows where.

A sweep passes the imaging plane through the lesion; the key frame (the largest cross-section)
shows the lesion's size, outline, shape and echogenicity. The other risk features lie away from
the lesion's centre plane and are seen only on part of the loop: the posterior acoustic effect and
the microcalcification cluster at one pole, a spiculated pole, an off-axis satellite nodule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulation.phantom.features import Features, LesionFeatures, lesion_features
from simulation.phantom.risk import IMAGE_TERMS, Term, linear_predictor, solve_intercept

SWEEP_COLUMNS: tuple[str, ...] = ("satellite_nodule", "spiculated_pole")

# Each term: (beta, standardised feature), added to the image phantom's terms.
SWEEP_TERMS: dict[str, tuple[float, Term]] = {
    "satellite_nodule": (2.6, lambda f: f["satellite_nodule"].astype(float)),
    "spiculated_pole": (2.2, lambda f: f["spiculated_pole"].astype(float)),
}
KEY_FRAME_FEATURES: tuple[str, ...] = ("tumor_size_mm", "margin_irregularity", "aspect_ratio", "echogenicity")
LOOP_ONLY_FEATURES: tuple[str, ...] = ("posterior", "n_calcifications", *SWEEP_COLUMNS)
KEY_FRAME_TERMS: tuple[str, ...] = ("tumor_size", "margin_irregularity", "taller_than_wide", "hypoechogenicity")
LOOP_ONLY_TERMS: tuple[str, ...] = ("posterior_shadowing", "microcalcifications", *SWEEP_TERMS)


@dataclass(frozen=True)
class SweepLesion:
    """What a sweep can see of one case: the still's lesion features and the off-centre ones."""

    lesion: LesionFeatures
    satellite_nodule: bool
    spiculated_pole: bool


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Return the logistic function of ``x``."""
    return 1.0 / (1.0 + np.exp(-x))


def draw_sweep_features(features: Features, rng: np.random.Generator) -> Features:
    """Draw the off-centre features of every case (more often with a higher proliferation score).

    Args:
        features: the site's features (``draw_features``).
        rng: the site's sweep-feature generator.

    Returns:
        Column arrays keyed by ``SWEEP_COLUMNS``, one 0/1 entry per case.
    """
    prolif = features["proliferation"]
    n = prolif.shape[0]
    satellite = rng.random(n) < _sigmoid(-1.0 + 0.4 * prolif)
    pole = rng.random(n) < _sigmoid(-0.7 + 0.3 * prolif)
    return {"satellite_nodule": satellite.astype(int), "spiculated_pole": pole.astype(int)}


def sweep_lesion(features: Features, index: int) -> SweepLesion:
    """Pick the sweep-visible features of one case (the cine renderer's whole input)."""
    return SweepLesion(lesion_features(features, index), bool(features["satellite_nodule"][index]),
                       bool(features["spiculated_pole"][index]))


def sweep_logodds(features: Features, which: str = "all") -> np.ndarray:
    """Return the intercept-free log-odds of every case under the cine outcome model.

    Args:
        features: one site's feature columns, the sweep columns included.
        which: ``"all"`` terms, ``"image"`` (what the loop shows) or ``"key_frame"`` (what the key frame shows).

    Returns:
        One value per case.
    """
    if which == "key_frame":
        return sum(IMAGE_TERMS[name][0] * IMAGE_TERMS[name][1](features) for name in KEY_FRAME_TERMS)
    extra = sum(beta * term(features) for beta, term in SWEEP_TERMS.values())
    return linear_predictor(features, "all" if which == "all" else "image") + extra


def sweep_true_risk(features: Features, prevalence: float) -> np.ndarray:
    """Return every case's true probability of lymph-node metastasis under the cine outcome model."""
    lp = sweep_logodds(features)
    return 1.0 / (1.0 + np.exp(-(solve_intercept(lp, prevalence) + lp)))
