"""Image loading: PNG and DICOM, grayscale and colour, and truncated files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from client.errors import SiteDataError
from client.images import read_image, read_mask
from tests.conftest import write_dicom, write_png


@pytest.fixture
def gray() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (40, 56), dtype=np.uint8)


def test_png_and_dicom_grayscale_read_the_same_pixels(tmp_path: Path, gray: np.ndarray) -> None:
    png = read_image(write_png(tmp_path / "a.png", gray))
    dcm = read_image(write_dicom(tmp_path / "a.dcm", gray))
    assert png.dtype == np.float32 and png.shape == (40, 56)
    np.testing.assert_array_equal(png, gray.astype(np.float32))
    np.testing.assert_array_equal(dcm, png)


def test_colour_becomes_luminance(tmp_path: Path, gray: np.ndarray) -> None:
    rgb = np.stack([gray, gray // 2, 255 - gray], axis=-1).astype(np.uint8)
    expected = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    np.testing.assert_allclose(read_image(write_png(tmp_path / "c.png", rgb)), expected, rtol=1e-5)
    np.testing.assert_allclose(read_image(write_dicom(tmp_path / "c.dcm", rgb)), expected, rtol=1e-5)


def test_monochrome1_is_inverted(tmp_path: Path, gray: np.ndarray) -> None:
    inverted = read_image(write_dicom(tmp_path / "m1.dcm", gray // 2, photometric="MONOCHROME1"))
    np.testing.assert_array_equal(inverted, (255 - gray // 2).astype(np.float32))  # over the 8-bit stored range, not the image's maximum


def test_truncated_dicom_names_the_file(tmp_path: Path, gray: np.ndarray) -> None:
    path = write_dicom(tmp_path / "cut.dcm", gray)
    path.write_bytes(path.read_bytes()[:-700])
    with pytest.raises(SiteDataError) as err:
        read_image(path)
    assert "cut.dcm" in str(err.value) and "truncated" in str(err.value)


def test_truncated_png_and_non_image_name_the_file(tmp_path: Path, gray: np.ndarray) -> None:
    path = write_png(tmp_path / "cut.png", gray)
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(SiteDataError, match="cut.png"):
        read_image(path)
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(SiteDataError, match="text.png"):
        read_image(tmp_path / "text.png")


def test_mask_must_match_its_image(tmp_path: Path, gray: np.ndarray) -> None:
    mask = read_mask(write_png(tmp_path / "m.png", (gray > 128).astype(np.uint8) * 255), gray.shape)
    assert mask.dtype == bool and mask.sum() == (gray > 128).sum()
    with pytest.raises(SiteDataError, match="shape"):
        read_mask(tmp_path / "m.png", (10, 10))
