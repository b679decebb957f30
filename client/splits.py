"""Deterministic, stratified, case-level train/val/test splits."""

from __future__ import annotations

import hashlib
from collections import Counter

from client.errors import SiteDataError
from client.manifest import Case


def assign_splits(
    cases: list[Case], role: str, val_fraction: float, test_fraction: float, seed: int = 0
) -> dict[str, str]:
    """Map every case id to a split.

    External sites put every case in ``test``. A manifest ``split`` column is used as given.
    Otherwise cases (never images) are ordered by a seeded hash within each label and cut
    into test, val and train, so the split is stratified and stable across machines.
    """
    ids = list(dict.fromkeys(c.case_id for c in cases))
    if role == "external":
        return {case_id: "test" for case_id in ids}
    given = {c.case_id: c.split for c in cases}
    if all(given[i] is not None for i in ids):
        return {i: str(given[i]) for i in ids}
    if any(given[i] is not None for i in ids):
        missing = next(c for c in cases if c.split is None)
        raise SiteDataError(
            f"manifest row {missing.row} (case {missing.case_id}): 'split' is empty while other rows set it",
            f"manifest row {missing.row}: empty split",
        )
    label = {c.case_id: c.label for c in cases}
    out: dict[str, str] = {}
    for cls in (0, 1):
        members = sorted((i for i in ids if label[i] == cls), key=lambda i: _hash(seed, i))
        n_test = round(len(members) * test_fraction)
        n_val = round(len(members) * val_fraction)
        for k, case_id in enumerate(members):
            out[case_id] = "test" if k < n_test else "val" if k < n_test + n_val else "train"
    return out


def fold_splits(cases: list[Case], splits: dict[str, str], folds: int, fold: int, seed: int = 0) -> dict[str, str]:
    """The splits of cross-validation fold ``fold`` of ``folds``: the site's non-test cases cut into stratified folds.

    Within each label, the train and val cases are ordered by a seeded hash of their id and dealt
    to folds in turn, so every fold holds about 1/``folds`` of each class; fold ``fold``'s cases are
    ``val``, the others ``train``. Test cases (and an external site's) stay ``test``. ``fold`` 0: unchanged.
    """
    if fold == 0:
        return dict(splits)
    label = {c.case_id: c.label for c in cases}
    out = {case_id: "test" for case_id, split in splits.items() if split == "test"}
    dealt = 0  # the deal goes on across the classes, so odd class sizes do not pile up in the first folds
    for cls in (0, 1):
        members = sorted((i for i, split in splits.items() if split != "test" and label[i] == cls), key=lambda i: _hash(seed, i))
        out |= {case_id: "val" if (dealt + k) % folds == fold - 1 else "train" for k, case_id in enumerate(members)}
        dealt += len(members)
    return out


def check_training_split(cases: list[Case], splits: dict[str, str], manifest: str) -> None:
    """A training site needs both labels in its training split."""
    counts = Counter(c.label for c in {c.case_id: c for c in cases}.values() if splits[c.case_id] == "train")
    if not counts:
        raise SiteDataError(f"manifest {manifest}: the training split is empty", "training split is empty")
    if len(counts) < 2:
        (only, n), = counts.items()
        raise SiteDataError(
            f"manifest {manifest}: the training split has only label {only} ({n} cases); training needs both labels",
            f"training split has one class (label {only} only)",
        )


def _hash(seed: int, case_id: str) -> str:
    """Seeded, platform-independent order key of a case id."""
    return hashlib.sha256(f"{seed}:{case_id}".encode()).hexdigest()
