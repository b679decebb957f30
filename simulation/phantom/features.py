"""Per-case clinical and image features of the phantom cohort, drawn from a case-feature RNG."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulation.phantom.presets import CaseMix

HISTOLOGIC_TYPES: tuple[str, ...] = ("IDC", "ILC", "DCIS", "other")
MARGIN_PATTERNS: tuple[str, ...] = ("lobulated", "microlobulated", "spiculated", "angular")

CLINICAL_COLUMNS: tuple[str, ...] = (
    "age", "tumor_size_mm", "er", "pr", "her2", "ki67", "histologic_type", "histologic_grade",
)
IMAGE_COLUMNS: tuple[str, ...] = (
    "margin_irregularity", "aspect_ratio", "posterior", "echogenicity", "n_calcifications",
)
NUISANCE_COLUMNS: tuple[str, ...] = ("margin_pattern", "center_u", "center_d", "tilt_deg", "proliferation")
FEATURE_COLUMNS: tuple[str, ...] = CLINICAL_COLUMNS + IMAGE_COLUMNS + NUISANCE_COLUMNS

Features = dict[str, np.ndarray]


@dataclass(frozen=True)
class LesionFeatures:
    """What the scanner can see of one case: everything the renderer is allowed to know."""

    tumor_size_mm: float
    margin_irregularity: float
    margin_pattern: str
    aspect_ratio: float
    posterior: float
    echogenicity: float
    n_calcifications: int
    center_u: float
    center_d: float
    tilt_deg: float


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Return the logistic function of ``x``."""
    return 1.0 / (1.0 + np.exp(-x))


def draw_features(mix: CaseMix, rng: np.random.Generator) -> Features:
    """Draw the clinical and image features of all cases of one site.

    A latent proliferation score ties the subtype together (high Ki-67, HER2+, ER-, grade 3,
    slightly larger and more irregular tumours), so the marginals follow the seed studies and the
    correlations are plausible.

    Args:
        mix: the site's case mix.
        rng: the site's case-feature generator.

    Returns:
        Column arrays, one entry per case, keyed by the names in ``FEATURE_COLUMNS``.
    """
    n = mix.n_cases
    prolif = rng.normal(mix.prolif_shift, 1.0, n)
    hist = rng.choice(len(HISTOLOGIC_TYPES), size=n, p=np.asarray(mix.type_probs) / sum(mix.type_probs))
    dcis = hist == HISTOLOGIC_TYPES.index("DCIS")
    ilc = hist == HISTOLOGIC_TYPES.index("ILC")

    age = np.clip(np.rint(rng.normal(mix.age_mean, mix.age_sd, n) - 1.5 * prolif), 24, 89)
    grade_latent = 0.75 * prolif + 0.66 * rng.normal(size=n) - 0.4 * ilc
    grade = 1 + (grade_latent > -1.3).astype(int) + (grade_latent > 0.6).astype(int)
    er = rng.random(n) < _sigmoid(mix.er_logit - 0.9 * prolif + 0.8 * ilc)
    pr = np.where(er, rng.random(n) < 0.84, rng.random(n) < 0.08)
    her2 = rng.random(n) < _sigmoid(mix.her2_logit + 0.45 * prolif)
    ki67 = np.exp(np.log(22.0) + 0.5 * prolif + 0.45 * rng.normal(size=n) + 0.2 * her2 - 0.15 * er)
    ki67 = np.clip(np.rint(ki67), 1, 95)

    size = np.exp(np.log(mix.size_median_mm) + mix.size_sigma * rng.normal(size=n) + 0.1 * prolif)
    size = np.round(np.clip(size * np.where(dcis, 0.8, 1.0), 5.0, 80.0), 1)
    margin = _sigmoid(1.2 * rng.normal(size=n) + 0.3 * prolif + 0.5 * ilc - 0.4 * dcis)
    aspect = np.exp(rng.normal(-0.3, 0.28, n))
    posterior = np.tanh(rng.normal(0.0, 0.9, n))
    echo = np.clip(rng.normal(0.28, 0.08, n), 0.08, 0.5)
    n_calc = rng.poisson(np.exp(0.3 + 0.5 * prolif) * np.where(dcis, 2.5, 1.0))

    pattern = rng.choice(len(MARGIN_PATTERNS), size=n)
    center_u = rng.uniform(0.38, 0.62, n)
    center_d = rng.uniform(0.36, 0.46, n)
    tilt = rng.normal(0.0, 8.0, n)
    return {
        "age": age.astype(int),
        "tumor_size_mm": size,
        "er": er.astype(int),
        "pr": pr.astype(int),
        "her2": her2.astype(int),
        "ki67": ki67.astype(int),
        "histologic_type": np.asarray(HISTOLOGIC_TYPES, dtype=object)[hist],
        "histologic_grade": grade.astype(int),
        "margin_irregularity": margin,
        "aspect_ratio": aspect,
        "posterior": posterior,
        "echogenicity": echo,
        "n_calcifications": np.minimum(n_calc, 12).astype(int),
        "margin_pattern": np.asarray(MARGIN_PATTERNS, dtype=object)[pattern],
        "center_u": center_u,
        "center_d": center_d,
        "tilt_deg": tilt,
        "proliferation": prolif,
    }


def lesion_features(features: Features, index: int) -> LesionFeatures:
    """Pick the image-visible features of one case (the renderer's whole input).

    Args:
        features: the site's feature columns.
        index: the case's row.

    Returns:
        The case's lesion features.
    """
    return LesionFeatures(
        tumor_size_mm=float(features["tumor_size_mm"][index]),
        margin_irregularity=float(features["margin_irregularity"][index]),
        margin_pattern=str(features["margin_pattern"][index]),
        aspect_ratio=float(features["aspect_ratio"][index]),
        posterior=float(features["posterior"][index]),
        echogenicity=float(features["echogenicity"][index]),
        n_calcifications=int(features["n_calcifications"][index]),
        center_u=float(features["center_u"][index]),
        center_d=float(features["center_d"][index]),
        tilt_deg=float(features["tilt_deg"][index]),
    )
