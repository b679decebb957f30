"""Mammogram views: Otsu against a hand computation, the breast box, orientation by laterality or mass, DICOM and PNG alike, masks and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from client.errors import SiteDataError
from client.mammo import breast_box, orient, otsu_threshold, pad_square, prepare_view, read_view
from tests.client.dicom_files import native, save

MAMMO_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
H, W = 96, 80
CENTRE, SEMI_Y, SEMI_X = 48, 36, 56  # a semi-ellipse on the left edge (the chest wall)


def breast_region() -> np.ndarray:
    """(H, W) bool: the semi-ellipse of the breast, chest wall on the left."""
    yy, xx = np.mgrid[:H, :W]
    return ((yy - CENTRE) / SEMI_Y) ** 2 + (xx / SEMI_X) ** 2 <= 1.0


def breast(seed: int = 0) -> np.ndarray:
    """(H, W) float in [0, 1]: tissue brighter towards the chest wall, a lesion, a little noise and a small burned-in marker."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W]
    image = np.where(breast_region(), 0.45 + 0.35 * (1 - xx / SEMI_X), 0.02)
    image = image + 0.25 * (((yy - 34) ** 2 + (xx - 20) ** 2) <= 36)  # a lesion in the upper half
    image[86:90, 70:74] = 1.0  # a 4 x 4 marker far from the breast
    return np.clip(image + rng.normal(0, 0.01, image.shape), 0.0, 1.0)


def mammo_dicom(path: Path, image: np.ndarray, laterality: str = "", keyword: str = "ImageLaterality") -> Path:
    """A 12-bit MONOCHROME1 mammogram (bright tissue stored as low values) with its laterality in ``keyword``."""
    stored = np.rint(4095 * (1.0 - image)).astype(np.uint16)
    ds = native(stored, "MONOCHROME1", bits=12)
    ds.Modality = "MG"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MAMMO_FOR_PRESENTATION
    if laterality:
        setattr(ds, keyword, laterality)
    return save(path, ds)


def png16(path: Path, image: np.ndarray) -> Path:
    """A 16-bit grayscale PNG of an image in [0, 1]."""
    Image.fromarray(np.rint(65535 * image).astype(np.uint16)).save(path)
    return path


def png8(path: Path, array: np.ndarray) -> Path:
    """An 8-bit grayscale PNG."""
    Image.fromarray(array.astype(np.uint8)).save(path)
    return path


def test_otsu_threshold_matches_a_hand_computation_on_a_bimodal_histogram() -> None:
    # values 0, 1, 2, 3 counted 4, 2, 1, 3 (4 bins over 0..3, mean 1.3); the between-class variance
    # w0 * w1 * (mu0 - mu1)^2 of each split: after 0: .4 * .6 * (13/6)^2 = 1.127; after 1: .6 * .4 * (1/3 - 11/4)^2
    # = 1.402; after 2: .7 * .3 * (4/7 - 3)^2 = 1.239. The split after value 1 wins: the edge between bins 1 and 2, 1.5.
    values = np.repeat([0.0, 1.0, 2.0, 3.0], [4, 2, 1, 3])
    assert otsu_threshold(values, bins=4) == pytest.approx(1.5)
    assert otsu_threshold(np.full(10, 0.25)) == 0.25


def test_breast_box_finds_a_drawn_semi_ellipse_and_ignores_a_small_marker() -> None:
    y0, x0, y1, x1 = breast_box(breast().astype(np.float32))
    margin = 2  # 2% of 96, at least 2
    assert (y0, x0) == (CENTRE - SEMI_Y - margin, 0)
    assert y1 == CENTRE + SEMI_Y + 1 + margin
    assert SEMI_X - 2 <= x1 - margin <= SEMI_X + 1  # the ellipse's tip is a point, thinned by the opening


def test_a_blank_image_gives_the_whole_image_as_its_box() -> None:
    assert breast_box(np.zeros((20, 30), np.float32)) == (0, 0, 20, 30)


def test_orient_flips_right_views_keeps_left_ones_and_uses_the_tissue_side_without_laterality() -> None:
    left = breast().astype(np.float32)
    mirrored = left[:, ::-1]
    np.testing.assert_array_equal(orient(mirrored, "R"), left)
    np.testing.assert_array_equal(orient(left, "L"), left)
    np.testing.assert_array_equal(orient(mirrored, ""), left)
    np.testing.assert_array_equal(orient(left, ""), left)


def test_read_view_scales_to_unit_range_and_reads_laterality(tmp_path: Path) -> None:
    image = breast()
    view = read_view(mammo_dicom(tmp_path / "a.dcm", image, "R"))
    assert view.laterality == "R" and view.pixels.dtype == np.float32 and view.pixels.shape == (H, W)
    assert view.pixels.min() == 0.0 and view.pixels.max() == 1.0
    assert view.pixels[breast_region()].mean() > 0.3 > view.pixels[~breast_region()].mean()  # MONOCHROME1 inverted: tissue bright
    assert read_view(mammo_dicom(tmp_path / "b.dcm", image, "L", keyword="Laterality")).laterality == "L"
    assert read_view(mammo_dicom(tmp_path / "c.dcm", image)).laterality == ""
    assert read_view(png16(tmp_path / "d.png", image)).laterality == ""


def test_a_monochrome1_12_bit_dicom_and_a_16_bit_png_of_one_breast_give_the_same_view(tmp_path: Path) -> None:
    image = breast()
    from_dicom, _ = prepare_view(mammo_dicom(tmp_path / "view.dcm", image, "L"), 64)
    from_png, _ = prepare_view(png16(tmp_path / "view.png", image), 64)
    assert from_dicom.shape == (1, 64, 64) and from_dicom.dtype == np.float32
    assert 0.0 <= from_dicom.min() and from_dicom.max() <= 1.0
    np.testing.assert_allclose(from_dicom, from_png, atol=2e-3)


@pytest.mark.parametrize("keyword", ["ImageLaterality", "Laterality"])
def test_mirrored_right_and_left_views_give_the_same_prepared_view(tmp_path: Path, keyword: str) -> None:
    image = breast()
    left, _ = prepare_view(mammo_dicom(tmp_path / "l.dcm", image, "L", keyword), 48)
    right, _ = prepare_view(mammo_dicom(tmp_path / "r.dcm", image[:, ::-1], "R", keyword), 48)
    unknown, _ = prepare_view(png16(tmp_path / "u.png", image[:, ::-1]), 48)
    np.testing.assert_allclose(right, left, atol=1e-6)
    np.testing.assert_allclose(unknown, left, atol=2e-3)
    assert left[0, :, :4].mean() > left[0, :, -4:].mean()  # chest wall on the left


def test_a_tall_crop_is_padded_on_the_right_and_a_wide_one_above_and_below() -> None:
    tall = pad_square(np.ones((4, 2), np.float32))
    np.testing.assert_array_equal(tall[:, :2], 1.0)
    np.testing.assert_array_equal(tall[:, 2:], 0.0)
    wide = pad_square(np.ones((2, 6), np.float32))
    assert wide.shape == (6, 6) and wide[:2].sum() == wide[4:].sum() == 0 and wide[2:4].min() == 1


@pytest.mark.parametrize("laterality", ["L", "R"])
def test_the_mask_follows_the_image_through_flip_crop_pad_and_resize(tmp_path: Path, laterality: str) -> None:
    image, region = breast(), breast_region()
    if laterality == "R":
        image, region = image[:, ::-1], region[:, ::-1]
    view, mask = prepare_view(mammo_dicom(tmp_path / "v.dcm", image, laterality), 48, png8(tmp_path / "m.png", 255 * region))
    assert mask is not None and mask.shape == (1, 48, 48) and mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    tissue = view > 0.3
    iou = (tissue & (mask == 1)).sum() / (tissue | (mask == 1)).sum()
    assert iou > 0.9
    assert mask[0, :, 0].any() and not mask[0, :, -1].any()  # chest wall on the left in the mask too


def test_a_mask_of_another_shape_fails_naming_both_files(tmp_path: Path) -> None:
    view = png16(tmp_path / "view.png", breast())
    mask = png8(tmp_path / "mask.png", np.zeros((H, W + 1)))
    with pytest.raises(SiteDataError) as err:
        prepare_view(view, 32, mask)
    assert str(view) in str(err.value) and str(mask) in str(err.value)
    assert str(tmp_path) not in err.value.public


@pytest.mark.parametrize("name", ["broken.png", "broken.dcm", "missing.png"])
def test_an_unreadable_file_fails_naming_it(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if not name.startswith("missing"):
        path.write_bytes(b"not an image at all" * 20)
    with pytest.raises(SiteDataError) as err:
        prepare_view(path, 32)
    assert str(path) in str(err.value)
    assert str(tmp_path) not in err.value.public
