"""Cine loops: every frame of a multi-frame DICOM or a frame folder, the frame time, and the segment-sampling rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.pixels import convert_color_space
from pydicom.uid import JPEGBaseline8Bit, RLELossless

from client.cine import natural_key, read_cine, segment_indices
from client.errors import SiteDataError
from tests.client.dicom_files import encapsulated, header, native, save, smooth

GRAY = np.stack([smooth((24, 32), seed=i) for i in range(6)]).astype(np.uint8)  # 6 frames, each its own texture
RGB = np.stack([smooth((24, 32, 3), seed=i) for i in range(4)]).astype(np.uint8)


def test_evaluation_takes_each_segments_middle_frame_for_short_and_long_loops() -> None:
    assert segment_indices(16, 16).tolist() == list(range(16))  # as long as the clip: every frame
    assert segment_indices(48, 16).tolist() == list(range(1, 48, 3))  # segments of 3: their middles
    # 10 frames in 4 segments [0, 2.5), [2.5, 5), [5, 7.5), [7.5, 10): frames 0-2, 3-4, 5-7, 8-9
    assert segment_indices(10, 4).tolist() == [1, 3, 6, 8]
    assert segment_indices(1000, 16)[[0, -1]].tolist() == [31, 968]


def test_training_draws_one_frame_inside_each_segment_and_reaches_all_of_them() -> None:
    rng = np.random.default_rng(0)
    draws = np.stack([segment_indices(10, 4, rng) for _ in range(400)])
    segments = [range(0, 3), range(3, 5), range(5, 8), range(8, 10)]
    for k, segment in enumerate(segments):
        assert set(draws[:, k].tolist()) == set(segment)
    assert (np.diff(draws, axis=1) > 0).all()  # always in temporal order


def test_a_loop_shorter_than_the_clip_or_without_frames_is_refused() -> None:
    with pytest.raises(ValueError, match=r"3 frame\(s\), fewer than the clip length T = 16"):
        segment_indices(3, 16)
    with pytest.raises(ValueError, match=r"0 frame\(s\)"):
        segment_indices(0, 4)


def test_grayscale_rgb_and_ybr_loops_read_into_frames_by_height_by_width(tmp_path: Path) -> None:
    ds = native(GRAY, frames=True)
    ds.FrameTime = 33.3
    cine = read_cine(save(tmp_path / "gray.dcm", ds))
    assert cine.frames.shape == (6, 24, 32) and cine.frame_time_ms == pytest.approx(33.3)
    np.testing.assert_array_equal(cine.frames, GRAY)
    rgb = native(RGB, frames=True)
    rgb.CineRate = 25
    cine = read_cine(save(tmp_path / "rgb.dcm", rgb))
    assert cine.frames.shape == (4, 24, 32, 3) and cine.frame_time_ms == pytest.approx(40.0)
    np.testing.assert_array_equal(cine.frames, RGB)
    ybr = native(np.stack([convert_color_space(f, "RGB", "YBR_FULL") for f in RGB]), "YBR_FULL", frames=True)
    ybr.FrameTimeVector = [0, 20, 20, 20]
    cine = read_cine(save(tmp_path / "ybr.dcm", ybr))
    assert cine.frames.shape == (4, 24, 32, 3) and cine.frame_time_ms == pytest.approx(20.0)
    np.testing.assert_allclose(cine.frames.astype(float), RGB.astype(float), atol=2)  # YBR_FULL -> RGB rounding


def test_compressed_loops_decode_every_frame(tmp_path: Path) -> None:
    rle = native(GRAY, frames=True)
    rle.compress(RLELossless, GRAY)
    np.testing.assert_array_equal(read_cine(save(tmp_path / "rle.dcm", rle)).frames, GRAY)
    fragments = []
    for frame in GRAY:
        path = tmp_path / "frame.jpg"
        Image.fromarray(frame).save(path, "JPEG", quality=95)
        fragments.append(path.read_bytes())
    jpeg = encapsulated(header(GRAY.shape[1:], frames=len(GRAY)), fragments, JPEGBaseline8Bit)
    cine = read_cine(save(tmp_path / "jpeg.dcm", jpeg))
    assert cine.frames.shape == GRAY.shape and cine.frame_time_ms is None
    assert np.abs(cine.frames.astype(float) - GRAY).mean() < 3  # lossy, but each frame is its own


def test_a_frame_folder_reads_in_natural_order_and_a_mismatched_frame_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "loop"
    folder.mkdir()
    for i in (1, 2, 10):  # written out of order; f10 must come last
        Image.fromarray(GRAY[i % 6]).save(folder / f"f{i}.png")
    (folder / "notes.txt").write_text("not a frame")
    cine = read_cine(folder)
    assert cine.frames.shape == (3, 24, 32) and cine.frame_time_ms is None
    np.testing.assert_array_equal(cine.frames, GRAY[[1, 2, 4]])
    assert sorted(["f10", "f2", "f1"], key=natural_key) == ["f1", "f2", "f10"]
    Image.fromarray(GRAY[0][:20]).save(folder / "f11.png")
    with pytest.raises(SiteDataError, match=r"frame f11.png is \(20, 32\), unlike the first frame's \(24, 32\)"):
        read_cine(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SiteDataError, match="no frame images"):
        read_cine(empty)
