"""IBSI-style 2D radiomics of one region of one view: first order, shape, GLCM, GLRLM and GLSZM features.

Everything is computed here from numpy and scipy (no PyRadiomics, no downloads). Conventions:

- Units are pixels (no spacing); the region is a bool mask over a float (H, W) image.
- First-order statistics use the raw intensities; entropy and uniformity use the discretised histogram.
- Discretisation: fixed bin count by default (IBSI FBN, PyRadiomics ``binCount``):
  ``floor(bins * (x - min) / (max - min)) + 1``, the ROI maximum falling in bin ``bins``; with
  ``bin_width`` set, fixed bin size as PyRadiomics ``binWidth``: ``floor(x / w) - floor(min / w) + 1``.
- Texture matrices are 2D: GLCM at distance 1 and GLRLM along 0, 45, 90 and 135 degrees, pairs and runs
  inside the mask only, the features of each direction averaged (IBSI "2D, averaged"); the GLCM is
  symmetric. GLSZM zones are 8-connected. Grey levels i, j run from 1 to the number of levels.
- Kurtosis is IBSI's excess kurtosis (PyRadiomics' minus 3). GLCM correlation of a flat region is 1, as
  in PyRadiomics. Texture features with no pair or run at all (a single pixel) are NaN.
- The mesh area and perimeter come from marching squares with edge midpoints (a single pixel is a
  diamond of area 1/2); at a saddle (diagonal pixels) the foreground is treated as disconnected.

Every feature equals PyRadiomics 3.1.0's (``force2D``, ``binCount`` or ``binWidth``) but kurtosis; see
``tests/client/test_radiomics.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import ndimage

from models.radiomics_names import FEATURE_NAMES, FIRSTORDER, GLCM, GLRLM, GLSZM, SHAPE  # noqa: F401 (the names, shared with the server)


DIRECTIONS: tuple[tuple[int, int], ...] = ((0, 1), (-1, 1), (-1, 0), (-1, -1))
"""(row, column) steps at 0, 45, 90 and 135 degrees (rows grow downwards)."""


def check_region(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The image as float64 and the mask as bool, both (H, W); ValueError for other shapes or an empty mask."""
    image = np.asarray(image, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if image.ndim != 2 or image.shape != mask.shape:
        raise ValueError(f"radiomics needs a 2D image and a mask of its shape, got {image.shape} and {mask.shape}")
    if not mask.any():
        raise ValueError("radiomics mask is empty: the region has no pixel")
    if not np.isfinite(image[mask]).all():
        raise ValueError("radiomics image has non-finite values inside the mask")
    return image, mask


def discretise(values: np.ndarray, bins: int = 32, bin_width: float | None = None) -> tuple[np.ndarray, int]:
    """Grey levels 1..n of ``values`` and n: fixed bin count ``bins``, or fixed ``bin_width`` when given."""
    if bin_width is not None:
        if bin_width <= 0:
            raise ValueError(f"bin_width must be positive, got {bin_width}")
        levels = np.floor(values / bin_width) - np.floor(values.min() / bin_width) + 1
        return levels.astype(np.int64), int(levels.max())
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    low, high = float(values.min()), float(values.max())
    if high == low:
        return np.ones(values.shape, dtype=np.int64), bins
    levels = np.floor(bins * (values - low) / (high - low)).astype(np.int64) + 1
    return np.minimum(levels, bins), bins


def firstorder_features(values: np.ndarray, levels: np.ndarray) -> dict[str, float]:
    """Intensity statistics of the ROI's raw ``values``; entropy (log2) and uniformity of its grey ``levels``."""
    mean = values.mean()
    centred = values - mean
    variance = float(np.mean(centred**2))
    p10, p25, median, p75, p90 = np.percentile(values, [10, 25, 50, 75, 90])
    robust = values[(values >= p10) & (values <= p90)]
    p = np.bincount(levels)[1:] / levels.size
    p = p[p > 0]
    flat = variance == 0.0
    return {
        "mean": float(mean),
        "variance": variance,
        "skewness": 0.0 if flat else float(np.mean(centred**3) / variance**1.5),
        "kurtosis": 0.0 if flat else float(np.mean(centred**4) / variance**2 - 3.0),
        "median": float(median),
        "p10": float(p10),
        "p90": float(p90),
        "minimum": float(values.min()),
        "maximum": float(values.max()),
        "range": float(values.max() - values.min()),
        "interquartile_range": float(p75 - p25),
        "mean_absolute_deviation": float(np.mean(np.abs(centred))),
        "robust_mean_absolute_deviation": float(np.mean(np.abs(robust - robust.mean()))),
        "energy": float(np.sum(values**2)),
        "root_mean_squared": float(np.sqrt(np.mean(values**2))),
        "entropy": float(-np.sum(p * np.log2(p))),
        "uniformity": float(np.sum(p**2)),
    }


# Marching squares over the 2x2 cells of pixel centres, indexed by 1*top-left + 2*top-right +
# 4*bottom-right + 8*bottom-left: contour length and foreground area inside the unit cell.
_H = float(np.sqrt(0.5))
_CELL_LENGTH = np.array([0, _H, _H, 1, _H, 2 * _H, 1, _H, _H, 1, 2 * _H, _H, 1, _H, _H, 0], dtype=np.float64)
_CELL_AREA = np.array([0, 1, 1, 4, 1, 2, 4, 7, 1, 4, 2, 7, 4, 7, 7, 8], dtype=np.float64) / 8


def marching_squares(mask: np.ndarray) -> tuple[float, float]:
    """Perimeter and enclosed area of the mask's contour through the midpoints between pixel centres."""
    padded = np.pad(mask, 1).astype(np.int64)
    case = padded[:-1, :-1] + 2 * padded[:-1, 1:] + 4 * padded[1:, 1:] + 8 * padded[1:, :-1]
    return float(_CELL_LENGTH[case].sum()), float(_CELL_AREA[case].sum())


def shape_features(mask: np.ndarray) -> dict[str, float]:
    """2D shape: pixel and mesh area, perimeter, sphericity ``2 sqrt(pi A) / P``, axes ``4 sqrt(lambda)``, elongation."""
    perimeter, area = marching_squares(mask)
    coords = np.argwhere(mask).astype(np.float64)
    centred = coords - coords.mean(axis=0)
    minor, major = np.clip(np.linalg.eigvalsh(centred.T @ centred / len(coords)), 0.0, None)
    return {
        "pixel_area": float(mask.sum()),
        "mesh_area": area,
        "perimeter": perimeter,
        "perimeter_area_ratio": perimeter / area,
        "sphericity": float(2.0 * np.sqrt(np.pi * area) / perimeter),
        "major_axis_length": float(4.0 * np.sqrt(major)),
        "minor_axis_length": float(4.0 * np.sqrt(minor)),
        "elongation": float(np.sqrt(minor / major)) if major > 0 else 1.0,
    }


def shifted_pairs(grid: np.ndarray, step: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Grey levels of every pixel and its neighbour ``step`` away, both in the ROI (0 in ``grid`` is outside)."""
    dr, dc = step
    h, w = grid.shape
    a = grid[max(0, -dr): h - max(0, dr), max(0, -dc): w - max(0, dc)]
    b = grid[max(0, dr): h - max(0, -dr), max(0, dc): w - max(0, -dc)]
    inside = (a > 0) & (b > 0)
    return a[inside], b[inside]


def glcm_matrix(grid: np.ndarray, n_levels: int, step: tuple[int, int]) -> np.ndarray:
    """Symmetric co-occurrence counts (n_levels, n_levels) at distance 1 along ``step``."""
    a, b = shifted_pairs(grid, step)
    counts = np.zeros((n_levels, n_levels))
    np.add.at(counts, (a - 1, b - 1), 1.0)
    return counts + counts.T


def glcm_features(p: np.ndarray) -> dict[str, float]:
    """GLCM features of one normalised co-occurrence matrix ``p``."""
    i, j = np.indices(p.shape) + 1.0
    mu_i, mu_j = np.sum(i * p), np.sum(j * p)
    sd_i, sd_j = np.sqrt(np.sum((i - mu_i) ** 2 * p)), np.sqrt(np.sum((j - mu_j) ** 2 * p))
    nonzero = p[p > 0]
    autocorrelation = float(np.sum(i * j * p))
    correlation = 1.0 if sd_i * sd_j == 0 else float((autocorrelation - mu_i * mu_j) / (sd_i * sd_j))
    return {
        "contrast": float(np.sum((i - j) ** 2 * p)),
        "correlation": correlation,
        "joint_energy": float(np.sum(p**2)),
        "joint_entropy": float(-np.sum(nonzero * np.log2(nonzero))),
        "inverse_difference": float(np.sum(p / (1.0 + np.abs(i - j)))),
        "dissimilarity": float(np.sum(np.abs(i - j) * p)),
        "cluster_shade": float(np.sum((i + j - mu_i - mu_j) ** 3 * p)),
        "cluster_prominence": float(np.sum((i + j - mu_i - mu_j) ** 4 * p)),
        "autocorrelation": autocorrelation,
    }


def lines(grid: np.ndarray, step: tuple[int, int]) -> Iterator[np.ndarray]:
    """The 1D lines of ``grid`` along ``step``: rows, columns, diagonals or anti-diagonals."""
    if step == (0, 1):
        yield from grid
    elif step == (-1, 0):
        yield from grid.T
    else:
        oriented = grid if step == (-1, -1) else np.fliplr(grid)
        for offset in range(-grid.shape[0] + 1, grid.shape[1]):
            yield np.diagonal(oriented, offset)


def runs(line: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grey levels and lengths of the runs of equal values in ``line``, outside pixels (0) dropped."""
    starts = np.flatnonzero(np.r_[True, line[1:] != line[:-1]])
    lengths = np.diff(np.r_[starts, line.size])
    values = line[starts]
    return values[values > 0], lengths[values > 0]


def glrlm_matrix(grid: np.ndarray, n_levels: int, step: tuple[int, int]) -> np.ndarray:
    """Run-length counts (n_levels, longest possible run) along ``step``."""
    counts = np.zeros((n_levels, max(grid.shape)))
    for line in lines(grid, step):
        values, lengths = runs(line)
        np.add.at(counts, (values - 1, lengths - 1), 1.0)
    return counts


def size_matrix_features(counts: np.ndarray, n_pixels: int) -> dict[str, float]:
    """Emphases, non-uniformities and percentage of a run-length or size-zone count matrix (levels x sizes)."""
    # the order is the GLRLM and GLSZM names' order (``_family``)
    i = np.arange(1, counts.shape[0] + 1, dtype=np.float64)[:, None]
    j = np.arange(1, counts.shape[1] + 1, dtype=np.float64)[None, :]
    total = counts.sum()
    return {
        "small": float(np.sum(counts / j**2) / total),
        "large": float(np.sum(counts * j**2) / total),
        "gray_level_non_uniformity": float(np.sum(counts.sum(axis=1) ** 2) / total),
        "size_non_uniformity": float(np.sum(counts.sum(axis=0) ** 2) / total),
        "percentage": float(total / n_pixels),
        "low_gray_level_emphasis": float(np.sum(counts / i**2) / total),
        "high_gray_level_emphasis": float(np.sum(counts * i**2) / total),
    }


def glrlm_features(counts: np.ndarray, n_pixels: int) -> dict[str, float]:
    """GLRLM features of one direction's run-length counts."""
    return _family(size_matrix_features(counts, n_pixels), GLRLM)


def _family(generic: dict[str, float], names: tuple[str, ...]) -> dict[str, float]:
    """A size matrix's features under one family's names: GLRLM's seven and GLSZM's five name the first of them, in ``size_matrix_features``' order."""
    return dict(zip(names, generic.values()))


def glszm_matrix(grid: np.ndarray, n_levels: int) -> np.ndarray:
    """Size-zone counts (n_levels, ROI size) of 8-connected zones of equal grey level."""
    counts = np.zeros((n_levels, int((grid > 0).sum())))
    for level in np.unique(grid[grid > 0]):
        labels, _ = ndimage.label(grid == level, structure=np.ones((3, 3)))
        sizes = np.bincount(labels.ravel())[1:]
        np.add.at(counts, (level - 1, sizes - 1), 1.0)
    return counts


def glszm_features(counts: np.ndarray, n_pixels: int) -> dict[str, float]:
    """GLSZM features of the size-zone counts."""
    return _family(size_matrix_features(counts, n_pixels), GLSZM)


def averaged(per_direction: list[dict[str, float]], names: tuple[str, ...]) -> dict[str, float]:
    """Mean of each feature over the directions that have pairs or runs; NaN when none has."""
    if not per_direction:
        return {name: float("nan") for name in names}
    return {name: float(np.mean([features[name] for features in per_direction])) for name in names}


def texture_features(grid: np.ndarray, n_levels: int) -> dict[str, float]:
    """GLCM and GLRLM averaged over the four directions, and GLSZM, of the discretised ``grid`` (0 outside)."""
    n_pixels = int((grid > 0).sum())
    glcms = [glcm_matrix(grid, n_levels, step) for step in DIRECTIONS]
    glcm = averaged([glcm_features(m / m.sum()) for m in glcms if m.sum() > 0], GLCM)
    glrlm = averaged([glrlm_features(glrlm_matrix(grid, n_levels, step), n_pixels) for step in DIRECTIONS], GLRLM)
    glszm = glszm_features(glszm_matrix(grid, n_levels), n_pixels)
    return {
        **{f"glcm_{k}": v for k, v in glcm.items()},
        **{f"glrlm_{k}": v for k, v in glrlm.items()},
        **{f"glszm_{k}": v for k, v in glszm.items()},
    }


def radiomics_features(image: np.ndarray, mask: np.ndarray, bins: int = 32, bin_width: float | None = None) -> dict[str, float]:
    """Every feature of ``FEATURE_NAMES`` for the ``mask`` region of a 2D ``image``, in that order.

    Grey levels for entropy, uniformity and texture: ``bins`` fixed bins over the ROI's range, or bins
    of ``bin_width`` intensity units when that is given. ValueError for an empty mask.
    """
    image, mask = check_region(image, mask)
    values = image[mask]
    levels, n_levels = discretise(values, bins, bin_width)
    grid = np.zeros(image.shape, dtype=np.int64)
    grid[mask] = levels
    features = {
        **{f"firstorder_{k}": v for k, v in firstorder_features(values, levels).items()},
        **{f"shape_{k}": v for k, v in shape_features(mask).items()},
        **texture_features(grid, n_levels),
    }
    return {name: features[name] for name in FEATURE_NAMES}


def radiomics_vector(image: np.ndarray, mask: np.ndarray, bins: int = 32, bin_width: float | None = None) -> np.ndarray:
    """``radiomics_features`` as a float64 vector in ``FEATURE_NAMES`` order."""
    features = radiomics_features(image, mask, bins, bin_width)
    return np.array([features[name] for name in FEATURE_NAMES], dtype=np.float64)
