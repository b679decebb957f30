"""What a public-dataset adapter returns: the dataset's cases, grouped by patient, in axilla's terms.

An adapter (one module per dataset in this package) reads a folder the user downloaded, in its
published layout, and returns a ``PublicDataset``; it never copies or changes the user's files.
The partitioners (``simulation/public/partition.py``) split its cases into sites and the writer
(``simulation/public/writer.py``) writes each site's ``site.yaml`` and ``manifest.csv``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class PublicDataError(ValueError):
    """A downloaded dataset's folder is not in its published layout; the message names the file, folder or column."""


@dataclass(frozen=True)
class Endpoint:
    """What the binary label means: the report names it (lesion malignancy is not metastasis)."""

    name: str  # e.g. "lesion malignancy", "axillary lymph-node status"
    positive: str  # the class labelled 1, e.g. "malignant", "N+"
    negative: str  # the class labelled 0, e.g. "benign", "N0"


MALIGNANCY = Endpoint("lesion malignancy", "malignant", "benign")
LYMPH_NODE_STATUS = Endpoint("axillary lymph-node status", "N+", "N0")


@dataclass(frozen=True)
class PublicImage:
    """One image of a case and its lesion masks (several are merged, by logical OR of non-zero pixels, into one)."""

    path: Path
    masks: tuple[Path, ...] = ()


@dataclass(frozen=True)
class PublicCase:
    """One patient (or, where the dataset publishes no patient id, one image) with all its images.

    ``case_id`` is unique within the dataset and holds only letters, digits, '_', '-' and '.'.
    ``center`` is the natural center (the dataset's name, or a column's value such as a scanner).
    ``split`` is the dataset's official split (train/val/test) where it publishes one, else None.
    ``columns`` are extra manifest columns: clinical values under the manifest's clinical names
    (``client/manifest.py``: age, tumor_size_mm, er, pr, her2, ki67, histologic_type,
    histologic_grade) and the dataset's own descriptors (e.g. ``birads``, ``aln_status``).
    """

    case_id: str
    label: int
    images: tuple[PublicImage, ...]
    center: str
    split: str | None = None
    columns: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PublicDataset:
    """A dataset read by its adapter; ``notes`` say what was left out and why (e.g. normal images)."""

    name: str
    endpoint: Endpoint
    cases: list[PublicCase]
    scanner: str = ""  # the scanner model where the dataset names one for all its images
    modality: str = "image"  # "pathology": the images are H&E micrographs, written to the manifest's pathology column too
    crop: str = "auto"  # the site config's 'data.crop': "none" for images without scanner UI (patches, thumbnails)
    notes: list[str] = field(default_factory=list)
