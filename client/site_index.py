"""A site's index from its manifest alone: counts per split and label and a cheap fingerprint (no image decoded).

The handshake answers from it, so describing a site costs a manifest read and one ``stat`` per
file, whatever the size of the images. Manifest-level problems (a bad label, a missing file, a
training split with one class) fail here exactly as when loading, with the row or file named.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

from client.errors import SiteDataError
from client.manifest import read_manifest
from client.site_config import SiteConfig
from client.splits import assign_splits, check_training_split

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SiteIndex:
    """Manifest rows per split and label, and a fingerprint of the rows and their files' sizes and mtimes."""

    counts: dict[str, dict[int, int]]
    fingerprint: str


def site_index(config: SiteConfig) -> SiteIndex:
    """Read and check the site's manifest and split it, without decoding any image."""
    cases = read_manifest(config.data.manifest)
    splits = assign_splits(cases, config.role, config.data.val_fraction, config.data.test_fraction, config.data.split_seed)
    if config.trains:
        check_training_split(cases, splits, str(config.data.manifest))
    tally: Counter[tuple[str, int]] = Counter()
    digest = hashlib.sha256()
    for case in cases:
        split = splits[case.case_id]
        tally[(split, case.label)] += 1
        digest.update(f"{case.case_id}|{case.label}|{split}|".encode())
        for path in (case.image, case.mask):
            if path is not None:
                try:
                    stat = path.stat()
                except OSError as err:
                    raise SiteDataError(f"manifest row {case.row} (case {case.case_id}): {path}: {err.strerror}", f"manifest row {case.row}: file cannot be read") from err
                digest.update(f"{stat.st_size}|{stat.st_mtime_ns}|".encode())
    counts = {split: {label: tally[(split, label)] for label in (0, 1)} for split in SPLITS}
    return SiteIndex(counts, digest.hexdigest()[:16])
