"""The names of the 2D radiomics features (``client/radiomics.py`` computes them), kept free of numpy so the server can name them too."""

from __future__ import annotations

FIRSTORDER = (
    "mean", "variance", "skewness", "kurtosis", "median", "p10", "p90", "minimum", "maximum", "range",
    "interquartile_range", "mean_absolute_deviation", "robust_mean_absolute_deviation", "energy",
    "root_mean_squared", "entropy", "uniformity",
)
SHAPE = (
    "pixel_area", "mesh_area", "perimeter", "perimeter_area_ratio", "sphericity",
    "major_axis_length", "minor_axis_length", "elongation",
)
GLCM = (
    "contrast", "correlation", "joint_energy", "joint_entropy", "inverse_difference", "dissimilarity",
    "cluster_shade", "cluster_prominence", "autocorrelation",
)
GLRLM = (
    "short_run_emphasis", "long_run_emphasis", "gray_level_non_uniformity", "run_length_non_uniformity",
    "run_percentage", "low_gray_level_run_emphasis", "high_gray_level_run_emphasis",
)
GLSZM = (
    "small_area_emphasis", "large_area_emphasis", "gray_level_non_uniformity", "size_zone_non_uniformity",
    "zone_percentage",
)
FEATURE_NAMES: tuple[str, ...] = tuple(
    f"{family}_{name}"
    for family, names in (("firstorder", FIRSTORDER), ("shape", SHAPE), ("glcm", GLCM), ("glrlm", GLRLM), ("glszm", GLSZM))
    for name in names
)
"""Every feature's name, in the fixed order of ``radiomics_vector``: the same length at every site."""
