"""Manifest validation: every error names the file and the row."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.errors import SiteDataError
from client.manifest import read_manifest
from tests.conftest import make_site


def _manifest(tmp_path: Path, edit) -> Path:  # noqa: ANN001
    make_site(tmp_path, "alpha", n=6, rows=edit)
    return tmp_path / "alpha" / "manifest.csv"


def test_reads_rows_with_resolved_paths(tmp_path: Path) -> None:
    cases = read_manifest(_manifest(tmp_path, None))
    assert [c.label for c in cases] == [0, 1, 0, 1, 0, 1]
    assert cases[0].image == (tmp_path / "alpha" / "images" / "alpha-000.png").resolve()
    assert cases[0].row == 2 and cases[0].scanner == "alpha-scanner"


def test_label_outside_0_1_names_the_row(tmp_path: Path) -> None:
    def edit(rows: list[dict[str, str]]) -> None:
        rows[3]["label"] = "2"

    with pytest.raises(SiteDataError) as err:
        read_manifest(_manifest(tmp_path, edit))
    assert "row 5" in str(err.value) and "alpha-003" in str(err.value) and "manifest.csv" in str(err.value)
    assert "alpha-003" not in err.value.public and "row 5" in err.value.public


def test_missing_image_names_file_and_row(tmp_path: Path) -> None:
    def edit(rows: list[dict[str, str]]) -> None:
        rows[1]["image"] = "images/gone.png"

    with pytest.raises(SiteDataError) as err:
        read_manifest(_manifest(tmp_path, edit))
    assert "gone.png" in str(err.value) and "row 3" in str(err.value)
    assert "gone.png" not in err.value.public


def test_case_in_two_splits_names_case_and_rows(tmp_path: Path) -> None:
    def edit(rows: list[dict[str, str]]) -> None:
        for i, r in enumerate(rows):
            r["split"] = "train"
        rows.append(dict(rows[0], split="test"))

    with pytest.raises(SiteDataError) as err:
        read_manifest(_manifest(tmp_path, edit))
    assert "alpha-000" in str(err.value) and "row 2" in str(err.value) and "row 8" in str(err.value)


def test_missing_columns_and_bad_split(tmp_path: Path) -> None:
    def drop_label(rows: list[dict[str, str]]) -> None:
        for r in rows:
            del r["label"]

    with pytest.raises(SiteDataError, match="missing column 'label'"):
        read_manifest(_manifest(tmp_path, drop_label))

    def bad_split(rows: list[dict[str, str]]) -> None:
        for r in rows:
            r["split"] = "holdout"

    with pytest.raises(SiteDataError, match="row 2.*split"):
        read_manifest(_manifest(tmp_path / "b", bad_split))
