"""The phantom multi-hospital breast-ultrasound cohort with a known outcome model (the default data)."""

from __future__ import annotations

from simulation.phantom.presets import PRESETS
from simulation.phantom.writer import PhantomSummary, make_phantom

__all__ = ["PRESETS", "PhantomSummary", "make_phantom"]
