"""What the multimodal phantom's extra modalities see of a case, and the log-odds each one renders.

The cohort (features, true risk, labels) is the image phantom's; this module only adds features
that the mammograms show besides the tumour (laterality, breast density, the mass's place, the
axillary node) and names which outcome-model terms each modality renders:

* ultrasound: the image terms of ``risk.py`` (size, margin, taller-than-wide, posterior effect,
  echogenicity, calcifications);
* pathology (H&E micrograph): HER2, Ki-67, grade and histologic type (not ER, not age);
* mammography: size, margin, aspect and calcifications of the mass, plus an axillary node whose
  burden is a noisy copy of the case's true log-odds (never its label); not the posterior effect
  or echogenicity;
* clinical: the manifest's clinical columns (every clinical term and the tumour size).

The rendered log-odds of a set of modalities is the sum of the outcome-model terms they render;
with mammography in the set, plus ``w * node``, ``w`` the least-squares slope of the log-odds the
set does not render on the visible node's burden (fitted per site on the truth, never on labels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

from simulation.phantom.features import Features
from simulation.phantom.risk import CLINICAL_TERMS, IMAGE_TERMS, linear_predictor

MODALITY_TERMS: dict[str, tuple[str, ...]] = {
    "ultrasound": tuple(IMAGE_TERMS),
    "pathology": ("her2", "ki67", "grade", "type_ilc", "type_dcis", "type_other"),
    "mammography": ("tumor_size", "margin_irregularity", "taller_than_wide", "microcalcifications"),
    "clinical": (*CLINICAL_TERMS, "tumor_size"),
}
COMBINATIONS: tuple[str, ...] = (
    "ultrasound", "pathology", "mammography", "clinical", "ultrasound+pathology", "ultrasound+mammography",
    "pathology+mammography", "mammography+clinical", "ultrasound+clinical", "ultrasound+pathology+mammography", "all",
)
MULTIMODAL_COLUMNS: tuple[str, ...] = (
    "laterality", "breast_density", "mass_depth", "mass_lateral", "mass_superior", "node_burden", "node_visible",
    "node_position",
)
NODE_RHO = 0.65  # correlation of the node burden with the case's standardised true log-odds
LP_CENTER, LP_SCALE = 0.3, 2.1  # about the mean and SD of the demo cohort's intercept-free log-odds
NODE_SEEN = 0.8  # share of MLO views whose axillary tail shows the node


@dataclass(frozen=True)
class TumourBiology:
    """What the H&E micrograph shows of one case: everything the pathology renderer may know."""

    histologic_type: str
    histologic_grade: int
    ki67: float
    her2: int


@dataclass(frozen=True)
class BreastFeatures:
    """What the two mammographic views show of one case: everything the mammography renderer may know."""

    tumor_size_mm: float
    margin_irregularity: float
    aspect_ratio: float
    n_calcifications: int
    laterality: str
    breast_density: float
    mass_depth: float
    mass_lateral: float
    mass_superior: float
    node_burden: float
    node_visible: bool
    node_position: float


def draw_multimodal_features(features: Features, rng: np.random.Generator) -> Features:
    """Draw one site's mammography-only features from its case features and the site's extra-feature generator.

    Density falls with age; the node burden is ``NODE_RHO`` times the standardised true log-odds plus
    independent noise (features only: the label is never read).
    """
    n = len(features["age"])
    lp = (linear_predictor(features) - LP_CENTER) / LP_SCALE
    density = 1.0 / (1.0 + np.exp((features["age"] - 50.0) / 9.0 - 0.8 * rng.normal(size=n)))
    return {
        "laterality": np.where(rng.random(n) < 0.5, "L", "R").astype(object),
        "breast_density": np.clip(density, 0.03, 0.97),
        "mass_depth": rng.uniform(0.3, 0.72, n),
        "mass_lateral": rng.uniform(-0.55, 0.55, n),
        "mass_superior": rng.uniform(-0.5, 0.5, n),
        "node_burden": NODE_RHO * lp + np.sqrt(1.0 - NODE_RHO**2) * rng.normal(size=n),
        "node_visible": (rng.random(n) < NODE_SEEN).astype(int),
        "node_position": rng.uniform(0.2, 0.75, n),
    }


def tumour_biology(features: Features, index: int) -> TumourBiology:
    """Pick the micrograph-visible features of one case (the pathology renderer's whole input)."""
    return TumourBiology(str(features["histologic_type"][index]), int(features["histologic_grade"][index]),
                         float(features["ki67"][index]), int(features["her2"][index]))


def breast_features(features: Features, index: int) -> BreastFeatures:
    """Pick the mammogram-visible features of one case (the mammography renderer's whole input)."""
    f = features
    return BreastFeatures(
        float(f["tumor_size_mm"][index]), float(f["margin_irregularity"][index]), float(f["aspect_ratio"][index]),
        int(f["n_calcifications"][index]), str(f["laterality"][index]), float(f["breast_density"][index]),
        float(f["mass_depth"][index]), float(f["mass_lateral"][index]), float(f["mass_superior"][index]),
        float(f["node_burden"][index]), bool(f["node_visible"][index]), float(f["node_position"][index]),
    )


def _terms_sum(features: Features, names: set[str]) -> np.ndarray:
    """Return the sum of the outcome model's ``names`` terms for every case."""
    terms = {**IMAGE_TERMS, **CLINICAL_TERMS}
    total = np.zeros(len(features["age"]))
    for name in sorted(names):
        beta, term = terms[name]
        total = total + beta * term(features)
    return total


def rendered_logodds(features: Features, combination: str) -> np.ndarray:
    """Return the log-odds a set of modalities (``"ultrasound+pathology"``, ``"all"``...) renders for every case."""
    parts = list(MODALITY_TERMS) if combination == "all" else combination.split("+")
    names = {name for part in parts for name in MODALITY_TERMS[part]}
    shown = _terms_sum(features, names)
    if "mammography" not in parts or names >= set(IMAGE_TERMS) | set(CLINICAL_TERMS):
        return shown
    node = features["node_burden"] * features["node_visible"]
    design = np.column_stack([np.ones_like(node), node, features["node_visible"].astype(float)])
    coef, *_ = np.linalg.lstsq(design, linear_predictor(features) - shown, rcond=None)
    return shown + design[:, 1:] @ coef[1:]


def modality_aucs(features: Features, labels: np.ndarray) -> dict[str, float]:
    """Return the AUC against the drawn labels of every combination's rendered log-odds: its Bayes ceiling."""
    if labels.min() == labels.max():
        return {name: float("nan") for name in COMBINATIONS}
    return {name: float(roc_auc_score(labels, rendered_logodds(features, name))) for name in COMBINATIONS}
