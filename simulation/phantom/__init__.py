"""The phantom multi-hospital breast-ultrasound cohort with a known outcome model (the default data)."""

from __future__ import annotations

from simulation.phantom.cine_presets import CINE_PRESETS
from simulation.phantom.presets import PRESETS
from simulation.phantom.writer import PhantomSummary, make_phantom

__all__ = ["CINE_PRESETS", "PRESETS", "PhantomSummary", "make_phantom"]
