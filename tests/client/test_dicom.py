"""DICOM as scanners write it: every photometric interpretation and transfer syntax, frames, LUTs, regions and broken files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileDataset
from pydicom.pixels import apply_windowing, convert_color_space
from pydicom.uid import (
    UID,
    BasicTextSRStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    GrayscaleSoftcopyPresentationStateStorage,
    ImplicitVRLittleEndian,
    JPEG2000,
    JPEG2000Lossless,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    MPEG4HP41,
    RLELossless,
)

import client.dicom
from client.data import read_case
from client.dicom import us_region
from client.errors import SiteDataError
from client.images import decode_image, read_image
from client.inventory import describe_image
from client.manifest import Case
from client.transforms import ui_crop_box
from tests.client.dicom_files import US_MULTI_FRAME, encapsulated, header, jpeg8, jpeg_baseline, native, save, smooth
from tests.conftest import write_png

LUMA = np.array([0.299, 0.587, 0.114])
GRAY8, GRAY12, GRAY16 = smooth((32, 40)), smooth((32, 40), 4095, seed=1), smooth((32, 40), 65535, seed=2)
RGB = smooth((32, 40, 3), seed=3)


def _refused(path: Path, *words: str) -> SiteDataError:
    """The error reading ``path`` raises; its message names the file and ``words``, its public text has no path."""
    with pytest.raises(SiteDataError) as caught:
        read_image(path)
    err = caught.value
    assert str(path) in str(err) and all(w in str(err) for w in words), str(err)
    assert str(path.parent) not in err.public and path.name not in err.public
    return err


@pytest.mark.parametrize(
    ("syntax", "values", "bits"),
    [
        (ExplicitVRLittleEndian, GRAY8, 8),
        (ImplicitVRLittleEndian, GRAY8, 8),
        (ExplicitVRBigEndian, GRAY12, 12),
        (DeflatedExplicitVRLittleEndian, GRAY16, 16),
    ],
)
def test_native_syntaxes_read_exactly(tmp_path: Path, syntax: str, values: np.ndarray, bits: int) -> None:
    pixels = read_image(save(tmp_path / "n.dcm", native(values, bits=bits), syntax))
    assert pixels.dtype == np.float32 and pixels.shape == (32, 40)
    np.testing.assert_array_equal(pixels, values)


@pytest.mark.parametrize(
    ("syntax", "values", "bits"),
    [(RLELossless, GRAY16, 16), (JPEGLSLossless, GRAY12, 12), (JPEG2000Lossless, GRAY12, 12), (JPEG2000Lossless, GRAY8, 8)],
)
def test_lossless_codecs_read_exactly(tmp_path: Path, syntax: str, values: np.ndarray, bits: int) -> None:
    ds = native(values, bits=bits)
    ds.compress(syntax, values.astype(np.uint16 if bits > 8 else np.uint8))
    np.testing.assert_array_equal(read_image(save(tmp_path / "c.dcm", ds)), values)


@pytest.mark.parametrize("syntax", [JPEGLSLossless, JPEG2000Lossless, JPEGLosslessSV1])
def test_the_declared_pylibjpeg_plugins_decode_jpeg_ls_jpeg_2000_and_lossless_jpeg(tmp_path: Path, syntax: str) -> None:
    """The runtime decoders (pyjpegls and Pillow are not asked): libjpeg for JPEG and JPEG-LS, openjpeg for JPEG 2000."""
    import libjpeg  # noqa: PLC0415  pylibjpeg-libjpeg
    import openjpeg  # noqa: PLC0415  pylibjpeg-openjpeg
    import pylibjpeg  # noqa: PLC0415
    from pydicom.pixels import pixel_array  # noqa: PLC0415

    assert all(module.__version__ for module in (libjpeg, openjpeg, pylibjpeg))
    if syntax == JPEGLosslessSV1:
        path = save(tmp_path / "p.dcm", jpeg8(GRAY8, syntax, 8, lossless=True, predictor=1))
    else:
        ds = native(GRAY12, bits=12)
        ds.compress(syntax, GRAY12.astype(np.uint16))
        path = save(tmp_path / "p.dcm", ds)
    expected = GRAY8 if syntax == JPEGLosslessSV1 else GRAY12
    np.testing.assert_array_equal(pixel_array(path, decoding_plugin="pylibjpeg"), expected)


@pytest.mark.parametrize(
    ("syntax", "values", "bits", "predictor"),
    [(JPEGLosslessSV1, GRAY16, 16, 1), (JPEGLosslessSV1, GRAY8, 8, 1), (JPEGLossless, GRAY12, 12, 6)],
)
def test_jpeg_lossless_process_14_and_sv1_read_exactly(tmp_path: Path, syntax: str, values: np.ndarray, bits: int, predictor: int) -> None:
    path = save(tmp_path / "l.dcm", jpeg8(values, syntax, bits, lossless=True, predictor=predictor))
    np.testing.assert_array_equal(read_image(path), values)


def _near_lossless(values: np.ndarray) -> FileDataset:
    ds = native(values)
    ds.compress(JPEGLSNearLossless, values.astype(np.uint8), jls_error=3)
    return ds


def _j2k_lossy(values: np.ndarray) -> FileDataset:
    ds = native(values)
    ds.compress(JPEG2000, values.astype(np.uint8), j2k_cr=[8])
    return ds


@pytest.mark.parametrize(
    ("make", "values", "max_error"),
    [
        (lambda v: jpeg_baseline(v), GRAY8, 6),
        (lambda v: jpeg8(v, JPEGExtended12Bit, 12, lossless=False), GRAY12, 40),
        (_near_lossless, GRAY8, 3),
        (_j2k_lossy, GRAY8, 48),
    ],
    ids=["jpeg-baseline", "jpeg-extended-12bit", "jpeg-ls-near-lossless", "jpeg2000-lossy"],
)
def test_lossy_codecs_read_within_tolerance(tmp_path: Path, make: Callable[[np.ndarray], FileDataset], values: np.ndarray, max_error: float) -> None:
    pixels = read_image(save(tmp_path / "y.dcm", make(values)))
    error = np.abs(pixels - values)
    assert pixels.shape == (32, 40) and error.max() <= max_error and error.mean() < max_error * 0.6
    assert error.max() > 0  # lossy indeed


def test_colour_photometrics_become_luminance(tmp_path: Path) -> None:
    expected = RGB @ LUMA
    np.testing.assert_allclose(read_image(save(tmp_path / "rgb.dcm", native(RGB))), expected, rtol=1e-5)
    rle = native(RGB)
    rle.compress(RLELossless, RGB.astype(np.uint8))
    np.testing.assert_allclose(read_image(save(tmp_path / "rle.dcm", rle)), expected, rtol=1e-5)
    ybr = convert_color_space(RGB.astype(np.uint8), "RGB", "YBR_FULL")
    np.testing.assert_allclose(read_image(save(tmp_path / "ybr.dcm", native(ybr, "YBR_FULL"))), expected, atol=1.5)
    baseline = read_image(save(tmp_path / "jpeg.dcm", jpeg_baseline(RGB)))  # YBR_FULL_422, encoded 4:2:2
    assert np.abs(baseline - expected).max() < 6


def test_native_ybr_full_422_is_upsampled_and_converted(tmp_path: Path) -> None:
    ybr = convert_color_space(RGB.astype(np.uint8), "RGB", "YBR_FULL").astype(np.int64)
    ybr[:, 1::2, 1:] = ybr[:, 0::2, 1:]  # one chroma pair per two pixels, as 4:2:2 stores it
    packed = np.stack([ybr[:, 0::2, 0], ybr[:, 1::2, 0], ybr[:, 0::2, 1], ybr[:, 0::2, 2]], axis=-1)  # Y Y Cb Cr
    ds = header((32, 40, 3), "YBR_FULL_422")
    ds.PixelData = packed.astype(np.uint8).tobytes()
    expected = convert_color_space(ybr.astype(np.uint8), "YBR_FULL", "RGB").astype(np.float64) @ LUMA
    np.testing.assert_allclose(read_image(save(tmp_path / "422.dcm", ds)), expected, atol=1e-3)


def test_palette_colour_goes_through_its_palette(tmp_path: Path) -> None:
    index = (GRAY8 // 16).astype(np.uint8)  # 16 palette entries used
    lut = np.stack([np.arange(256) * 257, (255 - np.arange(256)) * 257, np.full(256, 30000)], axis=-1).astype(np.uint16)
    ds = native(index, "PALETTE COLOR")
    for channel, name in enumerate(("Red", "Green", "Blue")):
        setattr(ds, f"{name}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{name}PaletteColorLookupTableData", lut[:, channel].tobytes())
    np.testing.assert_allclose(read_image(save(tmp_path / "pal.dcm", ds)), lut[index].astype(np.float64) @ LUMA, rtol=1e-5)


def _frames(tmp_path: Path, representative: int | None, compress: bool = False) -> Path:
    """Five RGB frames; frame i is filled with 10 * (i + 1)."""
    frames = np.stack([np.full((32, 40, 3), 10 * (i + 1), dtype=np.uint8) for i in range(5)])
    ds = native(frames, frames=True)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = US_MULTI_FRAME
    if compress:
        ds.compress(RLELossless, frames)
    if representative is not None:
        ds.RepresentativeFrameNumber = representative
    return save(tmp_path / f"cine-{representative}-{compress}.dcm", ds)


def test_multi_frame_reads_the_representative_frame_else_the_middle_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int | None] = []
    real = client.dicom.pixel_array

    def spy(src: object, **kwargs: object) -> np.ndarray:
        asked.append(kwargs.get("index"))  # type: ignore[arg-type]
        return real(src, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(client.dicom, "pixel_array", spy)
    assert read_image(_frames(tmp_path, 2)).mean() == pytest.approx(20)  # 1-based: the second frame
    assert read_image(_frames(tmp_path, None)).mean() == pytest.approx(30)  # middle: index 5 // 2
    assert read_image(_frames(tmp_path, 9)).mean() == pytest.approx(30)  # out of range: the middle one
    assert read_image(_frames(tmp_path, 5, compress=True)).mean() == pytest.approx(50)
    assert asked == [1, 2, 2, 4]  # one frame decoded each time, never all


def _mono1(stored: np.ndarray, bits: int = 12) -> FileDataset:
    return native(stored, "MONOCHROME1", bits=bits)


def test_monochrome1_inverts_over_the_stored_range_not_the_image_maximum(tmp_path: Path) -> None:
    low = np.full((32, 40), 100, dtype=np.uint16)
    low[0, 0] = 500
    high = low.copy()
    high[0, 0] = 4000  # another maximum, same BitsStored
    a = read_image(save(tmp_path / "a.dcm", _mono1(low)))
    b = read_image(save(tmp_path / "b.dcm", _mono1(high)))
    assert a[5, 5] == b[5, 5] == 4095 - 100 and a[0, 0] == 4095 - 500 and b[0, 0] == 4095 - 4000
    signed = native(np.full((32, 40), -20, dtype=np.int16), "MONOCHROME1", bits=12, signed=True)
    assert read_image(save(tmp_path / "s.dcm", signed))[3, 3] == -2048 + 2047 + 20


def test_monochrome1_with_rescale_and_window_uses_their_output_range(tmp_path: Path) -> None:
    stored = np.full((32, 40), 100, dtype=np.uint16)
    stored[0, :3] = [0, 4095, 1000]
    rescaled = _mono1(stored)
    rescaled.RescaleSlope, rescaled.RescaleIntercept = 2, -100  # modality range [-100, 8090]
    out = read_image(save(tmp_path / "r.dcm", rescaled))
    assert out[5, 5] == -100 + 8090 - (2 * 100 - 100) and out[0, 0] == 8090 and out[0, 1] == -100
    windowed = _mono1(stored)
    windowed.WindowCenter, windowed.WindowWidth = 1000, 1000
    out = read_image(save(tmp_path / "w.dcm", windowed))
    assert out[0, 0] == 4095 and out[0, 1] == 0  # below the window: black before inversion, white after
    assert out[0, 2] == pytest.approx(4095 - apply_windowing(np.array([1000.0]), windowed)[0], abs=1e-3)
    windowed.WindowWidth = 0  # not a window: refused, named
    _refused(save(tmp_path / "w0.dcm", windowed), "LUT", "Window Width")


def test_monochrome2_applies_modality_then_voi_lut(tmp_path: Path) -> None:
    stored = (GRAY12 // 16).astype(np.uint16)  # 0..255
    ds = native(stored, bits=12)
    ds.RescaleSlope, ds.RescaleIntercept = 1, 10
    item = Dataset()
    item.LUTDescriptor = [256, 10, 8]  # 256 entries from value 10, 8 bits out
    item.add_new("LUTData", "US", list(range(255, -1, -1)))
    ds.VOILUTSequence = [item]
    np.testing.assert_array_equal(read_image(save(tmp_path / "voi.dcm", ds)), 255 - stored)
    mono1 = native(stored, "MONOCHROME1", bits=12)
    mono1.RescaleSlope, mono1.RescaleIntercept = 1, 10
    mono1.VOILUTSequence = [item]
    np.testing.assert_array_equal(read_image(save(tmp_path / "voi1.dcm", mono1)), stored + 0.0)  # inverted over [0, 255]


def _region(x0: int, y0: int, x1: int, y1: int, data_type: int = 1, spatial: int = 1) -> Dataset:
    region = Dataset()
    region.RegionSpatialFormat, region.RegionDataType = spatial, data_type
    region.RegionLocationMinX0, region.RegionLocationMinY0, region.RegionLocationMaxX1, region.RegionLocationMaxY1 = x0, y0, x1, y1
    return region


def test_us_region_prefers_2d_tissue_regions_and_joins_them() -> None:
    ds = Dataset()
    ds.SequenceOfUltrasoundRegions = [_region(0, 0, 39, 5, spatial=3), _region(4, 6, 19, 20), _region(21, 8, 30, 25), _region(0, 26, 39, 31, data_type=3)]
    assert us_region(ds, (40, 32)) == (4, 6, 31, 26)  # tissue only; inclusive corners, exclusive ends
    ds.SequenceOfUltrasoundRegions = [_region(0, 0, 39, 5, spatial=3), _region(2, 20, 60, 40, data_type=3)]
    assert us_region(ds, (40, 32)) == (2, 20, 40, 32)  # no tissue: any 2D region, clipped to the image
    ds.SequenceOfUltrasoundRegions = [_region(0, 0, 39, 5, spatial=3)]
    assert us_region(ds, (40, 32)) is None and us_region(Dataset(), (40, 32)) is None


def test_auto_crop_uses_the_dicom_region_in_read_case(tmp_path: Path) -> None:
    ds = native(np.full((32, 40), 200, dtype=np.uint8))  # uniform: the heuristic keeps the whole image
    ds.SequenceOfUltrasoundRegions = [_region(2, 3, 30, 25)]
    path = save(tmp_path / "us.dcm", ds)
    mask = write_png(tmp_path / "mask.png", np.full((32, 40), 255, dtype=np.uint8))
    assert decode_image(path).region == (2, 3, 31, 26)
    case = Case("c1", 0, 2, image=path, mask=mask)
    pixels, cropped_mask, shape = read_case(case, "auto")
    assert pixels.shape == (23, 29) and cropped_mask is not None and cropped_mask.shape == (23, 29) and shape == (32, 40)
    assert read_case(case, "none")[0].shape == (32, 40)
    plain = save(tmp_path / "plain.dcm", native(GRAY8))  # no region: the heuristic decides
    x0, y0, x1, y1 = ui_crop_box(read_image(plain))
    assert read_case(Case("c2", 0, 3, image=plain), "auto")[0].shape == (y1 - y0, x1 - x0)


def _no_image(sop: str) -> FileDataset:
    ds = header((32, 40), sop=sop)
    for keyword in ("Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation"):
        delattr(ds, keyword)
    ds.Modality = "SR" if sop == BasicTextSRStorage else "PR"
    return ds


@pytest.mark.parametrize("sop", [BasicTextSRStorage, GrayscaleSoftcopyPresentationStateStorage])
def test_a_dicom_without_an_image_names_its_sop_class(tmp_path: Path, sop: str) -> None:
    err = _refused(save(tmp_path / "doc.dcm", _no_image(sop)), "no image", UID(sop).name)
    assert UID(sop).name in err.public


@pytest.mark.filterwarnings("ignore:Expected explicit VR:UserWarning")  # pydicom guesses an unknown syntax's VR encoding
@pytest.mark.parametrize(("syntax", "named"), [(MPEG4HP41, "MPEG-4 AVC/H.264"), ("1.2.826.0.1.3680043.9999.7", "unknown or private")])
def test_an_undecodable_transfer_syntax_is_named(tmp_path: Path, syntax: str, named: str) -> None:
    ds = encapsulated(header((32, 40)), [b"\x00\x00\x00\x01" + bytes(64)], syntax)
    err = _refused(save(tmp_path / "video.dcm", ds), named, "no installed decoder")
    assert named in err.public


def test_a_file_cut_in_its_header_or_pixel_data_is_named(tmp_path: Path) -> None:
    blob = save(tmp_path / "whole.dcm", native(GRAY8)).read_bytes()
    for cut in (100, 150, 300, len(blob) - 32 * 40 - 14):  # before 'DICM', in the file meta, in the dataset, in the pixel element header
        (tmp_path / f"head-{cut}.dcm").write_bytes(blob[:cut])
        _refused(tmp_path / f"head-{cut}.dcm", "DICOM")
    (tmp_path / "head.dcm").write_bytes(blob[:300])
    assert "truncated" in _refused(tmp_path / "head.dcm", "truncated", "header").public
    (tmp_path / "pixels.dcm").write_bytes(blob[:-200])
    _refused(tmp_path / "pixels.dcm", "pixel data", "truncated")
    ds = native(GRAY12, bits=12)
    ds.compress(JPEGLSLossless, GRAY12.astype(np.uint16))
    blob = save(tmp_path / "jls.dcm", ds).read_bytes()
    (tmp_path / "jls-cut.dcm").write_bytes(blob[: len(blob) - 300])
    _refused(tmp_path / "jls-cut.dcm", "pixel data", "truncated")


def test_one_pixel_limit_for_dicom_and_rasters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gray = save(tmp_path / "g.dcm", native(GRAY8))  # 1280 pixels
    colour = save(tmp_path / "c.dcm", native(smooth((20, 20, 3))))  # 400 pixels x 3 samples
    png = write_png(tmp_path / "bomb.png", GRAY8)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # read at call time
    assert "1280" in _refused(gray, "1280", "limit").public
    _refused(colour, "1200", "limit")
    _refused(png, "limit")  # Pillow's warning zone (over the limit, under twice it) fails too
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    _refused(png, "limit")  # Pillow's DecompressionBombError
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert read_image(gray).shape == read_image(png).shape == (32, 40)


def test_describe_image_reads_headers_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = native(np.stack([GRAY8] * 3), frames=True)
    ds.compress(RLELossless, np.stack([GRAY8] * 3).astype(np.uint8))
    ds.Manufacturer, ds.ManufacturerModelName, ds.BurnedInAnnotation = "Acme", "Sono 7", "YES"
    path = save(tmp_path / "cine.dcm", ds)

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded pixels")

    monkeypatch.setattr(client.dicom, "pixel_array", no_decoding)
    facts = describe_image(path)
    assert (facts.format, facts.transfer_syntax, facts.frames, facts.size) == ("DICOM", "RLE Lossless", 3, (40, 32))
    assert (facts.photometric, facts.modality, facts.scanner, facts.burned_in) == ("MONOCHROME2", "US", "Acme Sono 7", "YES")
    png = describe_image(write_png(tmp_path / "p.png", GRAY8))
    assert (png.format, png.size, png.encoding, png.scanner) == ("PNG", (40, 32), "PNG", "")
