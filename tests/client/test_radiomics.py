"""2D radiomics against hand-computed matrices of tiny phantoms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from client.radiomics import FEATURE_NAMES, discretise, glcm_matrix, glrlm_matrix, glszm_matrix, radiomics_features, radiomics_vector

# Block phantom, grey levels 1..4 with bins=4 are left as they are: floor(4 * (x - 1) / 3) + 1 = x.
BLOCKS = np.array(
    [
        [1, 1, 2, 2],
        [1, 1, 2, 2],
        [3, 3, 4, 4],
        [3, 3, 4, 4],
    ],
    dtype=np.float64,
)
FULL = np.ones((4, 4), dtype=bool)


def blocks() -> dict[str, float]:
    """Every feature of the whole block phantom at 4 bins."""
    return radiomics_features(BLOCKS, FULL, bins=4)


def test_names_are_fixed_and_vector_length_constant() -> None:
    rng = np.random.default_rng(3)
    image = rng.normal(size=(30, 30))
    small = np.zeros((30, 30), dtype=bool)
    small[10:13, 10:14] = True
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES) == 46
    assert FEATURE_NAMES[0] == "firstorder_mean" and "glcm_contrast" in FEATURE_NAMES
    assert list(radiomics_features(image, small)) == list(FEATURE_NAMES)
    for mask in (small, np.ones((30, 30), dtype=bool)):
        assert radiomics_vector(image, mask).shape == (len(FEATURE_NAMES),)
        assert radiomics_vector(image, mask, bin_width=0.25).shape == (len(FEATURE_NAMES),)


def test_empty_mask_raises() -> None:
    with pytest.raises(ValueError, match="mask is empty"):
        radiomics_features(BLOCKS, np.zeros((4, 4), dtype=bool))
    with pytest.raises(ValueError, match="shape"):
        radiomics_features(BLOCKS, np.ones((3, 4), dtype=bool))


def test_discretisation_fixed_count_and_width() -> None:
    values = np.array([0.0, 0.24, 0.25, 0.5, 0.99, 1.0])
    levels, n = discretise(values, bins=4)
    # floor(4 * x) + 1, the maximum 1.0 kept in bin 4.
    assert n == 4 and levels.tolist() == [1, 1, 2, 3, 4, 4]
    levels, n = discretise(values + 10.0, bin_width=0.5)
    # floor(x / 0.5) - floor(10 / 0.5) + 1
    assert n == 3 and levels.tolist() == [1, 1, 1, 2, 2, 3]
    assert discretise(np.full(5, 7.0), bins=8)[0].tolist() == [1] * 5


def test_firstorder_by_hand() -> None:
    f = blocks()
    # Four pixels each of 1, 2, 3, 4: mean 2.5, deviations +-1.5 and +-0.5.
    assert f["firstorder_mean"] == pytest.approx(2.5)
    assert f["firstorder_variance"] == pytest.approx(1.25)  # (2.25 + 0.25 + 0.25 + 2.25) / 4
    assert f["firstorder_skewness"] == pytest.approx(0.0)
    assert f["firstorder_kurtosis"] == pytest.approx(2.5625 / 1.25**2 - 3)  # m4 = (5.0625 + 0.0625) / 2
    assert f["firstorder_median"] == pytest.approx(2.5)
    assert f["firstorder_p10"] == pytest.approx(1.0) and f["firstorder_p90"] == pytest.approx(4.0)
    assert f["firstorder_interquartile_range"] == pytest.approx(3.25 - 1.75)  # linear percentiles of 16 sorted values
    assert f["firstorder_range"] == pytest.approx(3.0)
    assert f["firstorder_mean_absolute_deviation"] == pytest.approx(1.0)
    assert f["firstorder_robust_mean_absolute_deviation"] == pytest.approx(1.0)  # [p10, p90] keeps every pixel
    assert f["firstorder_energy"] == pytest.approx(4 * (1 + 4 + 9 + 16))
    assert f["firstorder_root_mean_squared"] == pytest.approx(math.sqrt(7.5))
    assert f["firstorder_entropy"] == pytest.approx(2.0)  # four equiprobable levels, log2
    assert f["firstorder_uniformity"] == pytest.approx(0.25)


def test_shape_by_hand() -> None:
    f = blocks()
    # Marching squares on the 4x4 square: 3x3 full cells, 12 half edge cells, 4 corner cells of 1/8.
    assert f["shape_pixel_area"] == 16
    assert f["shape_mesh_area"] == pytest.approx(9 + 12 / 2 + 4 / 8)
    assert f["shape_perimeter"] == pytest.approx(12 + 4 * math.sqrt(0.5))
    assert f["shape_sphericity"] == pytest.approx(2 * math.sqrt(math.pi * 15.5) / (12 + 4 * math.sqrt(0.5)))
    # Coordinates 0..3 on both axes: variance 1.25 each, no covariance.
    assert f["shape_major_axis_length"] == pytest.approx(4 * math.sqrt(1.25))
    assert f["shape_elongation"] == pytest.approx(1.0)
    bar = np.zeros((4, 8), dtype=bool)
    bar[1:3, 1:7] = True  # 2 x 6: row variance 1/4, column variance 35/12
    g = radiomics_features(np.arange(32.0).reshape(4, 8), bar)
    assert g["shape_major_axis_length"] == pytest.approx(4 * math.sqrt(35 / 12))
    assert g["shape_minor_axis_length"] == pytest.approx(2.0)
    assert g["shape_elongation"] == pytest.approx(math.sqrt(3 / 35))
    single = np.zeros((3, 3), dtype=bool)
    single[1, 1] = True  # a diamond through the 4 edge midpoints; no pair, no run direction to average
    dot = radiomics_features(np.ones((3, 3)), single)
    assert dot["shape_mesh_area"] == pytest.approx(0.5) and dot["shape_perimeter"] == pytest.approx(4 * math.sqrt(0.5))
    assert math.isnan(dot["glcm_contrast"]) and dot["glszm_zone_percentage"] == 1.0


def test_glcm_matrices_by_hand() -> None:
    grid = BLOCKS.astype(np.int64)
    # 0 degrees, per row (1,1) (1,2) (2,2) or (3,3) (3,4) (4,4), twice each; symmetric: 4 on the diagonal, 2 beside it.
    horizontal = np.array([[4, 2, 0, 0], [2, 4, 0, 0], [0, 0, 4, 2], [0, 0, 2, 4]])
    np.testing.assert_array_equal(glcm_matrix(grid, 4, (0, 1)), horizontal)
    # 90 degrees: columns 1 1 3 3 and 2 2 4 4.
    vertical = np.array([[4, 0, 2, 0], [0, 4, 0, 2], [2, 0, 4, 0], [0, 2, 0, 4]])
    np.testing.assert_array_equal(glcm_matrix(grid, 4, (-1, 0)), vertical)


def test_glcm_features_by_hand() -> None:
    f = blocks()
    # Contrast per direction: 0 deg 8/24, 90 deg 32/24, 45 deg 22/18 (pairs (1,1) (1,2) (2,2) (3,1) (3,2)
    # (4,2) (3,3) (3,4) (4,4): sum (i-j)^2 = 11, doubled), 135 deg 38/18 (pairs (1,1) (2,1) (2,2) (3,1)
    # (4,1) (4,2) (3,3) (4,3) (4,4): 19, doubled). Mean (3 + 12 + 11 + 19) / 36 = 5/4.
    assert f["glcm_contrast"] == pytest.approx(5 / 4)
    # Dissimilarity: 8/24, 16/24, 14/18, 18/18 -> 25/36.
    assert f["glcm_dissimilarity"] == pytest.approx(25 / 36)
    # Joint energy: 0 and 90 deg (4 * 16 + 4 * 4) / 24^2 = 5/36; 45 and 135 deg (4 * 4 + 10) / 18^2 = 13/162.
    assert f["glcm_joint_energy"] == pytest.approx((5 / 36 + 13 / 162) / 2)
    flat = radiomics_features(np.full((3, 3), 5.0), np.ones((3, 3), dtype=bool))
    assert flat["glcm_correlation"] == 1.0 and flat["glcm_contrast"] == 0.0 and flat["glcm_joint_energy"] == 1.0


def test_glrlm_by_hand() -> None:
    grid = BLOCKS.astype(np.int64)
    # 0 degrees: each row two runs of length 2 -> 2 runs of length 2 per grey level.
    np.testing.assert_array_equal(glrlm_matrix(grid, 4, (0, 1))[:, :2], [[0, 2]] * 4)
    # 45 degrees (anti-diagonals 1 | 1 1 | 3 1 2 | 3 3 2 2 | 3 4 2 | 4 4 | 4): 8 runs of 1, 4 runs of 2.
    diagonal = glrlm_matrix(grid, 4, (-1, 1))
    np.testing.assert_array_equal(diagonal[:, :2], [[2, 1], [2, 1], [2, 1], [2, 1]])
    f = blocks()
    # SRE: 1/4, 1/4 (0, 90 deg), (8 + 4/4) / 12 (45, 135 deg); LRE 4, 4, (8 + 16) / 12; RP 8/16, 12/16.
    assert f["glrlm_short_run_emphasis"] == pytest.approx((0.25 + 0.25 + 0.75 + 0.75) / 4)
    assert f["glrlm_long_run_emphasis"] == pytest.approx((4 + 4 + 2 + 2) / 4)
    assert f["glrlm_run_percentage"] == pytest.approx((0.5 + 0.5 + 0.75 + 0.75) / 4)
    # GLN: 0 deg 4 * 2^2 / 8 = 2; 45 deg 4 * 3^2 / 12 = 3. RLN: 8^2 / 8 = 8; (8^2 + 4^2) / 12 = 20/3.
    assert f["glrlm_gray_level_non_uniformity"] == pytest.approx(2.5)
    assert f["glrlm_run_length_non_uniformity"] == pytest.approx((8 + 8 + 20 / 3 + 20 / 3) / 4)
    # LGLRE: every level holds the same share of runs in each direction: mean of 1/i^2; HGLRE mean of i^2.
    assert f["glrlm_low_gray_level_run_emphasis"] == pytest.approx((1 + 1 / 4 + 1 / 9 + 1 / 16) / 4)
    assert f["glrlm_high_gray_level_run_emphasis"] == pytest.approx((1 + 4 + 9 + 16) / 4)


def test_glszm_by_hand() -> None:
    f = blocks()
    # Four 2x2 zones, one per grey level: SAE 1/16, LAE 16, GLN 4/4, SZN 4^2/4, ZP 4/16.
    assert f["glszm_small_area_emphasis"] == pytest.approx(1 / 16)
    assert f["glszm_large_area_emphasis"] == pytest.approx(16)
    assert f["glszm_gray_level_non_uniformity"] == pytest.approx(1)
    assert f["glszm_size_zone_non_uniformity"] == pytest.approx(4)
    assert f["glszm_zone_percentage"] == pytest.approx(0.25)


def test_glszm_is_8_connected() -> None:
    checker = (np.indices((4, 4)).sum(axis=0) % 2 + 1).astype(np.int64)
    # Each level of a checkerboard is one zone of 8 pixels through the diagonals (16 zones if 4-connected).
    counts = glszm_matrix(checker, 2)
    assert counts.sum() == 2 and counts[0, 7] == 1 and counts[1, 7] == 1
    f = radiomics_features(checker.astype(np.float64), FULL, bins=2)
    assert f["glszm_zone_percentage"] == pytest.approx(2 / 16)
    assert f["glszm_small_area_emphasis"] == pytest.approx(1 / 64)
    # 0 and 90 degrees: 16 runs of 1; 45 and 135 degrees: runs along diagonals keep one level.
    assert f["glrlm_run_percentage"] == pytest.approx((1 + 1 + 7 / 16 + 7 / 16) / 4)


def test_roi_only_counts_masked_pixels() -> None:
    image = BLOCKS.copy()
    image[:, 3] = 100.0  # outside the ROI: must change nothing
    mask = FULL.copy()
    mask[:, 3] = False
    inside = radiomics_features(image, mask, bins=4)
    alone = radiomics_features(BLOCKS[:, :3], FULL[:, :3], bins=4)
    np.testing.assert_allclose([inside[n] for n in FEATURE_NAMES], [alone[n] for n in FEATURE_NAMES])


# Reference values computed once with PyRadiomics v3.1.0 (the PyPI 3.1.0 sdist, built on Python 3.11.7 after
# adding the cmatrices.h and cshape.h headers it lacks from the v3.1.0 tag) by a throwaway script:
# RadiomicsFeatureExtractor(force2D=True, force2Ddimension=0, binCount=32 or binWidth=5, label=1), classes
# firstorder, shape2D, glcm, glrlm, glszm, image and mask as (1, H, W) SimpleITK images of spacing 1.
# Names: PyRadiomics' Id is inverse_difference, DifferenceAverage dissimilarity, PixelSurface/MeshSurface the areas.
PYRADIOMICS_BIN_COUNT_32 = {
    "firstorder_mean": 85.87755102040816,
    "firstorder_variance": 663.4543940024992,
    "firstorder_skewness": 0.017823579495027657,
    "firstorder_kurtosis": 1.8607699558028918 - 3.0,  # PyRadiomics' kurtosis is not excess kurtosis
    "firstorder_median": 83.5,
    "firstorder_p10": 51.400000000000006,
    "firstorder_p90": 122.5,
    "firstorder_interquartile_range": 45.75,
    "firstorder_mean_absolute_deviation": 22.221990837151186,
    "firstorder_robust_mean_absolute_deviation": 17.836875926841326,
    "firstorder_energy": 1181646.0,
    "firstorder_root_mean_squared": 89.65717017207997,
    "firstorder_entropy": 4.811415333851942,
    "firstorder_uniformity": 0.03965940117543616,
    "shape_pixel_area": 147.0,
    "shape_mesh_area": 147.0,
    "shape_perimeter": 48.627416997969505,
    "shape_sphericity": 0.8838577984832546,
    "shape_major_axis_length": 16.577169118410374,
    "shape_minor_axis_length": 11.409507909997668,
    "shape_elongation": 0.6882663637259046,
    "glcm_contrast": 155.05583028083026,
    "glcm_correlation": 0.05834118827625819,
    "glcm_joint_energy": 0.006394200848820334,
    "glcm_joint_entropy": 7.68889988336541,
    "glcm_inverse_difference": 0.18420042819154564,
    "glcm_dissimilarity": 9.959452584452585,
    "glcm_cluster_shade": 71.92043163228138,
    "glcm_cluster_prominence": 72841.09271349123,
    "glcm_autocorrelation": 278.1610500610501,
    "glrlm_short_run_emphasis": 0.9850799606561501,
    "glrlm_long_run_emphasis": 1.3152459253492559,
    "glrlm_gray_level_non_uniformity": 5.43728450259819,
    "glrlm_run_length_non_uniformity": 136.3867477430506,
    "glrlm_run_percentage": 0.9642857142857142,
    "glrlm_low_gray_level_run_emphasis": 0.045519617028494656,
    "glrlm_high_gray_level_run_emphasis": 372.50680537898336,
    "glszm_small_area_emphasis": 0.9559924083662065,
    "glszm_large_area_emphasis": 2.4921875,
    "glszm_gray_level_non_uniformity": 4.640625,
    "glszm_size_zone_non_uniformity": 114.59375,
    "glszm_zone_percentage": 0.8707482993197279,
}
PYRADIOMICS_BIN_WIDTH_5 = {
    "shape_mesh_area": 26.0,
    "shape_perimeter": 27.313708498984745,
    "glcm_contrast": 10.76299342105263,
    "glcm_joint_entropy": 3.9459407992058493,
    "glszm_zone_percentage": 0.5357142857142857,
    "glszm_small_area_emphasis": 0.6711851851851852,
    "firstorder_entropy": 2.824291085081514,
}


def test_matches_pyradiomics_bin_count() -> None:
    # A 24x24 pseudo-random image, an elliptic ROI of 147 pixels with one interior hole.
    yy, xx = np.mgrid[:24, :24]
    image = ((xx * xx * 7 + yy * 13 + xx * yy * 3) % 61) * 1.5 + 40.0
    mask = ((yy - 11.5) / 8) ** 2 + ((xx - 12) / 6) ** 2 <= 1
    mask[11, 12] = False
    f = radiomics_features(image, mask, bins=32)
    for name, value in PYRADIOMICS_BIN_COUNT_32.items():
        assert f[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    assert set(FEATURE_NAMES) - set(PYRADIOMICS_BIN_COUNT_32) == {"firstorder_minimum", "firstorder_maximum", "firstorder_range", "shape_perimeter_area_ratio"}


def test_matches_pyradiomics_bin_width_and_saddles() -> None:
    # A 5x5 square with three pixels touching it or each other only at corners (marching-squares saddles).
    yy, xx = np.mgrid[:12, :12]
    image = ((xx * 5 + yy * yy * 11 + xx * yy) % 23) * 2.0 + 30.0
    mask = np.zeros((12, 12), dtype=bool)
    mask[3:8, 3:8] = True
    mask[8, 8] = mask[9, 9] = mask[2, 2] = True
    f = radiomics_features(image, mask, bin_width=5.0)
    for name, value in PYRADIOMICS_BIN_WIDTH_5.items():
        assert f[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
