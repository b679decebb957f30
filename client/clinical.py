"""Typed clinical columns of a site's manifest: declared in the site config, or inferred and reported.

Site config ``data.clinical`` maps a manifest column to its type::

    clinical:
      age: continuous
      her2: binary                           # 0 / 1
      histologic_type: {categorical: [IDC, ILC, DCIS, other]}
      histologic_grade: {ordinal: ["1", "2", "3"]}   # levels in order

Without it, the manifest's known clinical columns (``client/manifest.py`` ``CLINICAL_COLUMNS``)
are inferred: numbers that are all 0 or 1 are binary, 3 to 5 distinct integers ordinal (a grade),
other numbers continuous, anything else categorical with the levels seen; ``axilla-client --check`` says what was inferred. Empty cells
and ``NA``, ``n/a``, ``nan``, ``not available``, ``unknown``, ``missing`` (any case) are missing
values, counted by row; a value that does not fit its declared type (a level outside the list,
text in a continuous column) is an error naming the row and the column. Nothing here leaves the site.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from client.errors import SiteDataError
from client.manifest import CLINICAL_COLUMNS, Case

MISSING = frozenset({"", "na", "n/a", "nan", "not available", "unknown", "missing"})
BINARY_LEVELS = ("0", "1")


@dataclass(frozen=True)
class ClinicalVariable:
    """One clinical column: its type, its levels (categorical, ordinal in order, binary 0/1) and whether the site declared it."""

    name: str
    kind: str
    levels: tuple[str, ...] = ()
    declared: bool = True

    def describe(self) -> str:
        """E.g. ``histologic_type: categorical (IDC, ILC), inferred``."""
        levels = f" ({', '.join(self.levels)})" if self.kind in ("categorical", "ordinal") else ""
        return f"{self.name}: {self.kind}{levels}{'' if self.declared else ', inferred'}"


@dataclass(frozen=True)
class ClinicalColumns:
    """A site's clinical variables and, per column, the manifest rows whose value is missing."""

    variables: dict[str, ClinicalVariable]
    missing: dict[str, list[int]] = field(default_factory=dict)

    def summary_lines(self) -> list[str]:
        """What ``--check`` prints about the clinical columns."""
        if not self.variables:
            return ["  clinical columns: none"]
        lines = ["  clinical columns:"]
        for name, variable in self.variables.items():
            rows = self.missing.get(name, [])
            shown = ", ".join(map(str, rows[:5])) + (" ..." if len(rows) > 5 else "")
            lines.append(f"    {variable.describe()}" + (f"; {len(rows)} missing (rows {shown})" if rows else ""))
        return lines


def parse_clinical_spec(raw: Any, path: Path) -> dict[str, ClinicalVariable]:
    """The site config's ``data.clinical`` mapping as typed variables; every problem names the key."""
    if not isinstance(raw, dict):
        raise SiteDataError(f"site config {path}: key 'data.clinical' must map column names to types", "site config: 'data.clinical' type")
    out: dict[str, ClinicalVariable] = {}
    for name, spec in raw.items():
        key = f"data.clinical.{name}"
        if isinstance(spec, str) and spec in ("continuous", "binary"):
            out[name] = ClinicalVariable(name, spec, BINARY_LEVELS if spec == "binary" else ())
            continue
        if isinstance(spec, dict) and len(spec) == 1:
            ((kind, levels),) = spec.items()
            if kind in ("categorical", "ordinal") and isinstance(levels, list) and len(levels) >= 2:
                names = tuple(str(level) for level in levels)
                if len(set(names)) == len(names):
                    out[name] = ClinicalVariable(name, kind, names)
                    continue
        raise SiteDataError(
            f"site config {path}: key '{key}' = {spec!r}: expected continuous, binary, {{categorical: [levels]}} or "
            "{ordinal: [levels in order]} with at least two distinct levels",
            f"site config: invalid '{key}'",
        )
    return out


def clinical_columns(cases: Sequence[Case], declared: Mapping[str, ClinicalVariable] | None, manifest: Path) -> ClinicalColumns:
    """Type and validate the manifest's clinical columns: the declared ones, else the known ones inferred."""
    present = set().union(*(c.clinical for c in cases)) if cases else set()
    if declared:
        absent = [name for name in declared if name not in present]
        if absent:
            raise SiteDataError(
                f"manifest {manifest}: clinical column(s) {', '.join(absent)} declared in the site config are not in the manifest",
                f"manifest: declared clinical column(s) {', '.join(absent)} missing",
            )
        variables = dict(declared)
    else:
        variables = {name: _infer(name, [c.clinical[name] for c in cases if name in c.clinical]) for name in CLINICAL_COLUMNS if name in present}
    missing: dict[str, list[int]] = {}
    for case in cases:
        for name, variable in variables.items():
            value = case.clinical.get(name, "")
            if is_missing(value):
                missing.setdefault(name, []).append(case.row)
            else:
                _check_value(variable, value, case, manifest)
    return ClinicalColumns(variables, missing)


def is_missing(value: str) -> bool:
    """Whether a cell holds no value."""
    return value.strip().lower() in MISSING


def _infer(name: str, values: list[str]) -> ClinicalVariable:
    """A column's type from its values (missing ones ignored)."""
    seen = [v.strip() for v in values if not is_missing(v)]
    numbers = [_number(v) for v in seen]
    if seen and all(n is not None for n in numbers):
        distinct = {float(n) for n in numbers if n is not None}
        if distinct <= {0.0, 1.0}:
            return ClinicalVariable(name, "binary", BINARY_LEVELS, declared=False)
        if 3 <= len(set(seen)) <= 5 and all(n.is_integer() for n in distinct):  # a grade or a score
            return ClinicalVariable(name, "ordinal", tuple(sorted(set(seen), key=float)), declared=False)
        return ClinicalVariable(name, "continuous", declared=False)
    return ClinicalVariable(name, "categorical", tuple(sorted(set(seen))), declared=False)


def _number(text: str) -> float | None:
    """The finite number a cell holds, or None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _check_value(variable: ClinicalVariable, value: str, case: Case, manifest: Path) -> None:
    """A present value must fit its variable's type; the error names the row and the column."""
    text = value.strip()
    if variable.kind == "continuous":
        ok = _number(text) is not None
        expected = "a number"
    elif variable.kind == "binary":
        number = _number(text)
        ok = number in (0.0, 1.0)
        expected = "0 or 1"
    else:
        ok = text in variable.levels
        expected = f"one of {', '.join(variable.levels)}"
    if not ok:
        raise SiteDataError(
            f"manifest {manifest}, row {case.row} (case {case.case_id}): column '{variable.name}' = {value!r} is not {expected}",
            f"manifest row {case.row}: column '{variable.name}' is not {expected if variable.kind in ('continuous', 'binary') else 'a known level'}",
        )
