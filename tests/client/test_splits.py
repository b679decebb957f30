"""Deterministic, stratified, case-level splits."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from client.errors import SiteDataError
from client.manifest import Case
from client.splits import assign_splits, check_training_split, fold_splits


def _cases(n: int, images_per_case: int = 1) -> list[Case]:
    return [Case(f"c{i:03d}", int(i % 3 == 0), row=2 + i * images_per_case + k) for i in range(n) for k in range(images_per_case)]


def test_deterministic_stratified_and_by_case() -> None:
    cases = _cases(100, images_per_case=3)
    first = assign_splits(cases, "train", 0.2, 0.2, seed=0)
    assert first == assign_splits(list(reversed(cases)), "train", 0.2, 0.2, seed=0)
    assert first != assign_splits(cases, "train", 0.2, 0.2, seed=1)
    assert len(first) == 100  # one split per case, so a case's three images never straddle splits
    by_split = Counter(first.values())
    assert by_split["test"] == 20 and by_split["val"] == 20 and by_split["train"] == 60
    positives = {c.case_id for c in cases if c.label == 1}
    pos_by_split = Counter(s for cid, s in first.items() if cid in positives)
    assert pos_by_split["test"] == round(len(positives) * 0.2)


def test_external_sites_test_everything_and_given_splits_are_kept() -> None:
    cases = _cases(10)
    assert set(assign_splits(cases, "external", 0.2, 0.2).values()) == {"test"}
    given = [Case(c.case_id, c.label, c.row, split="val" if i < 4 else "train") for i, c in enumerate(cases)]
    assert Counter(assign_splits(given, "train", 0.2, 0.2).values()) == {"val": 4, "train": 6}
    partial = [*given[:-1], Case("c009", 0, 11)]
    with pytest.raises(SiteDataError, match="row 11"):
        assign_splits(partial, "train", 0.2, 0.2)


def test_one_class_training_split_is_refused(tmp_path: Path) -> None:
    cases = [Case(f"c{i}", 0, i + 2) for i in range(10)]
    splits = assign_splits(cases, "train", 0.2, 0.2)
    with pytest.raises(SiteDataError) as err:
        check_training_split(cases, splits, "m.csv")
    assert "only label 0" in str(err.value) and "m.csv" in str(err.value)


def test_cross_validation_folds_are_disjoint_stratified_and_leave_test_alone() -> None:
    cases = _cases(61)
    splits = assign_splits(cases, "train", 0.15, 0.2, seed=3)
    folds = [fold_splits(cases, splits, 5, k, seed=3) for k in range(1, 6)]
    test = {i for i, s in splits.items() if s == "test"}
    held_out = [{i for i, s in f.items() if s == "val"} for f in folds]
    for f in folds:
        assert {i for i, s in f.items() if s == "test"} == test and set(f) == set(splits)
    assert all(not (a & b) for i, a in enumerate(held_out) for b in held_out[i + 1 :])  # disjoint
    assert set().union(*held_out) == set(splits) - test  # every non-test case is validated once
    label = {c.case_id: c.label for c in cases}
    for cls in (0, 1):
        per_fold = [sum(label[i] == cls for i in fold) for fold in held_out]
        assert max(per_fold) - min(per_fold) <= 1  # stratified: each class spread evenly
    sizes = [len(fold) for fold in held_out]
    assert max(sizes) - min(sizes) <= 1
    assert fold_splits(cases, splits, 5, 0) == splits and folds[0] == fold_splits(cases, splits, 5, 1, seed=3)
