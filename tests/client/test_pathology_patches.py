"""Pathology patches: grid tiling and its order, tissue ranking, folder natural order, colour modes, stain normalisation and errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from client.errors import SiteDataError
from client.pathology_patches import REINHARD_MEANS, REINHARD_STDS, natural_key, read_patches, read_rgb
from client.stain import MACENKO_IO, REFERENCE_MATRIX, RGB_FROM_HED, lab_statistics, macenko_stain_matrix

WHITE = (245, 245, 245)
HE_PINK = (200, 120, 170)


def he_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """(h, w, 3) uint8 H&E-like image stained with Ruifrok and Johnston's H and E vectors (not Macenko's reference)."""
    rng = np.random.default_rng(seed)
    matrix = (RGB_FROM_HED[:2] / np.linalg.norm(RGB_FROM_HED[:2], axis=1, keepdims=True)).T
    amount = rng.uniform(0.0, 1.2, size=(2, h * w)) * (rng.random(h * w) < 0.8)
    intensity = MACENKO_IO * np.exp(-(matrix @ amount)).T
    return np.clip(np.rint(intensity), 0, 255).astype(np.uint8).reshape(h, w, 3)


def save(path: Path, array: np.ndarray) -> Path:
    """Write an array as an image (mode from its shape and dtype)."""
    Image.fromarray(array).save(path)
    return path


def solid(h: int, w: int, colour: tuple[int, int, int]) -> np.ndarray:
    """(h, w, 3) uint8 of one colour."""
    return np.broadcast_to(np.array(colour, np.uint8), (h, w, 3)).copy()


def test_a_micrograph_is_tiled_row_by_row_and_the_rest_dropped(tmp_path: Path) -> None:
    image = solid(40, 56, WHITE)  # 2 x 3 tiles of 16; 8 rows and 8 columns left over
    for r in range(2):
        for c in range(3):
            image[r * 16 : (r + 1) * 16, c * 16 : (c + 1) * 16] = (100 + 10 * (3 * r + c), 60, 120)
    patches = read_patches(save(tmp_path / "m.png", image), 16, 10)
    assert patches.shape == (6, 3, 16, 16) and patches.dtype == np.uint8
    assert [int(p[0, 0, 0]) for p in patches] == [100, 110, 120, 130, 140, 150]


def test_a_micrograph_smaller_than_a_tile_is_enlarged_until_one_fits(tmp_path: Path) -> None:
    patches = read_patches(save(tmp_path / "small.png", solid(10, 30, HE_PINK)), 16, 10)
    assert patches.shape == (3, 3, 16, 16)  # 10 x 30 -> 16 x 48
    assert (patches[:, 0] == HE_PINK[0]).all()


def test_the_tiles_with_most_tissue_are_kept_in_grid_order_ties_to_the_earlier(tmp_path: Path) -> None:
    image = solid(32, 48, WHITE)  # tiles 0 1 2 / 3 4 5
    image[0:16, 16:32] = HE_PINK  # tile 1: all tissue
    image[16:32, 32:48] = HE_PINK  # tile 5: all tissue
    image[16:32, 0:8] = HE_PINK  # tile 3: half tissue
    path = save(tmp_path / "m.png", image)
    assert [int((p[1] < 200).mean() * 2) for p in read_patches(path, 16, 2)] == [2, 2]  # tiles 1 and 5
    np.testing.assert_array_equal(read_patches(path, 16, 3), read_patches(path, 16, 6)[[1, 3, 5]])
    blank = save(tmp_path / "blank.png", solid(32, 48, WHITE))
    assert read_patches(blank, 16, 2).shape == (2, 3, 16, 16)


def test_a_folder_gives_its_images_in_natural_order_each_resized(tmp_path: Path) -> None:
    folder = tmp_path / "case"
    folder.mkdir()
    for number, size in ((10, 20), (2, 64), (1, 32)):
        save(folder / f"patch{number}.png", solid(size, size, (number * 10, 80, 120)))
    (folder / "notes.txt").write_text("not a patch")
    patches = read_patches(folder, 32, 10)
    assert patches.shape == (3, 3, 32, 32)
    assert [int(p[0, 5, 5]) for p in patches] == [10, 20, 100]
    assert sorted(["patch10", "patch2", "patch1b", "patch1"], key=natural_key) == ["patch1", "patch1b", "patch2", "patch10"]


def test_rgba_grayscale_and_16_bit_images_become_rgb(tmp_path: Path) -> None:
    rgb = he_image(16, 16)
    opaque = np.concatenate([rgb, np.full((16, 16, 1), 255, np.uint8)], axis=2)
    np.testing.assert_array_equal(read_rgb(save(tmp_path / "opaque.png", opaque)), rgb)
    clear = opaque.copy()
    clear[..., 3] = 0
    np.testing.assert_array_equal(read_rgb(save(tmp_path / "clear.png", clear)), 255)  # transparent is white background
    gray = rgb[..., 1]
    np.testing.assert_array_equal(read_rgb(save(tmp_path / "gray.png", gray)), np.repeat(gray[..., None], 3, axis=2))
    deep = read_rgb(save(tmp_path / "deep.png", gray.astype(np.uint16) * 257))
    np.testing.assert_array_equal(deep, np.repeat(gray[..., None], 3, axis=2))
    patches = read_patches(tmp_path / "gray.png", 16, 1)
    assert patches.shape == (1, 3, 16, 16) and (patches[0, 0] == patches[0, 2]).all()


def test_reinhard_brings_the_lab_means_to_the_target_over_the_whole_micrograph(tmp_path: Path) -> None:
    image = he_image(64, 64)
    path = save(tmp_path / "he.png", image)
    patches = read_patches(path, 16, 16, "reinhard")
    whole = patches.transpose(0, 2, 3, 1).reshape(-1, 16, 3)  # every tile kept, so every pixel once
    before, _ = lab_statistics(image)
    after, after_stds = lab_statistics(whole)
    assert np.abs(before - REINHARD_MEANS).max() > 5
    np.testing.assert_allclose(after, REINHARD_MEANS, atol=1.5)
    np.testing.assert_allclose(after_stds, REINHARD_STDS, rtol=0.1, atol=1.0)


def test_normalisation_is_of_the_whole_micrograph_not_of_each_tile(tmp_path: Path) -> None:
    image = he_image(32, 64)
    image[:, 32:] = np.clip(image[:, 32:].astype(int) - 60, 0, 255)  # the right tiles darker
    left, right = read_patches(save(tmp_path / "two.png", image), 32, 2, "reinhard")
    left_l, right_l = (lab_statistics(p.transpose(1, 2, 0))[0][0] for p in (left, right))
    assert left_l - right_l > 10  # tile-wise normalisation would have given both the target's lightness


def test_macenko_turns_the_stain_vectors_toward_the_published_reference(tmp_path: Path) -> None:
    image = he_image(64, 64)
    patches = read_patches(save(tmp_path / "he.png", image), 64, 1, "macenko")

    def angle(matrix: np.ndarray) -> float:
        return float(np.degrees(np.arccos(np.clip((matrix * REFERENCE_MATRIX).sum(axis=0), -1, 1))).max())

    assert angle(macenko_stain_matrix(patches[0].transpose(1, 2, 0))) < 3 < angle(macenko_stain_matrix(image))


def test_macenko_keeps_a_blank_patch_as_it_is(tmp_path: Path) -> None:
    folder = tmp_path / "case"
    folder.mkdir()
    save(folder / "0.png", solid(16, 16, WHITE))
    assert (read_patches(folder, 16, 1, "macenko") == WHITE[0]).all()


def broken(tmp_path: Path) -> Path:
    """A .png that is not an image."""
    path = tmp_path / "broken.png"
    path.write_bytes(b"no image here" * 10)
    return path


def empty_folder(tmp_path: Path) -> Path:
    """A folder with nothing in it."""
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


def folder_without_images(tmp_path: Path) -> Path:
    """A folder holding only text."""
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("x")
    return tmp_path / "texts"


def broken_in_folder(tmp_path: Path) -> Path:
    """A folder whose only patch is cut; the error names that patch."""
    (tmp_path / "case").mkdir()
    return broken(tmp_path / "case")


@pytest.mark.parametrize("make", [broken, empty_folder, folder_without_images, broken_in_folder, lambda tmp: tmp / "missing.png"])
def test_unusable_inputs_fail_naming_the_path(tmp_path: Path, make: Callable[[Path], Path]) -> None:
    path = make(tmp_path)
    with pytest.raises(SiteDataError) as err:
        read_patches(path.parent if make is broken_in_folder else path, 16, 4)
    assert str(path) in str(err.value) and str(tmp_path) not in err.value.public


def test_a_patch_size_below_8_fails_naming_the_path(tmp_path: Path) -> None:
    path = save(tmp_path / "he.png", he_image(16, 16))
    with pytest.raises(SiteDataError, match="below 8") as err:
        read_patches(path, 7, 4)
    assert str(path) in str(err.value)
