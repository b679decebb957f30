"""Write a rendered loop as a DICOM Ultrasound Multi-frame Image Storage file (native, uncompressed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.tag import Tag
from pydicom.uid import UltrasoundMultiFrameImageStorage

from simulation.phantom.dicom import set_pixels, us_dataset
from simulation.phantom.presets import Scanner


def write_cine_dicom(frames: np.ndarray, path: Path, *, frame_time_ms: float, key_frame: int, scanner: Scanner,
                     site: str, seed: int, case_id: str, age: int, pixel_mm: float,
                     fov_box: tuple[int, int, int, int]) -> None:
    """Write (frames, rows, columns) uint8 pixels as one multi-frame ultrasound cine loop.

    Args:
        frames: the loop's grayscale frames.
        path: the file to write.
        frame_time_ms: the time between frames (FrameTime, its CineRate and display rate).
        key_frame: the 0-based frame shown first (RepresentativeFrameNumber is 1-based).
        scanner: the site's scanner (manufacturer, model, probe).
        site: the site's name (institution and UID entropy).
        seed: the cohort seed (UID entropy).
        case_id: the case (UID entropy; not stored in clear).
        age: the patient's age in years.
        pixel_mm: millimetres per pixel (for the ultrasound region calibration).
        fov_box: the field of view's bounding box (x0, y0, x1, y1).
    """
    if frames.ndim != 3 or frames.shape[0] < 2:
        raise ValueError(f"expected (frames >= 2, rows, columns) pixels, got {frames.shape}")
    ds = us_dataset(UltrasoundMultiFrameImageStorage, scanner=scanner, site=site, seed=seed, case_id=case_id,
                    age=age, series="Breast lesion cine sweep")
    set_pixels(ds, frames, pixel_mm, fov_box)
    rate = round(1000.0 / frame_time_ms)
    ds.FrameTime = f"{frame_time_ms:.1f}"
    ds.FrameIncrementPointer = Tag("FrameTime")
    ds.CineRate = rate
    ds.RecommendedDisplayFrameRate = rate
    ds.ActualFrameDuration = int(round(frame_time_ms))
    ds.FrameDelay = "0.0"
    ds.StartTrim = 1
    ds.StopTrim = int(frames.shape[0])
    ds.PreferredPlaybackSequencing = 0
    ds.RepresentativeFrameNumber = key_frame + 1
    ds.save_as(path, enforce_file_format=True)
