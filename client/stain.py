"""H&E stain normalisation (Macenko, Reinhard) and stain augmentation (Tellez) of uint8 RGB pathology tiles.

Written with numpy alone: torchstain (numpy-only, light) would add a dependency to every site for
about as many lines as this, and it exposes no stain-matrix function to test against the published
matrix; scikit-image is not a dependency here. Conventions:

- Optical density, Beer-Lambert with natural logarithms as in Macenko's reference code:
  ``OD = -ln((I + 1) / Io)``, ``Io`` the background (light source) intensity, 240 for Macenko.
- A stain matrix is (3, k): one unit OD vector per column, haematoxylin first; an image is
  ``I = Io * exp(-M @ C)`` for concentrations ``C`` (k per pixel).
- CIELAB is of sRGB (IEC 61966-2-1) under D65, as skimage.color.rgb2lab computes it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Macenko's reference implementation (mitkovetta/staining-normalization, normalizeStaining.m) and its
# ports (torchstain, StainTools): reference H and E OD vectors, 99th-percentile concentrations, light intensity.
REFERENCE_MATRIX = np.array([[0.5626, 0.2159], [0.7201, 0.8012], [0.4062, 0.5581]])
REFERENCE_MAX = np.array([1.9705, 1.0308])
MACENKO_IO = 240.0

# Ruifrok & Johnston, Anal. Quant. Cytol. Histol. 23:291 (2001): rows are the H, E and DAB OD vectors (skimage's rgb_from_hed).
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])

_D65 = np.array([0.95047, 1.0, 1.08883])
_XYZ_FROM_RGB = np.array([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]])


def _check_rgb(rgb: np.ndarray) -> None:
    """Refuse anything but a uint8 (H, W, 3) image."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) RGB image, got {rgb.dtype} {rgb.shape}")


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """Round and clip to uint8."""
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def optical_density(rgb: np.ndarray, io: float = MACENKO_IO) -> np.ndarray:
    """(H, W, 3) OD = -ln((I + 1) / io) of a uint8 image; slightly negative where I >= io."""
    _check_rgb(rgb)
    return -np.log((rgb.astype(np.float64) + 1.0) / io)


def _from_optical_density(od: np.ndarray, io: float) -> np.ndarray:
    """uint8 image of OD, the inverse of ``optical_density``."""
    return _to_uint8(io * np.exp(-od) - 1.0)


def _tissue_od(od: np.ndarray, beta: float, min_tissue_fraction: float) -> np.ndarray:
    """(N, 3) OD of the pixels with OD >= beta in every channel; ValueError when too few are tissue."""
    flat = od.reshape(-1, 3)
    tissue = flat[np.all(flat >= beta, axis=1)]
    if len(tissue) < max(3, min_tissue_fraction * len(flat)):
        raise ValueError(
            f"too little tissue for a Macenko stain estimate: {len(tissue)} of {len(flat)} pixels have OD >= {beta} "
            f"in every channel (need {min_tissue_fraction:.0%}); the tile is almost all background"
        )
    return tissue


def _unit_positive(vector: np.ndarray) -> np.ndarray:
    """The vector scaled to unit length with a positive sum (OD vectors are non-negative)."""
    return vector / np.linalg.norm(vector) * np.sign(vector.sum())


def macenko_stain_matrix(
    rgb: np.ndarray, beta: float = 0.15, alpha: float = 1.0, io: float = MACENKO_IO, min_tissue_fraction: float = 0.01
) -> np.ndarray:
    """(3, 2) unit H and E OD vectors of a tile, Macenko et al., ISBI 2009.

    Drop pixels with OD < beta, project the rest on the plane of the two largest eigenvectors of their
    OD covariance, take the alpha and (100 - alpha) percentile angles there as the two stains;
    haematoxylin is the one with the larger red OD.
    """
    tissue = _tissue_od(optical_density(rgb, io), beta, min_tissue_fraction)
    _, vectors = np.linalg.eigh(np.cov(tissue.T))
    plane = vectors[:, 1:3]
    projected = tissue @ plane
    angles = np.arctan2(projected[:, 1], projected[:, 0])
    low, high = np.percentile(angles, [alpha, 100.0 - alpha])
    first = _unit_positive(plane @ np.array([np.cos(low), np.sin(low)]))
    second = _unit_positive(plane @ np.array([np.cos(high), np.sin(high)]))
    pair = (first, second) if first[0] > second[0] else (second, first)
    return np.stack(pair, axis=1)


def stain_concentrations(od: np.ndarray, stain_matrix: np.ndarray) -> np.ndarray:
    """(k, N) least-squares concentrations of (..., 3) OD under a (3, k) stain matrix."""
    return np.linalg.lstsq(stain_matrix, od.reshape(-1, 3).T, rcond=None)[0]


def macenko_normalise(
    rgb: np.ndarray,
    target_matrix: np.ndarray = REFERENCE_MATRIX,
    target_max_concentrations: np.ndarray = REFERENCE_MAX,
    beta: float = 0.15,
    alpha: float = 1.0,
    io: float = MACENKO_IO,
) -> np.ndarray:
    """The tile re-stained with the target matrix, its 99th-percentile concentrations scaled to the target's (Macenko 2009)."""
    od = optical_density(rgb, io)
    concentrations = stain_concentrations(od, macenko_stain_matrix(rgb, beta, alpha, io))
    scale = np.asarray(target_max_concentrations) / np.percentile(concentrations, 99, axis=1)
    normalised_od = (target_matrix @ (concentrations * scale[:, None])).T
    return _from_optical_density(normalised_od.reshape(rgb.shape), io)


def _srgb_to_linear(values: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] to linear light."""
    return np.where(values > 0.04045, ((values + 0.055) / 1.055) ** 2.4, values / 12.92)


def _linear_to_srgb(values: np.ndarray) -> np.ndarray:
    """Linear light to sRGB in [0, 1] (unclipped)."""
    values = np.clip(values, 0.0, None)
    return np.where(values > 0.0031308, 1.055 * values ** (1 / 2.4) - 0.055, 12.92 * values)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) CIELAB (L in [0, 100]) of a uint8 sRGB image, D65 white."""
    _check_rgb(rgb)
    xyz = _srgb_to_linear(rgb / 255.0) @ _XYZ_FROM_RGB.T / _D65
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """uint8 sRGB of (H, W, 3) CIELAB, out-of-gamut colours clipped."""
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], axis=-1)
    xyz = np.where(f > 6 / 29, f**3, 3 * (6 / 29) ** 2 * (f - 4 / 29)) * _D65
    return _to_uint8(255.0 * _linear_to_srgb(xyz @ np.linalg.inv(_XYZ_FROM_RGB).T))


def lab_statistics(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel LAB means and standard deviations of a tile: the Reinhard targets of a reference tile."""
    lab = rgb_to_lab(rgb).reshape(-1, 3)
    return lab.mean(axis=0), lab.std(axis=0)


def reinhard_normalise(rgb: np.ndarray, target_means: Sequence[float], target_stds: Sequence[float]) -> np.ndarray:
    """Each LAB channel shifted and scaled to the target mean and standard deviation (Reinhard et al. 2001)."""
    lab = rgb_to_lab(rgb)
    means, stds = lab_statistics(rgb)
    scaled = (lab - means) / np.maximum(stds, 1e-8) * np.asarray(target_stds) + np.asarray(target_means)
    return lab_to_rgb(scaled)


def stain_augment(
    rgb: np.ndarray,
    rng: np.random.Generator,
    sigma_alpha: float = 0.2,
    sigma_beta: float = 0.05,
    rgb_from_stains: np.ndarray = RGB_FROM_HED,
) -> np.ndarray:
    """HED jitter (Tellez et al. 2018): each stain's concentration c -> a*c + b, a ~ U(1 +- sigma_alpha), b ~ U(+- sigma_beta).

    Concentrations are of the Ruifrok-Johnston H, E, DAB matrix (rows: OD vectors) and OD of Io 256,
    so white stays representable; the draw is three a then three b from ``rng``.
    """
    matrix = rgb_from_stains / np.linalg.norm(rgb_from_stains, axis=1, keepdims=True)
    od = optical_density(rgb, io=256.0)
    concentrations = od @ np.linalg.inv(matrix)
    scale = rng.uniform(1.0 - sigma_alpha, 1.0 + sigma_alpha, size=3)
    shift = rng.uniform(-sigma_beta, sigma_beta, size=3)
    return _from_optical_density((concentrations * scale + shift) @ matrix, io=256.0)
