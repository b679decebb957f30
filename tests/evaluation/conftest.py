"""Fixtures shared by the figure and HTML tests: one synthetic report and its figures."""

from __future__ import annotations

from typing import Any

import pytest

from evaluation.figures import report_figures
from tests.evaluation.report_fixture import make_report


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    """The synthetic report, built once."""
    return make_report()


@pytest.fixture(scope="module")
def figures(report: dict[str, Any]) -> dict[str, bytes]:
    """Every figure of the synthetic report, rendered once."""
    return report_figures(report)
