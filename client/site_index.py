"""A site's index from its manifest alone: counts per split and label and a cheap fingerprint (no image decoded).

The handshake answers from it, so describing a site costs a manifest read and one ``stat`` per
file, whatever the size of the images. Manifest-level problems (a bad row, a missing file, a
training split with one class) fail here exactly as when loading, with the row or file named.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from client.clinical import clinical_columns
from client.manifest import SPLITS, Case, read_manifest
from client.site_cache import file_stamp
from client.site_config import SiteConfig
from client.splits import assign_splits, check_training_split, fold_splits


@dataclass(frozen=True)
class SiteIndex:
    """A site's cases per split and label and a cheap fingerprint, from its manifest alone."""

    counts: dict[str, dict[int, int]]
    fingerprint: str


_READ: dict[str, tuple[str, tuple[list[Case], dict[str, str]]]] = {}  # manifest -> (what it was read with, its cases and splits)


def read_cases(config: SiteConfig) -> tuple[list[Case], dict[str, str]]:
    """The manifest's validated rows and every case's split; a training site needs both labels in training.

    Kept per manifest while the file (path, size, mtime) and the settings that read it are unchanged:
    a site answers many messages of one run (the clinical stage's, above all) from the same rows.
    """
    data = config.data
    key = json.dumps([file_stamp(data.manifest), config.role, data.val_fraction, data.test_fraction, data.split_seed, repr(sorted(data.clinical.items()))])
    held = _READ.get(str(data.manifest))
    if held is not None and held[0] == key:
        cases, splits = held[1]
        return list(cases), dict(splits)
    cases, splits = _read_cases(config)
    _READ[str(data.manifest)] = (key, (list(cases), dict(splits)))
    return cases, splits


def fold_cases(config: SiteConfig, folds: int = 0, fold: int = 0) -> tuple[list[Case], dict[str, str]]:
    """``read_cases`` with the splits of cross-validation fold ``fold`` of ``folds`` (``client/splits.fold_splits``; 0: none).

    A training site's fold must still train on both labels.
    """
    cases, splits = read_cases(config)
    if fold == 0:
        return cases, splits
    splits = fold_splits(cases, splits, folds, fold, config.data.split_seed)
    if config.trains:
        check_training_split(cases, splits, f"{config.data.manifest} (cross-validation fold {fold} of {folds})")
    return cases, splits


def _read_cases(config: SiteConfig) -> tuple[list[Case], dict[str, str]]:
    """``read_cases`` from the file."""
    cases = read_manifest(config.data.manifest)
    clinical_columns(cases, config.data.clinical, config.data.manifest)  # a value that does not fit its type names its row and column
    splits = assign_splits(cases, config.role, config.data.val_fraction, config.data.test_fraction, config.data.split_seed)
    if config.trains:
        check_training_split(cases, splits, str(config.data.manifest))
    return cases, splits


def site_index(config: SiteConfig) -> SiteIndex:
    """Validate the manifest and count the cases per split and label, decoding no image (the handshake).

    The fingerprint is a cheap index fingerprint: a digest of the case ids, labels, splits and each
    input file's path, size and mtime_ns, not of pixels as ``SiteData.fingerprint``.
    """
    cases, splits = read_cases(config)
    counts = {name: {0: 0, 1: 0} for name in SPLITS}
    digest = hashlib.sha256()
    for case in cases:
        split = splits[case.case_id]
        counts[split][case.label] += 1
        digest.update(json.dumps([case.case_id, case.label, split, file_stamp(case.image), file_stamp(case.mask), file_stamp(case.video)]).encode())
    return SiteIndex(counts, digest.hexdigest()[:16])
