"""How the reports write numbers: n/a for what is missing or not finite, p-values with a floor."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def finite(value: Any) -> bool:
    """Whether a value is a finite number (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def number(value: Any, digits: int = 3) -> str:
    """``digits`` decimals, or n/a."""
    return f"{value:.{digits}f}" if finite(value) else "n/a"


def p_value(value: Any) -> str:
    """A p-value: three decimals, ``<0.001`` below that, or n/a."""
    if not finite(value):
        return "n/a"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def threshold_text(row: Mapping[str, Any]) -> str:
    """A row's operating point, marked when it is the midpoint because validation held one class only (``server/operating_point.py``)."""
    text = number(row.get("threshold"))
    return text + " (midpoint: validation had one class)" if row.get("threshold_midpoint") else text
