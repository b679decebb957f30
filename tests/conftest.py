"""Shared fixtures: small sites made on the fly (PNG, RGB and DICOM images, manifests, site configs)."""

from __future__ import annotations

import csv
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from client.data import clear_cache

US_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"


def write_png(path: Path, array: np.ndarray) -> Path:
    """Write a uint8 array (H, W) or (H, W, 3) as PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)
    return path


def write_dicom(path: Path, array: np.ndarray, photometric: str | None = None) -> Path:
    """Write a minimal but valid ultrasound DICOM file (8-bit grayscale or RGB)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = US_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = US_IMAGE_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.PatientID = "anon"
    ds.Rows, ds.Columns = array.shape[:2]
    rgb = array.ndim == 3
    ds.SamplesPerPixel = 3 if rgb else 1
    ds.PhotometricInterpretation = photometric or ("RGB" if rgb else "MONOCHROME2")
    if rgb:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def lesion_case(rng: np.random.Generator, label: int, size: tuple[int, int] = (48, 64)) -> tuple[np.ndarray, np.ndarray]:
    """A speckle field with a dark disc whose radius grows with the label (learnable on purpose), and the disc's mask."""
    h, w = size
    img = rng.gamma(4.0, 25.0, size).clip(0, 255)
    yy, xx = np.mgrid[:h, :w]
    radius = (6 if label else 3) + rng.uniform(0, 2)
    disc = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < radius**2
    img[disc] *= 0.2
    return img.astype(np.uint8), disc


def lesion_image(rng: np.random.Generator, label: int, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    """The image of ``lesion_case``."""
    return lesion_case(rng, label, size)[0]


def make_site(
    root: Path,
    name: str,
    role: str = "train",
    n: int = 20,
    *,
    seed: int = 0,
    kind: str = "png",
    rows: Callable[[list[dict[str, str]]], None] | None = None,
    extra_yaml: str = "",
    masks: bool = False,
    data_yaml: str = "",
) -> Path:
    """Write ``root/name/{site.yaml, manifest.csv, images/}`` (and ``masks/``); ``rows`` may edit the manifest rows first.

    ``data_yaml`` goes under ``data:`` (lines indented two spaces), ``extra_yaml`` at the top level.
    """
    rng = np.random.default_rng(seed)
    folder = root / name
    records = []
    for i in range(n):
        label = i % 2
        img, disc = lesion_case(rng, label)
        if kind == "dicom":
            rel = f"images/{name}-{i:03d}.dcm"
            write_dicom(folder / rel, img)
        elif kind == "rgb":
            rel = f"images/{name}-{i:03d}.png"
            write_png(folder / rel, np.stack([img, (img * 0.9).astype(np.uint8), img], axis=-1))
        else:
            rel = f"images/{name}-{i:03d}.png"
            write_png(folder / rel, img)
        records.append({"case_id": f"{name}-{i:03d}", "label": str(label), "image": rel, "scanner": f"{name}-scanner"})
        if masks:
            records[-1]["mask"] = f"masks/{name}-{i:03d}.png"
            write_png(folder / records[-1]["mask"], disc.astype(np.uint8) * 255)
    if rows is not None:
        rows(records)
    return write_site(folder, records, role, data_yaml=data_yaml, extra_yaml=extra_yaml)


def write_site(folder: Path, records: list[dict[str, str]], role: str, *, batch_size: int = 8, data_yaml: str = "", extra_yaml: str = "") -> Path:
    """Write ``folder/manifest.csv`` from ``records`` and a ``site.yaml`` named after the folder; return the config's path."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys(k for r in records for k in r)))
        writer.writeheader()
        writer.writerows(records)
    (folder / "site.yaml").write_text(
        f"site: {folder.name}\nrole: {role}\ndata:\n  manifest: manifest.csv\n  crop: none\n{data_yaml}"
        f"compute: {{device: cpu, batch_size: {batch_size}, num_workers: 0}}\noutput_dir: output\n{extra_yaml}"
    )
    return folder / "site.yaml"


@pytest.fixture(autouse=True)
def _fresh_site_cache() -> None:
    """Every test starts without sites cached by an earlier test."""
    clear_cache()


@contextmanager
def unix_peer(path: Path, serve_one: Callable[[socket.socket], None]) -> Iterator[None]:
    """A Unix socket at ``path`` whose first connection ``serve_one`` handles in a thread (a peer that misbehaves)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def accept_one() -> None:
        conn, _ = listener.accept()
        with conn:
            serve_one(conn)

    thread = threading.Thread(target=accept_one, daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join(10)
        listener.close()


@contextmanager
def running(command: list[str], log: Path, cwd: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A process logging to ``log``; when the block ends cleanly it must stop with 0 on SIGTERM, and it is killed if it outlives the block."""
    with log.open("ab") as out:
        proc = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
