"""Stain estimation against Macenko's published reference matrix, normalisation, Reinhard targets, stain augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from client.stain import (
    MACENKO_IO, REFERENCE_MATRIX, REFERENCE_MAX, lab_statistics, lab_to_rgb, macenko_normalise, macenko_stain_matrix, optical_density,
    reinhard_normalise, rgb_to_lab, stain_augment,
)


def concentrations(seed: int = 0, side: int = 96) -> np.ndarray:
    """(2, side*side) H and E concentrations: pure H, pure E, mixtures and a little background."""
    rng = np.random.default_rng(seed)
    n = side * side
    kind = rng.integers(0, 4, size=n)  # 0 pure H, 1 pure E, 2 mixture, 3 background
    amount = rng.uniform(0.4, 1.6, size=(2, n))
    amount[1, kind == 0] = 0.0
    amount[0, kind == 1] = 0.0
    amount[:, kind == 3] = 0.0
    return amount


def synthetic(matrix: np.ndarray, amount: np.ndarray, side: int = 96) -> np.ndarray:
    """uint8 H&E tile I = Io * exp(-matrix @ C)."""
    intensity = MACENKO_IO * np.exp(-(matrix @ amount)).T
    return np.clip(np.rint(intensity), 0, 255).astype(np.uint8).reshape(side, side, 3)


def rotated(matrix: np.ndarray, angle: float) -> np.ndarray:
    """The stain vectors turned by ``angle`` radians about the grey axis, renormalised."""
    axis = np.ones(3) / np.sqrt(3)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    turn = np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross
    turned = np.abs(turn @ matrix)
    return turned / np.linalg.norm(turned, axis=0)


def test_optical_density_of_background_is_zero() -> None:
    assert np.allclose(optical_density(np.full((2, 2, 3), 239, np.uint8)), 0.0)


def test_macenko_recovers_the_published_reference_matrix() -> None:
    estimate = macenko_stain_matrix(synthetic(REFERENCE_MATRIX, concentrations()))
    np.testing.assert_allclose(estimate, REFERENCE_MATRIX, atol=1e-2)


def test_macenko_orders_haematoxylin_first_for_other_stains() -> None:
    matrix = rotated(REFERENCE_MATRIX, 0.25)
    estimate = macenko_stain_matrix(synthetic(matrix, concentrations(1)))
    np.testing.assert_allclose(estimate, matrix, atol=2e-2)


def test_macenko_normalise_maps_other_stains_to_the_reference_stains() -> None:
    amount = concentrations(2)
    source = synthetic(rotated(REFERENCE_MATRIX, 0.3), amount)
    expected = synthetic(REFERENCE_MATRIX, amount * (REFERENCE_MAX / np.percentile(amount, 99, axis=1))[:, None])
    normalised = macenko_normalise(source)
    assert normalised.dtype == np.uint8 and normalised.shape == source.shape
    difference = np.abs(normalised.astype(int) - expected.astype(int))
    assert difference.mean() < 2.0 and np.abs(source.astype(int) - expected.astype(int)).mean() > 10.0


def test_background_only_tile_is_refused() -> None:
    blank = np.full((64, 64, 3), 236, np.uint8)
    blank[:3, :3] = 120  # a speck of tissue
    with pytest.raises(ValueError, match="too little tissue"):
        macenko_stain_matrix(blank)


def test_lab_matches_published_srgb_values() -> None:
    colours = np.array([[[255, 255, 255], [255, 0, 0], [0, 0, 0]]], np.uint8)
    lab = rgb_to_lab(colours)
    np.testing.assert_allclose(lab[0, 0], [100.0, 0.0, 0.0], atol=1e-2)
    np.testing.assert_allclose(lab[0, 1], [53.24, 80.09, 67.20], atol=5e-2)  # sRGB red, D65
    np.testing.assert_allclose(lab[0, 2], [0.0, 0.0, 0.0], atol=1e-6)
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    np.testing.assert_array_equal(lab_to_rgb(rgb_to_lab(image)), image)


def test_reinhard_gives_the_target_lab_statistics() -> None:
    source = synthetic(rotated(REFERENCE_MATRIX, 0.3), concentrations(4))
    means, stds = np.array([70.0, 12.0, -8.0]), np.array([12.0, 8.0, 6.0])
    got_means, got_stds = lab_statistics(reinhard_normalise(source, means, stds))
    np.testing.assert_allclose(got_means, means, atol=0.5)
    np.testing.assert_allclose(got_stds, stds, atol=0.5)


def test_stain_augment_without_jitter_returns_the_image() -> None:
    image = synthetic(REFERENCE_MATRIX, concentrations(5))
    same = stain_augment(image, np.random.default_rng(0), sigma_alpha=0.0, sigma_beta=0.0)
    assert np.abs(same.astype(int) - image.astype(int)).max() <= 1


def test_stain_augment_is_deterministic_per_seed_and_changes_colours() -> None:
    image = synthetic(REFERENCE_MATRIX, concentrations(6))
    first = stain_augment(image, np.random.default_rng(7))
    np.testing.assert_array_equal(first, stain_augment(image, np.random.default_rng(7)))
    assert np.abs(first.astype(int) - image.astype(int)).mean() > 2.0
    assert not np.array_equal(first, stain_augment(image, np.random.default_rng(8)))
