"""A site's design matrix for the clinical models, from its typed clinical columns (``client/clinical.py``).

Coding, the same at every site so the sites' statistics add up (levels are the harmonised ones):

* continuous: the value as it is;
* binary: 0 / 1;
* categorical: one 0/1 column per level but the first (the reference level), named ``var[level]``;
* ordinal: its level's rank (0, 1, 2, ...) as one column (a linear trend across the ordered levels).

An intercept column comes first. Rows with a missing value in any chosen variable are left out
(complete cases) and counted; nothing here leaves the site but what the statistics are made of.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from client.clinical import ClinicalVariable, is_missing
from client.manifest import Case
from models.federated_logit import INTERCEPT


@dataclass(frozen=True)
class Design:
    """The design matrix (n, p), its column names, the labels and the manifest rows left out for a missing value."""

    x: np.ndarray
    names: tuple[str, ...]
    y: np.ndarray
    left_out: tuple[int, ...]


def column_names(variables: Sequence[ClinicalVariable]) -> tuple[str, ...]:
    """The design's column names for these variables, intercept first (the same at every site)."""
    names = [INTERCEPT]
    for variable in variables:
        if variable.kind == "categorical":
            names += [f"{variable.name}[{level}]" for level in variable.levels[1:]]
        else:
            names.append(variable.name)
    return tuple(names)


def design_matrix(cases: Sequence[Case], variables: Sequence[ClinicalVariable], extra: Mapping[str, np.ndarray] | None = None) -> Design:
    """The complete cases' design for ``variables`` (and ``extra`` numeric covariates per case, e.g. the image model's score)."""
    extra = dict(extra or {})
    rows, labels, left_out = [], [], []
    for index, case in enumerate(cases):
        values = [case.clinical.get(v.name, "") for v in variables]
        if any(is_missing(value) for value in values) or any(not np.isfinite(column[index]) for column in extra.values()):
            left_out.append(case.row)
            continue
        row = [1.0]
        for variable, value in zip(variables, values):
            row += code_value(variable, value.strip())
        row += [float(column[index]) for column in extra.values()]
        rows.append(row)
        labels.append(case.label)
    names = column_names(variables) + tuple(extra)
    x = np.array(rows, dtype=np.float64).reshape(len(rows), len(names))
    return Design(x, names, np.array(labels, dtype=np.float64), tuple(left_out))


def code_value(variable: ClinicalVariable, value: str) -> list[float]:
    """One value's columns (the value was checked against its type when the manifest was read)."""
    if variable.kind in ("continuous", "binary"):
        return [float(value)]
    if variable.kind == "ordinal":
        return [float(variable.levels.index(value))]
    return [1.0 if value == level else 0.0 for level in variable.levels[1:]]
