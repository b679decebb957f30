"""Wilson score confidence intervals for the proportions of a confusion matrix."""

from __future__ import annotations

from statsmodels.stats.proportion import proportion_confint


def wilson_ci(successes: int, total: int, level: float = 0.95) -> list[float] | None:
    """Wilson score interval ``[low, high]`` for ``successes / total``; ``None`` when ``total == 0``.

    Raises:
        ValueError: If counts are negative, ``successes > total`` or ``level`` is not in (0, 1).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if successes < 0 or total < 0 or successes > total:
        raise ValueError(f"need 0 <= successes <= total, got {successes} of {total}")
    if total == 0:
        return None
    low, high = proportion_confint(int(successes), int(total), alpha=1.0 - level, method="wilson")
    return [float(low), float(high)]


def proportion_cis(tp: int, fp: int, tn: int, fn: int, level: float = 0.95) -> dict[str, list[float]]:
    """Wilson intervals of accuracy, sensitivity, specificity, PPV and NPV; keys with a zero denominator are omitted.

    Raises:
        ValueError: If any count is negative or ``level`` is not in (0, 1).
    """
    if min(tp, fp, tn, fn) < 0:
        raise ValueError(f"confusion counts must be non-negative, got {(tp, fp, tn, fn)}")
    ratios = {
        "accuracy_ci": (tp + tn, tp + fp + tn + fn),
        "sensitivity_ci": (tp, tp + fn),
        "specificity_ci": (tn, tn + fp),
        "ppv_ci": (tp, tp + fp),
        "npv_ci": (tn, tn + fn),
    }
    out: dict[str, list[float]] = {}
    for key, (num, den) in ratios.items():
        ci = wilson_ci(num, den, level)
        if ci is not None:
            out[key] = ci
    return out
