"""The probe sweep of one cine case: frame count, the imaging plane's path through the lesion, probe drift.

Elevational positions are in units of the lesion's half-extent across the plane: the plane at 0
cuts the lesion's largest cross-section (an ellipsoid's slice, in-plane size ``sqrt(1 - s^2)``), at
|s| >= 1 it misses the lesion. One side of the lesion (``pole_side``) holds its posterior acoustic
effect, its calcification cluster and, in some cases, a spiculated pole; a satellite nodule, when
present, lies just beyond the other side. The sweep is drawn from the case's noise generator only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPAN = 3.2  # elevational distance a sweep covers, in lesion half-extents
CALC_HALF_DEPTH = 0.15  # a calcification shows on planes within this distance of it
SATELLITE_HALF_DEPTH = 0.35  # the satellite nodule's half-extent across the plane
SPICULATED_BAND = (0.5, 0.97)  # the pole's spicules show on planes at pole_side * s in this band


@dataclass(frozen=True)
class Sweep:
    """One sweep: where each frame's plane lies and how far the probe has drifted, and where the off-centre findings lie.

    ``positions`` are the planes' elevational positions, ``drift_rows`` / ``drift_lines`` the
    probe's integer drift in beam rows and scan lines; ``calcifications`` holds one row per
    calcification: elevation, and lateral and axial offsets as fractions of the cross-section's half-axes.
    """

    frame_time_ms: float
    positions: np.ndarray
    drift_rows: np.ndarray
    drift_lines: np.ndarray
    pole_side: int
    satellite_at: float
    satellite_offset: tuple[float, float]
    calcifications: np.ndarray

    @property
    def n_frames(self) -> int:
        """The number of frames of the loop."""
        return int(self.positions.shape[0])


def frame_count(duration_s: float, frame_time_ms: float, bounds: tuple[int, int]) -> int:
    """Return the frames a sweep of ``duration_s`` gives at ``frame_time_ms``, kept within ``bounds``."""
    return int(np.clip(round(duration_s * 1000.0 / frame_time_ms), *bounds))


def drift_pads(beam_shape: tuple[int, int]) -> tuple[int, int]:
    """Return the most rows and scan lines a probe drifts either way (the tissue canvas's margins)."""
    hb, wb = beam_shape
    return int(np.ceil(0.02 * hb)) + 1, int(np.ceil(0.05 * wb)) + 1


def plan_sweep(n_calcifications: int, beam_shape: tuple[int, int], frame_time_ms: float,
               duration_s: tuple[float, float], bounds: tuple[int, int], rng: np.random.Generator) -> Sweep:
    """Draw one case's sweep: its length, plane path, drift and the places of its off-centre findings.

    Args:
        n_calcifications: the case's calcification count (placed in a cluster at the pole).
        beam_shape: the site's beam image (rows, scan lines).
        frame_time_ms: the scanner's time between frames.
        duration_s: the range of sweep durations in seconds.
        bounds: the fewest and most frames a loop may have.
        rng: the case's noise generator.

    Returns:
        The sweep.
    """
    n = frame_count(rng.uniform(*duration_s), frame_time_ms, bounds)
    start = rng.uniform(-0.25, 0.25) - 0.5 * SPAN
    positions = start + np.arange(n) * SPAN / (n - 1)
    if rng.random() < 0.5:
        positions = positions[::-1].copy()
    pad_rows, pad_lines = drift_pads(beam_shape)
    progress = np.linspace(-1.0, 1.0, n)
    lateral = rng.uniform(-0.7, 0.7) * progress + 0.25 * np.sin(2 * np.pi * (rng.uniform(0.3, 0.8) * progress + rng.random()))
    axial = 0.8 * np.sin(2 * np.pi * (rng.uniform(0.4, 1.0) * progress + rng.random()))
    pole_side = 1 if rng.random() < 0.5 else -1
    satellite_at = -pole_side * rng.uniform(0.95, 1.15)
    satellite_offset = (rng.uniform(-0.3, 0.3), 1.0 if rng.random() < 0.5 else -1.0)
    cluster = rng.uniform(-0.3, 0.3, 2)
    calcs = np.column_stack([pole_side * rng.uniform(0.5, 0.8) + rng.uniform(-0.06, 0.06, n_calcifications),
                             cluster[0] + rng.uniform(-0.25, 0.25, n_calcifications),
                             cluster[1] + rng.uniform(-0.25, 0.25, n_calcifications)])
    return Sweep(frame_time_ms, positions, np.rint(axial * (pad_rows - 1)).astype(int),
                 np.rint(np.clip(lateral, -1, 1) * (pad_lines - 1)).astype(int), pole_side, float(satellite_at),
                 satellite_offset, calcs)


def section_scale(s: float, half_depth: float = 1.0) -> float:
    """Return the in-plane size of an ellipsoid's slice at elevation ``s`` (0 when the plane misses it)."""
    return float(np.sqrt(max(0.0, 1.0 - (s / half_depth) ** 2)))


def pole_weight(s: float, pole_side: int) -> float:
    """Return how much of the pole's posterior effect the plane at ``s`` shows (0 on the centre plane)."""
    return float(np.clip((pole_side * s - 0.25) / 0.25, 0.0, 1.0))


def shows_spicules(s: float, pole_side: int) -> bool:
    """Whether the plane at ``s`` cuts the spiculated pole."""
    return SPICULATED_BAND[0] <= pole_side * s <= SPICULATED_BAND[1]
