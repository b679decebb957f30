"""Render a case's two-view mammogram, CC and MLO, with the mass's mask (the multimodal phantom's ``mammo_*`` columns).

What it renders (``BreastFeatures``; never the label):

* anatomy: the breast outline (a semi-ellipse from the chest wall on CC; on MLO the pectoral muscle
  triangle in the upper chest-wall corner and the axillary tail along it), thickness fall-off to the
  skin line, fibroglandular texture streaming towards the nipple whose amount follows the breast
  density (denser in younger women);
* the mass, at one depth from the chest wall in both views: its size follows the tumour size, its
  elongation the aspect ratio, its outline the margin irregularity (lobulated, then microlobulated,
  spiculated above about 0.55);
* microcalcifications: ``n_calcifications`` bright dots in and around the mass, in both views;
* MLO only, in most cases: an axillary lymph node in the tail, larger, rounder, denser and without a
  fatty hilum as its burden rises;
* laterality: a left breast has its chest wall on the left; a right one is its mirror image;
* nuisance: breast size and shape, the mass's rotation in each view, quantum noise and blur.

Pixel values are attenuation-like in [0, 1]: air black, dense tissue and calcium bright.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from simulation.phantom.multimodal_features import BreastFeatures
from simulation.phantom.pathology_render import smooth_field

VIEWS: tuple[str, ...] = ("CC", "MLO")
BREAST_HEIGHT_MM = 200.0  # the field's height in millimetres (sets the pixel size)


@dataclass(frozen=True)
class RenderedView:
    """One view: (H, W) float32 attenuation in [0, 1] and the mass's (H, W) bool mask."""

    image: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True)
class _Outline:
    """Where the breast is in one view: soft insideness, the nipple row, depth and half height, the pectoral triangle (px)."""

    inside: np.ndarray
    nipple_y: float
    depth: float
    half_height: float
    pectoral: tuple[float, float, float] = (0.0, 0.0, 0.0)  # MLO: the muscle's width and height, the tail's width


def _outline(view: str, shape: tuple[int, int], rng: np.random.Generator) -> tuple[_Outline, np.ndarray]:
    """Return the view's breast outline and its pectoral muscle's insideness (zero on CC)."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    depth = w * rng.uniform(0.74, 0.92)
    if view == "CC":
        cy, half = h * rng.uniform(0.47, 0.53), h * rng.uniform(0.40, 0.47)
        rho = np.hypot(xx / depth, (yy - cy) / half)
        return _Outline(np.clip((1.0 - rho) / 0.12, 0.0, 1.0), cy, depth, half), np.zeros(shape, np.float32)
    cy, half = h * rng.uniform(0.56, 0.62), h * rng.uniform(0.40, 0.45)
    pec_w, pec_h, tail = w * rng.uniform(0.30, 0.42), h * rng.uniform(0.45, 0.62), w * rng.uniform(0.10, 0.16)
    rho = np.hypot(xx / depth, (yy - cy) / half)
    edge = pec_w * (1.0 - yy / pec_h)  # the pectoral edge's distance from the chest wall at each row
    tail_in = np.where(yy < cy, (edge + tail - xx) / (0.12 * w), -1.0)
    inside = np.clip(np.maximum((1.0 - rho) / 0.12, tail_in), 0.0, 1.0)
    muscle = np.clip((edge - xx) / 2.0, 0.0, 1.0) * inside
    return _Outline(inside, cy, depth, half, (pec_w, pec_h, tail)), muscle


def _parenchyma(outline: _Outline, shape: tuple[int, int], density: float, rng: np.random.Generator) -> np.ndarray:
    """Return the fibroglandular tissue's attenuation: streaks towards the nipple, concentrated behind it."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = np.arctan2(yy - outline.nipple_y, outline.depth - xx)
    radius = np.hypot(yy - outline.nipple_y, outline.depth - xx)
    streaks = ndimage.gaussian_filter(rng.standard_normal((64, 96)), (6.0, 1.2), mode="wrap")
    coords = np.stack([radius / max(h, w) * 60.0 % 64, (theta / np.pi + 1.0) * 48.0 % 96])
    texture = ndimage.map_coordinates(streaks, coords, order=1, mode="wrap") / max(float(streaks.std()), 1e-6)
    texture = 0.6 * texture + 0.8 * smooth_field(rng, shape, 9.0) + 0.4 * smooth_field(rng, shape, 3.0)
    cone = np.exp(-(((yy - outline.nipple_y) / (0.75 * outline.half_height)) ** 2)) * np.clip(xx / (0.15 * w), 0, 1)
    cone *= np.clip((outline.depth - xx) / (0.12 * w), 0.0, 1.0)
    gland = cone * (0.25 + 0.75 * density) + 0.35 * density
    return 0.41 * np.tanh(np.maximum(gland * (1.0 + 0.45 * texture) - 0.45 * (1.0 - density), 0.0) / 1.2)


def _mass_profile(breast: BreastFeatures, shape: tuple[int, int], centre: tuple[float, float], pixel_mm: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """Return the mass's attenuation (spicules included), its body's mask and its mean radius (px)."""
    h, w = shape
    r = max(breast.tumor_size_mm / 2.0 / pixel_mm, 1.2)
    aspect = float(np.sqrt(breast.aspect_ratio))
    ax, ay = r * aspect, r / aspect  # depth (chest wall to nipple) and its crosswise axis
    angle = rng.normal(0.0, 0.25)
    irr = breast.margin_irregularity
    harmonics = [(k, rng.uniform(0.5, 1.0), rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5, 7)]
    reach = r * (1.3 / min(aspect, 1.0 / aspect) + 1.6 * (0.5 + irr)) + 3.0
    y0, y1 = max(0, int(centre[0] - reach)), min(h, int(centre[0] + reach) + 2)
    x0, x1 = max(0, int(centre[1] - reach)), min(w, int(centre[1] + reach) + 2)
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(centre[0])
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(centre[1])
    c, s = np.cos(angle), np.sin(angle)
    u, v = (dx * c + dy * s) / ax, (-dx * s + dy * c) / ay
    phi = np.arctan2(v, u)
    bound = 1.0 + 0.16 * irr * sum(a * np.cos(k * phi + p) for k, a, p in harmonics) / 2.5
    bound += 0.10 * max(irr - 0.3, 0.0) * np.cos(11 * phi + rng.uniform(0, 2 * np.pi))
    rho = np.hypot(u, v) / bound
    mask, mass = np.zeros(shape, bool), np.zeros(shape, np.float32)
    mask[y0:y1, x0:x1] = rho < 1.0
    crop = 0.24 * np.clip((1.0 - rho) * r / 1.5 + 0.5, 0.0, 1.0)
    if irr > 0.55:
        n_spicules = int(4 + 18 * (irr - 0.55) / 0.45)
        for beta in rng.uniform(0, 2 * np.pi, n_spicules):
            length = r * rng.uniform(0.6, 1.6) * (0.5 + irr)
            ey, ex = np.sin(beta), np.cos(beta)
            along = dy * ey + dx * ex - r * 0.8
            across = np.abs(-dy * ex + dx * ey)
            on = (along > 0) & (along < length)
            crop += np.where(on, 0.16 * (1.0 - along / length) * np.clip(1.0 - across / 0.9, 0.0, 1.0), 0.0)
    mass[y0:y1, x0:x1] = crop
    return mass, mask, r


def _calcifications(breast: BreastFeatures, shape: tuple[int, int], centre: tuple[float, float], r: float,
                    rng: np.random.Generator) -> np.ndarray:
    """Return the microcalcifications' attenuation: bright dots in and around the mass."""
    dots = np.zeros(shape, np.float32)
    for _ in range(breast.n_calcifications):
        dist, turn = r * np.sqrt(rng.uniform(0.0, 1.6)), rng.uniform(0, 2 * np.pi)
        y, x = int(round(centre[0] + dist * np.sin(turn))), int(round(centre[1] + dist * np.cos(turn)))
        if 0 <= y < shape[0] and 0 <= x < shape[1]:
            dots[y, x] += rng.uniform(2.2, 3.2)
    return ndimage.gaussian_filter(dots, 0.55)


def _node(breast: BreastFeatures, shape: tuple[int, int], outline: _Outline, pixel_mm: float,
          rng: np.random.Generator) -> np.ndarray:
    """Return an axillary node's attenuation in the MLO's axillary tail (burden: size, roundness, density, no hilum)."""
    h, w = shape
    z = breast.node_burden
    size = float(np.clip(8.0 * np.exp(0.32 * z + rng.normal(0, 0.1)), 4.0, 30.0)) / pixel_mm
    elong = 1.0 + 0.9 / (1.0 + np.exp(1.4 * z + rng.normal(0, 0.3)))
    hilum = 0.65 / (1.0 + np.exp(1.7 * (z - 0.3) + rng.normal(0, 0.3)))
    pec_w, pec_h, tail = outline.pectoral
    y = breast.node_position * 0.85 * pec_h
    x = pec_w * (1.0 - y / pec_h) + 0.5 * tail
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = np.arctan2(pec_h, -pec_w) + rng.normal(0, 0.2)
    c, s = np.cos(angle), np.sin(angle)
    u, v = ((xx - x) * c + (yy - y) * s) / (size / 2 * np.sqrt(elong)), (-(xx - x) * s + (yy - y) * c) * np.sqrt(elong) / (size / 2)
    rho = np.hypot(u, v)
    body = (0.16 + 0.08 / (1.0 + np.exp(-z))) * np.clip((1.0 - rho) * size / 3 + 0.5, 0.0, 1.0)
    fat = np.clip((hilum - np.hypot(u - 0.55, v)) * size / 3 + 0.5, 0.0, 1.0) * (hilum > 0.05)
    return body * (1.0 - 0.85 * fat) * outline.inside


def _mass_centre(breast: BreastFeatures, view: str, outline: _Outline) -> tuple[float, float]:
    """Return the mass's (row, column): the same depth from the chest wall on both views."""
    x = breast.mass_depth * outline.depth
    spread = 0.6 * outline.half_height * np.sqrt(max(1.0 - breast.mass_depth**2, 0.05))
    offset = breast.mass_lateral if view == "CC" else 0.75 * breast.mass_superior + 0.35 * breast.mass_lateral
    return outline.nipple_y - offset * spread, x


def render_mammograms(breast: BreastFeatures, shape: tuple[int, int], rng: np.random.Generator) -> dict[str, RenderedView]:
    """Render both views of one case.

    Args:
        breast: the case's mammogram-visible features (the renderer's whole view of the case).
        shape: (rows, columns) of each view.
        rng: the case's mammography noise generator.

    Returns:
        ``{"CC": RenderedView, "MLO": RenderedView}``, mirrored for a right breast.
    """
    pixel_mm = BREAST_HEIGHT_MM / shape[0]
    views = {}
    for view in VIEWS:
        outline, muscle = _outline(view, shape, rng)
        thickness = np.sqrt(outline.inside)
        image = thickness * (0.24 + _parenchyma(outline, shape, breast.breast_density, rng))
        if view == "MLO":
            image = np.maximum(image, muscle * (0.58 + 0.04 * smooth_field(rng, shape, 6.0)))
        centre = _mass_centre(breast, view, outline)
        mass, mask, r = _mass_profile(breast, shape, centre, pixel_mm, rng)
        image = image + (mass + _calcifications(breast, shape, centre, r, rng)) * (outline.inside > 0)
        if view == "MLO" and breast.node_visible:
            image = image + _node(breast, shape, outline, pixel_mm, rng)
        skin = np.clip(1.0 - np.abs(outline.inside - 0.08) / 0.08, 0.0, 1.0) * 0.06
        image = ndimage.gaussian_filter(image + skin, 0.6)
        image = image + rng.normal(0.0, 0.012, shape) * np.sqrt(np.clip(image, 0.02, None)) + 0.015
        image, mask = np.clip(image, 0.0, 1.0).astype(np.float32), mask & (outline.inside > 0)
        if breast.laterality == "R":
            image, mask = image[:, ::-1].copy(), mask[:, ::-1].copy()
        views[view] = RenderedView(image, mask)
    return views
