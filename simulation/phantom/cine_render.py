"""A cine loop of one case: the B-mode frames of a probe sweep through its lesion, from its features and noise only.

The tissue is drawn once on a canvas wider than the field of view; each frame crops it where the
drifting probe is, cuts the lesion at the frame's elevation (``sweep.py``), adds what that plane
shows of the off-centre findings, and speckle that decorrelates gradually from frame to frame (each
frame's complex field is ``RHO`` times the previous one's plus fresh noise). Then the still
renderer's display chain (``render.py``) and the same burned-in UI on every frame. The key frame is
the frame with the largest lesion cross-section (mask area). The renderer never sees a label.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from simulation.phantom.cine_features import SweepLesion
from simulation.phantom.render import (
    DB_TOP, LesionShape, SiteGeometry, add_posterior, finish_frame, lesion_inside, margin_offset, paint_lesion,
    place_lesion,
    speckle_db, tissue_db, to_display,
)
from simulation.phantom.sweep import (
    CALC_HALF_DEPTH, SATELLITE_HALF_DEPTH, Sweep, drift_pads, pole_weight, section_scale, shows_spicules,
)

RHO = 0.85  # correlation of the complex speckle field between consecutive frames
_MIN_SECTION = 0.15  # smaller slices of the lesion are not drawn
_PROBE = np.linspace(-np.pi, np.pi, 721)  # angles at which outlines are sampled


@dataclass
class RenderedCine:
    """One rendered loop: (F, H, W[, 3]) uint8 frames, each frame's lesion mask area, the key frame and its 0/255 mask."""

    frames: np.ndarray
    areas: np.ndarray
    key_frame: int
    mask: np.ndarray


@dataclass(frozen=True)
class _Findings:
    """The lesion's shapes a sweep may cut: the body, the body with its spiculated pole, the satellite nodule."""

    body: LesionShape
    spiculated: LesionShape | None
    satellite: LesionShape | None


def _with_spicules(shape: LesionShape, rng: np.random.Generator) -> LesionShape:
    """Return the lesion's outline with long, wide spicules added (the spiculated pole's cross-sections)."""
    n = int(rng.integers(6, 9))
    spikes = np.stack([rng.uniform(-np.pi, np.pi, n), rng.uniform(0.6, 1.0, n), rng.uniform(0.1, 0.16, n),
                       np.full(n, 0.9)], axis=1)
    parts = [*shape.parts, ("spike", spikes)]
    ox, oy = shape.outline(_PROBE, margin_offset(parts, _PROBE))
    return replace(shape, parts=parts, outline_x=ox, outline_y=oy)


def _satellite(shape: LesionShape, sweep: Sweep, geometry: SiteGeometry, rng: np.random.Generator) -> LesionShape:
    """Return the small round satellite nodule beside the lesion, kept inside the beam image."""
    hb, wb = geometry.beam_shape
    radius = max(0.5 * float(np.sqrt(shape.a * shape.b)), 0.07 * geometry.width)  # visible at a CPU preset's 48 px
    parts = [("cos", np.array([2.0, 0.06, rng.uniform(0, 2 * np.pi)]))]
    round_shape = replace(shape, a=radius, b=radius, tilt=0.0, parts=parts)
    ox, oy = round_shape.outline(_PROBE, margin_offset(parts, _PROBE))
    down, side = sweep.satellite_offset
    row = float(np.clip(shape.row_c + down * shape.b, radius + shape.pad, hb - radius - shape.pad))
    col = shape.col_c + side * (shape.a + 1.6 * radius) / shape.col_scale
    margin = (radius + shape.pad) / shape.col_scale + 2
    if not margin <= col <= wb - margin:
        col = shape.col_c - side * (shape.a + 1.6 * radius) / shape.col_scale
    col = float(np.clip(col, margin, wb - margin))
    return replace(round_shape, outline_x=ox, outline_y=oy, row_c=row, col_c=col)


def _calcification_pixels(shape: LesionShape, sweep: Sweep, s: float, scale: float, shift: tuple[int, int],
                          beam_shape: tuple[int, int], dot: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the beam (rows, lines) of the calcifications the plane at ``s`` cuts, ``dot`` px squares each."""
    near = sweep.calcifications[np.abs(sweep.calcifications[:, 0] - s) < CALC_HALF_DEPTH]
    if near.size == 0 or scale < _MIN_SECTION:
        return np.zeros(0, int), np.zeros(0, int)
    rows = np.rint(shape.row_c + shift[0] + near[:, 2] * shape.b * scale).astype(int)
    lines = np.rint(shape.col_c + shift[1] + near[:, 1] * shape.a * scale / shape.col_scale).astype(int)
    dy, dx = np.mgrid[0:dot, 0:dot]
    rows = np.clip(rows[:, None] + dy.ravel()[None, :] - dot // 2, 0, beam_shape[0] - 1).ravel()
    lines = np.clip(lines[:, None] + dx.ravel()[None, :] - dot // 2, 0, beam_shape[1] - 1).ravel()
    return rows, lines


def _draw_plane(tissue: np.ndarray, texture: np.ndarray, case: SweepLesion, findings: _Findings, sweep: Sweep,
                s: float, shift: tuple[int, int], px_scale: float) -> np.ndarray:
    """Draw what the plane at ``s`` cuts of the lesion and its findings into ``tissue``; return the body's mask."""
    lesion, beam = case.lesion, tissue.shape
    mask = np.zeros(beam, bool)
    scale = section_scale(s)
    if scale >= _MIN_SECTION:
        inside, box = lesion_inside(findings.body, beam, scale, shift)
        if findings.spiculated is not None and shows_spicules(s, sweep.pole_side):
            paint_lesion(tissue, texture, *lesion_inside(findings.spiculated, beam, scale, shift), lesion, px_scale)
        else:
            paint_lesion(tissue, texture, inside, box, lesion, px_scale)
        mask[box[0]:box[1], box[2]:box[3]] = inside >= 0
        add_posterior(tissue, mask, box, lesion.posterior * pole_weight(s, sweep.pole_side))
    satellite_scale = section_scale(s - sweep.satellite_at, SATELLITE_HALF_DEPTH)
    if findings.satellite is not None and satellite_scale >= _MIN_SECTION:
        inside, box = lesion_inside(findings.satellite, beam, satellite_scale, shift)
        paint_lesion(tissue, texture, inside, box, replace(lesion, margin_irregularity=0.25), px_scale)
    return mask


def render_sweep(case: SweepLesion, geometry: SiteGeometry, sweep: Sweep, rng: np.random.Generator) -> RenderedCine:
    """Render one case's loop, its key frame and the key frame's lesion mask from its features and noise only.

    Args:
        case: the case's sweep-visible features (never its label).
        geometry: the site's display layout and scanner.
        sweep: the case's sweep (``plan_sweep``).
        rng: the case's own noise generator (after the sweep was drawn from it).

    Returns:
        The frames as stored by the site (gray, or RGB at a tinted site), per-frame mask areas, the key frame and its mask.
    """
    scanner, (hb, wb) = geometry.scanner, geometry.beam_shape
    px_scale = geometry.width / 480.0
    pad_rows, pad_lines = drift_pads((hb, wb))
    canvas = (hb + 2 * pad_rows, wb + 2 * pad_lines)
    tissue, texture = tissue_db(rng, canvas)
    body = place_lesion(case.lesion, geometry, (hb, wb), rng)
    findings = _Findings(body, _with_spicules(body, rng) if case.spiculated_pole else None,
                         _satellite(body, sweep, geometry, rng) if case.satellite_nodule else None)
    depth = (np.arange(hb, dtype=np.float32) / hb)[:, None]
    dot = max(2, int(round(wb / 22)))  # calcifications stay visible at a CPU preset's 48 px
    field = rng.standard_normal((2, *canvas), dtype=np.float32)
    frames, masks = [], []
    for t, s in enumerate(sweep.positions):
        if t:
            field = RHO * field + np.float32(np.sqrt(1 - RHO**2)) * rng.standard_normal((2, *canvas), dtype=np.float32)
        r0, c0 = pad_rows + int(sweep.drift_rows[t]), pad_lines + int(sweep.drift_lines[t])
        view = (slice(r0, r0 + hb), slice(c0, c0 + wb))
        shift = (-int(sweep.drift_rows[t]), -int(sweep.drift_lines[t]))
        plane = tissue[view].copy()
        beam_mask = _draw_plane(plane, texture[view], case, findings, sweep, float(s), shift, px_scale)
        db = plane + speckle_db(field[:, view[0], view[1]], scanner, px_scale) - 10.0 * scanner.attenuation * depth
        calcs = _calcification_pixels(body, sweep, float(s), section_scale(float(s)), shift, (hb, wb), dot)
        db[calcs] = np.maximum(db[calcs], DB_TOP + 2.0)
        image, mask = to_display(db, beam_mask, geometry)
        frames.append(finish_frame(image, geometry.ui_mask, scanner))
        masks.append(mask)
    areas = np.array([int(m.sum()) for m in masks])
    key = int(np.argmax(areas))
    return RenderedCine(np.stack(frames), areas, key, np.where(masks[key], 255, 0).astype(np.uint8))
