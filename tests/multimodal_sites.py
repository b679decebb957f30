"""The tiny multimodal phantom, written once per test module that asks for it (site_b has no pathology)."""

from __future__ import annotations

from pathlib import Path

from simulation.phantom.multimodal_writer import make_multimodal_phantom

SITES = ("site_a", "site_b", "site_ext")
WITHOUT_PATHOLOGY = "site_b"


def tiny_multimodal(root: Path) -> list[Path]:
    """Write the tiny multimodal phantom under ``root`` and return its site configs (training sites first, the external one last)."""
    make_multimodal_phantom(root, "tiny", seed=0)
    return [root / site / "site.yaml" for site in SITES]
