"""Comparison variants: a strategy name, or a run-config TOML file whose stem is the label; and a run's personalised test values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluation.text import finite
from models.run_config import RunConfigError, Scalar, load_run_config_file

PERSONALISED = " (personalised)"


@dataclass(frozen=True)
class Variant:
    """One row of a comparison: its label, the run config keys it sets over the base, and the file they came from ('' for a name)."""

    label: str
    keys: Mapping[str, Scalar] = field(default_factory=dict)
    source: str = ""


def is_variant_file(entry: str) -> bool:
    """Whether a ``--strategies`` entry names a TOML file (a ``.toml`` ending or a path separator) rather than a strategy."""
    return entry.endswith(".toml") or "/" in entry


def read_variant(entry: str) -> Variant:
    """A strategy name as ``strategy = name``; a file as its keys, labelled by its stem (RunConfigError if it cannot be read)."""
    if not is_variant_file(entry):
        return Variant(entry, {"strategy": entry})
    return Variant(Path(entry).stem, load_run_config_file(Path(entry)), entry)


def duplicate_labels(variants: Sequence[Variant]) -> dict[str, list[str]]:
    """Each label given more than once, with the entries that gave it."""
    seen: dict[str, list[str]] = {}
    for v in variants:
        seen.setdefault(v.label, []).append(v.source or v.label)
    return {label: entries for label, entries in seen.items() if len(entries) > 1}


def personalised_values(report: Mapping[str, Any], federated: Mapping[str, float]) -> dict[str, float]:
    """Per test site, the personalised model's test AUC at a training site and the global model's at an external one.

    From report.json's ``personalisation`` rows (evaluation/personal_report.py); a training site
    that sent no personalised metrics is left out; no pooled ``all`` (each site has its own model).
    """
    out: dict[str, float] = {}
    for row in report.get("personalisation", []):
        if row.get("status") == "ok" and finite(row.get("personal_auc")):
            out[row["site"]] = float(row["personal_auc"])
        elif row.get("status") == "global only":
            value = row.get("global_auc", federated.get(row["site"]))
            if finite(value):
                out[row["site"]] = float(value)
    return out
