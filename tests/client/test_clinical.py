"""Typed clinical columns: declared in the site config or inferred, missing values by row, bad values by row and column."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from client.clinical import ClinicalVariable, clinical_columns
from client.cli import check_site
from client.errors import SiteDataError
from client.manifest import read_manifest
from client.site_config import load_site_config
from client.site_index import read_cases
from tests.conftest import make_site

VALUES = [
    {"age": "61", "her2": "1", "histologic_type": "IDC", "histologic_grade": "3", "molecular_subtype": "Luminal A"},
    {"age": "not available", "her2": "0", "histologic_type": "ILC", "histologic_grade": "1"},
    {"age": "47.5", "her2": "", "histologic_type": "IDC", "histologic_grade": "2"},
]


def _site(tmp_path: Path, clinical_yaml: str = "", edit: dict[str, str] | None = None) -> Path:
    def add(rows: list[dict[str, str]]) -> None:
        for i, row in enumerate(rows):
            row.update(VALUES[i % 3] | {"molecular_subtype": VALUES[i % 3].get("molecular_subtype", "Luminal B")})
        rows[4].update(edit or {})

    site = make_site(tmp_path, "a", n=12, rows=add)
    site.write_text(site.read_text().replace("  crop: none\n", "  crop: none\n" + clinical_yaml))  # under data:
    return site


def test_known_columns_are_inferred_and_missing_values_counted_by_row(tmp_path: Path) -> None:
    config = load_site_config(_site(tmp_path))
    cases = read_manifest(config.data.manifest)
    columns = clinical_columns(cases, config.data.clinical, config.data.manifest)
    assert columns.variables == {
        "age": ClinicalVariable("age", "continuous", declared=False),
        "her2": ClinicalVariable("her2", "binary", ("0", "1"), declared=False),
        "histologic_type": ClinicalVariable("histologic_type", "categorical", ("IDC", "ILC"), declared=False),
        "histologic_grade": ClinicalVariable("histologic_grade", "ordinal", ("1", "2", "3"), declared=False),
    }  # molecular_subtype is not a known clinical column: kept in the row, typed only when declared
    assert columns.missing == {"age": [3, 6, 9, 12], "her2": [4, 7, 10, 13]}
    assert cases[0].clinical["molecular_subtype"] == "Luminal A"


def test_declared_types_are_checked_row_by_row(tmp_path: Path) -> None:
    declared = "  clinical:\n    age: continuous\n    molecular_subtype: {categorical: [Luminal A, Luminal B, HER2, TN]}\n"
    config = load_site_config(_site(tmp_path, declared))
    assert set(config.data.clinical) == {"age", "molecular_subtype"}
    read_cases(config)  # every value fits
    bad = load_site_config(_site(tmp_path / "bad", declared, {"molecular_subtype": "Basal"}))
    with pytest.raises(SiteDataError, match=r"row 6 \(case a-004\): column 'molecular_subtype' = 'Basal' is not one of Luminal A") as err:
        read_cases(bad)
    assert "a-004" not in err.value.public and "row 6" in err.value.public
    text = load_site_config(_site(tmp_path / "text", declared, {"age": "sixty"}))
    with pytest.raises(SiteDataError, match="column 'age' = 'sixty' is not a number"):
        read_cases(text)


@pytest.mark.parametrize(
    ("clinical_yaml", "message"),
    [
        ("  clinical:\n    age: numeric\n", "key 'data.clinical.age' = 'numeric'"),
        ("  clinical:\n    grade: {ordinal: [1]}\n", "key 'data.clinical.grade'"),
        ("  clinical: [age]\n", "'data.clinical'"),
    ],
)
def test_bad_declarations_name_the_key(tmp_path: Path, clinical_yaml: str, message: str) -> None:
    with pytest.raises(SiteDataError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_site_config(_site(tmp_path, clinical_yaml))


def test_a_declared_column_absent_from_the_manifest_is_named(tmp_path: Path) -> None:
    config = load_site_config(_site(tmp_path, "  clinical:\n    ki67: continuous\n"))
    with pytest.raises(SiteDataError, match="clinical column\\(s\\) ki67 declared in the site config are not in the manifest"):
        read_cases(config)


def test_check_lists_the_clinical_columns_and_what_was_inferred(tmp_path: Path) -> None:
    summary, unreadable = check_site(_site(tmp_path), 32)
    assert unreadable == 0
    assert "    histologic_grade: ordinal (1, 2, 3), inferred" in summary and "    age: continuous, inferred; 4 missing (rows 3, 6, 9, 12)" in summary
