"""Checks of a site's model update before aggregation: keys, shapes, dtypes, finiteness, norm."""

from __future__ import annotations

import statistics
from collections.abc import Mapping

import numpy as np
from flwr.app import ArrayRecord


def check_arrays(update: ArrayRecord, template: ArrayRecord) -> str | None:
    """Return why an update cannot be aggregated with the global model, or None if it can."""
    missing = sorted(set(template.keys()) - set(update.keys()))
    extra = sorted(set(update.keys()) - set(template.keys()))
    if missing or extra:
        return f"wrong keys (missing {missing[:3]}, unexpected {extra[:3]})"
    for key, reference in template.items():
        value, ref = update[key].numpy(), reference.numpy()
        if value.shape != ref.shape:
            return f"array '{key}' has shape {value.shape}, expected {ref.shape}"
        if value.dtype != ref.dtype:
            return f"array '{key}' has dtype {value.dtype}, expected {ref.dtype}"
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            return f"array '{key}' holds non-finite values (NaN or inf)"
    return None


def float_keys(reference: Mapping[str, np.ndarray]) -> list[str]:
    """The names of a model's floating-point arrays (what training changes and DP clips)."""
    return [k for k, v in reference.items() if np.issubdtype(v.dtype, np.floating)]


def change_norm(update: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]) -> float:
    """L2 norm of the floating-point change from ``reference``."""
    return float(np.sqrt(sum(np.sum((update[k].astype(np.float64) - reference[k].astype(np.float64)) ** 2) for k in float_keys(reference))))


def numpy_arrays(record: ArrayRecord) -> dict[str, np.ndarray]:
    """An ArrayRecord's arrays by name, as numpy."""
    return {k: v.numpy() for k, v in record.items()}


def update_norm(update: ArrayRecord, template: ArrayRecord) -> float:
    """L2 norm of the update's floating-point change from the global model."""
    return change_norm(numpy_arrays(update), numpy_arrays(template))


def norm_outliers(norms: dict[str, float], ratio: float) -> dict[str, str]:
    """Sites whose update norm exceeds ``ratio`` x the median of the other sites' norms (ratio <= 0: off)."""
    if ratio <= 0 or len(norms) < 2:
        return {}
    out = {}
    for site, norm in norms.items():
        others = [n for s, n in norms.items() if s != site]
        reference = statistics.median(others)
        if reference > 0 and norm > ratio * reference:
            out[site] = f"update norm {norm:.3g} is more than {ratio:g}x the median of the other sites ({reference:.3g})"
    return out
