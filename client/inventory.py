"""A cheap header inventory of a site's images for ``axilla-client --check``: formats, scanners, flags; no pixel decoded.

DICOM headers are read without their pixel data, rasters are opened by Pillow without loading.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from client.dicom import burned_in_annotation, number_of_frames, read_header, syntax_name, transfer_syntax
from client.errors import SiteDataError
from client.images import is_dicom, open_raster
from client.manifest import Case


@dataclass(frozen=True)
class ImageFacts:
    """What an image file's header says: format, size (W, H), frames, and for DICOM its encoding, modality, scanner and flags."""

    format: str  # PNG, JPEG, BMP, TIFF, DICOM (or another format Pillow names)
    size: tuple[int, int]
    frames: int = 1
    transfer_syntax: str = ""  # DICOM only, by name
    photometric: str = ""  # DICOM's PhotometricInterpretation, or the raster's Pillow mode
    modality: str = ""
    manufacturer: str = ""
    model: str = ""
    burned_in: str = ""  # DICOM BurnedInAnnotation: YES, NO, or '' when absent

    @property
    def scanner(self) -> str:
        """Manufacturer and model, '' when the file names neither."""
        return " ".join(p for p in (self.manufacturer, self.model) if p)

    @property
    def encoding(self) -> str:
        """The file format, with the transfer syntax for DICOM."""
        return f"{self.format} {self.transfer_syntax}".strip()


def describe_image(path: Path) -> ImageFacts:
    """The facts in an image's header (DICOM read before its pixel data; a raster opened, not loaded)."""
    path = Path(path)
    if not is_dicom(path):
        with open_raster(path) as img:
            return ImageFacts(str(img.format or path.suffix.lstrip(".").upper()), img.size, int(getattr(img, "n_frames", 1)), photometric=img.mode)
    ds = read_header(path)
    return ImageFacts(
        format="DICOM",
        size=(int(ds.get("Columns", 0) or 0), int(ds.get("Rows", 0) or 0)),
        frames=number_of_frames(ds),
        transfer_syntax=syntax_name(transfer_syntax(ds)),
        photometric=str(ds.get("PhotometricInterpretation", "") or ""),
        modality=str(ds.get("Modality", "") or ""),
        manufacturer=str(ds.get("Manufacturer", "") or "").strip(),
        model=str(ds.get("ManufacturerModelName", "") or "").strip(),
        burned_in=burned_in_annotation(ds),
    )


@dataclass
class Inventory:
    """Counts over a site's image files: encodings, modalities, scanners, colour models, multi-frame and burned-in files."""

    encodings: Counter[str] = field(default_factory=Counter)
    modalities: Counter[str] = field(default_factory=Counter)
    scanners: Counter[str] = field(default_factory=Counter)
    photometric: Counter[str] = field(default_factory=Counter)
    multi_frame: int = 0
    burned_in: int = 0
    unreadable_headers: int = 0

    def add(self, facts: ImageFacts, manifest_scanner: str) -> None:
        """Count one file; its scanner is the DICOM manufacturer and model, else the manifest's scanner column."""
        self.encodings[facts.encoding] += 1
        if facts.photometric:
            self.photometric[facts.photometric] += 1
        if facts.modality:
            self.modalities[facts.modality] += 1
        if scanner := facts.scanner or manifest_scanner:
            self.scanners[scanner] += 1
        self.multi_frame += facts.frames > 1
        self.burned_in += facts.burned_in == "YES"

    def lines(self) -> list[str]:
        """The inventory as summary lines."""
        lines = [f"  file formats: {_counts(self.encodings)}", f"  photometric / colour modes: {_counts(self.photometric)}"]
        lines.append(f"  modalities: {_counts(self.modalities) or 'none named (no DICOM Modality)'}")
        if self.scanners:
            lines.append(f"  scanners: {_counts(self.scanners)}")
        if self.multi_frame:
            lines.append(f"  multi-frame files: {self.multi_frame} (one frame read: the representative frame, else the middle one)")
        lines.append(f"  burned-in annotation (BurnedInAnnotation YES): {self.burned_in} file(s)")
        if self.unreadable_headers:
            lines.append(f"  files whose header cannot be read: {self.unreadable_headers} (listed as unreadable below)")
        return lines


def site_inventory(cases: Iterable[Case]) -> Inventory:
    """The inventory of the cases' image files; a file whose header cannot be read is only counted (decoding names why)."""
    inventory = Inventory()
    for case in cases:
        if case.image is None:
            continue
        try:
            inventory.add(describe_image(case.image), case.scanner)
        except SiteDataError:
            inventory.unreadable_headers += 1
    return inventory


def _counts(counter: Counter[str]) -> str:
    """``a (3), b (1)``, most common first."""
    return ", ".join(f"{k} ({n})" for k, n in counter.most_common())
