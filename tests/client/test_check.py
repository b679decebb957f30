"""``axilla-client --check``: every unreadable file listed with its reason, the site's formats, modalities, scanners and flags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.uid import BasicTextSRStorage, JPEGLSLossless

import client.data
from client.cli import check_site
from client.cli import main as client_main
from client.data import clear_cache, load_site_data
from client.errors import SiteDataError
from client.site_config import load_site_config
from tests.client.dicom_files import header, native, save, smooth
from tests.conftest import lesion_image, make_site, write_png


def _acme(path: Path, burned_in: str = "NO") -> None:
    """Rewrite a site image as JPEG-LS from an 'Acme Sono 7' scanner with a burned-in flag."""
    pixels = lesion_image(np.random.default_rng(7), 1)
    ds = native(pixels)
    ds.compress(JPEGLSLossless, pixels)
    ds.Manufacturer, ds.ManufacturerModelName, ds.BurnedInAnnotation = "Acme", "Sono 7", burned_in
    save(path, ds)


def test_a_broken_site_lists_every_unreadable_file_and_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def bomb_row(rows: list[dict[str, str]]) -> None:
        rows[9]["image"] = "images/bomb.png"

    yaml = make_site(tmp_path, "alpha", n=12, kind="dicom", rows=bomb_row)
    images = tmp_path / "alpha" / "images"
    _acme(images / "alpha-003.dcm", burned_in="YES")
    cut = images / "alpha-005.dcm"
    cut.write_bytes(cut.read_bytes()[:-500])
    report = header((48, 64), sop=BasicTextSRStorage)
    for keyword in ("Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation"):
        delattr(report, keyword)
    save(images / "alpha-007.dcm", report)
    write_png(images / "bomb.png", smooth((64, 80)))  # 5120 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4000)  # the site's 48x64 images pass

    summary, unreadable = check_site(yaml, 32)
    assert unreadable == 3
    lines = summary.splitlines()
    assert any("row 7" in line and str(cut) in line and "truncated" in line for line in lines)
    assert any("row 9" in line and "alpha-007.dcm" in line and "Basic Text SR Storage" in line for line in lines)
    assert any("row 11" in line and "bomb.png" in line and "pixel limit" in line for line in lines)
    assert "burned-in annotation (BurnedInAnnotation YES): 1 file(s)" in summary
    assert "Acme Sono 7 (1)" in summary and "UNREADABLE: 3 file(s)" in summary
    assert "files whose header cannot be read: 1" in summary  # the bomb: even opening it is refused

    assert client_main(["--site", str(yaml), "--check"]) == 1
    out, err = capsys.readouterr()
    assert "alpha-005.dcm" in out and "bomb.png" in out and "3 unreadable file(s)" in err
    clear_cache()
    with pytest.raises(SiteDataError, match="alpha-005.dcm"):  # training stops at the first bad file
        load_site_data(load_site_config(yaml), 32)


def test_a_good_site_passes_and_shows_formats_modalities_and_scanners(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    yaml = make_site(tmp_path, "beta", n=12, kind="dicom")
    _acme(tmp_path / "beta" / "images" / "beta-002.dcm")
    assert client_main(["--site", str(yaml), "--check"]) == 0
    out = capsys.readouterr().out
    assert "file formats: DICOM Explicit VR Little Endian (11), DICOM JPEG-LS Lossless Image Compression (1)" in out
    assert "modalities: US (12)" in out and "scanners: beta-scanner (11), Acme Sono 7 (1)" in out
    assert "burned-in annotation (BurnedInAnnotation YES): 0 file(s)" in out and "UNREADABLE" not in out

    decoded: list[Path] = []
    real = client.data.decode_image
    monkeypatch.setattr(client.data, "decode_image", lambda path: (decoded.append(path), real(path))[1])
    clear_cache()
    assert check_site(yaml, 64)[1] == 0 and len(decoded) == 12  # another size than main's default: decoded again
    clear_cache()
    assert check_site(yaml, 64)[1] == 0 and len(decoded) == 12  # the site cache serves the next check


def test_check_decodes_every_cine_loop_and_lists_a_broken_one(tmp_path: Path) -> None:
    from tests.cine_sites import make_cine_site

    yaml = make_cine_site(tmp_path, "cine", n=6, storage="dicom", frames=(6, 8))
    summary, unreadable = check_site(yaml, 24)
    assert unreadable == 0 and "cine loops: 6 (6 readable), " in summary and "frame time: 40.0 ms (6)" in summary
    loop = tmp_path / "cine" / "loops" / "cine-002.dcm"
    loop.write_bytes(loop.read_bytes()[:-300])  # a truncated loop: its still still reads, the loop does not
    clear_cache()
    summary, unreadable = check_site(yaml, 24)
    assert unreadable == 1 and "cine loops: 6 (5 readable)" in summary
    assert "manifest row 4 (case cine-002)" in summary and "cine-002.dcm" in summary
