"""The installed axilla version."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def axilla_version() -> str:
    """Version of the installed axilla distribution."""
    try:
        return version("axilla")
    except PackageNotFoundError:
        return "0+unknown"
