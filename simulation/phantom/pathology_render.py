"""Render an H&E-like micrograph of a case's tumour biology (the multimodal phantom's ``pathology`` column).

What it renders (``TumourBiology``: grade, Ki-67, histologic type and HER2; never the label, ER or
age), with per-case noise:

* architecture by type: IDC solid nests and sheets; ILC single-file lines of small uniform cells;
  DCIS duct-like rings of cells round an empty lumen (grade 3: pink necrotic debris in it);
  other: small tubules with a lumen, scattered in stroma;
* grade: nuclear size, pleomorphism (size and shape spread), hyperchromasia and nucleoli (grade 3);
* Ki-67 (with grade): nuclear crowding and the share of mitotic figures (dark, condensed, irregular
  clumps of chromatin);
* HER2 (a phantom cue, not real H&E morphology): cells with crisp purple membranes and granular
  pink cytoplasm, strong in most HER2-positive cases and faint in some negative ones;
* nuisance: stroma fibres, fat or tissue cracks, fibroblasts and lymphocytes, focus blur, sensor noise.

Stain: Beer-Lambert, ``I = Io * exp(-(H * h + E * e))`` with haematoxylin and eosin optical-density
vectors that each site jitters (its stain matrix, intensities and light), and each case a little more.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from simulation.phantom.multimodal_features import TumourBiology

H_OD = np.array([0.65, 0.70, 0.29])  # Ruifrok & Johnston's haematoxylin OD vector
E_OD = np.array([0.07, 0.99, 0.11])  # and eosin
_NUCLEUS_R = {1: 2.6, 2: 3.1, 3: 3.7}  # mean nuclear radius (px, about 1 um/px) by grade
_PLEOMORPHISM = {1: 0.08, 2: 0.16, 3: 0.28}  # log-SD of nuclear size by grade


@dataclass(frozen=True)
class Stain:
    """A stain: unit H and E optical-density vectors, their intensity factors and the light's intensity."""

    h_vector: np.ndarray
    e_vector: np.ndarray
    h_scale: float
    e_scale: float
    light: float


def _unit(v: np.ndarray) -> np.ndarray:
    """Return ``v`` made positive and of unit length."""
    v = np.clip(v, 0.02, None)
    return v / np.linalg.norm(v)


def site_stain(rng: np.random.Generator) -> Stain:
    """Draw a site's stain: its H and E vectors jittered, its staining strength and its light."""
    return Stain(_unit(H_OD / np.linalg.norm(H_OD) + rng.normal(0.0, 0.07, 3)),
                 _unit(E_OD / np.linalg.norm(E_OD) + rng.normal(0.0, 0.07, 3)),
                 float(np.exp(rng.normal(0.0, 0.15))), float(np.exp(rng.normal(0.0, 0.18))),
                 float(rng.uniform(228.0, 250.0)))


def case_stain(site: Stain, rng: np.random.Generator) -> Stain:
    """Return the site's stain with a case's own small jitter (slide thickness, staining time)."""
    return Stain(_unit(site.h_vector + rng.normal(0.0, 0.02, 3)), _unit(site.e_vector + rng.normal(0.0, 0.02, 3)),
                 site.h_scale * float(np.exp(rng.normal(0.0, 0.07))), site.e_scale * float(np.exp(rng.normal(0.0, 0.08))),
                 site.light + float(rng.normal(0.0, 2.0)))


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Return a smooth unit-variance random field of ``shape`` with correlation length ``cell`` px."""
    step = max(1, int(cell / 4))
    small = (max(4, shape[0] // step + 2), max(4, shape[1] // step + 2))
    coarse = ndimage.gaussian_filter(rng.standard_normal(small).astype(np.float32), cell / step / 2, mode="wrap")
    field = np.asarray(Image.fromarray(coarse, mode="F").resize((shape[1], shape[0]), Image.Resampling.BILINEAR))
    return (field - float(field.mean())) / max(float(field.std()), 1e-6)


@dataclass
class _Canvas:
    """The haematoxylin and eosin concentration maps being painted."""

    h: np.ndarray
    e: np.ndarray

    @property
    def size(self) -> int:
        """The canvas's side in pixels."""
        return self.h.shape[0]


def _stamp(canvas: _Canvas, y: float, x: float, r: float, elong: float, angle: float, h: float,
           membrane: float = 0.0, cytoplasm: float = 0.0) -> None:
    """Paint one nucleus (a soft ellipse of H), with an optional cell membrane ring and eosinophilic cytoplasm."""
    reach = r * (2.2 if membrane or cytoplasm else 1.0) * max(elong, 1.0) + 1.5
    y0, y1 = max(0, int(y - reach)), min(canvas.size, int(y + reach) + 2)
    x0, x1 = max(0, int(x - reach)), min(canvas.size, int(x + reach) + 2)
    if y0 >= y1 or x0 >= x1:
        return
    dy, dx = np.arange(y0, y1)[:, None] - y, np.arange(x0, x1)[None, :] - x
    c, s = np.cos(angle), np.sin(angle)
    u, v = (dx * c + dy * s) / (r * elong), (-dx * s + dy * c) * elong / r
    rho = np.sqrt(u * u + v * v)
    canvas.h[y0:y1, x0:x1] += h * _unit_clip((1.0 - rho) * r * 0.9 + 0.5)
    if cytoplasm:
        canvas.e[y0:y1, x0:x1] += cytoplasm * _unit_clip(2.0 - rho)
    if membrane:
        canvas.h[y0:y1, x0:x1] += membrane * _unit_clip(1.0 - np.abs(rho - 2.0) * r / 1.1)


def _unit_clip(x: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] (cheaper than ``np.clip`` on small arrays)."""
    return np.minimum(np.maximum(x, 0.0), 1.0)


def _mitosis(canvas: _Canvas, y: float, x: float, r: float, rng: np.random.Generator) -> None:
    """Paint a mitotic figure: a few dark condensed clumps (or a metaphase bar) of chromatin."""
    if rng.random() < 0.4:
        _stamp(canvas, y, x, r * 0.75, 1.9, rng.uniform(0, np.pi), 1.9)
        return
    for _ in range(int(rng.integers(3, 6))):
        _stamp(canvas, y + rng.normal(0, 0.45 * r), x + rng.normal(0, 0.45 * r), rng.uniform(0.7, 1.2), 1.2,
               rng.uniform(0, np.pi), 1.8)


def _centres(kind: str, size: int, r0: float, spacing: float, rng: np.random.Generator,
             canvas: _Canvas, comedo: bool = False) -> np.ndarray:
    """Return the tumour cells' centres (n, 2) of one architecture, clearing lumina (or filling them with necrosis) on the canvas."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == "ILC":
        angle, points = rng.uniform(0, np.pi), []
        for _ in range(int(rng.integers(4, 8))):
            a = angle + rng.normal(0, 0.25)
            oy, ox = rng.uniform(0, size, 2)
            t = np.arange(-size, size, spacing * 0.95)
            points.append(np.column_stack([oy + t * np.sin(a) + rng.normal(0, 0.7, t.size),
                                           ox + t * np.cos(a) + rng.normal(0, 0.7, t.size)]))
        points.append(rng.uniform(0, size, (int(rng.integers(3, 10)), 2)))
        pts = np.concatenate(points)
    elif kind in ("DCIS", "other"):
        pts_list, n_rings = [], int(rng.integers(1, 3)) if kind == "DCIS" else int(rng.integers(4, 8))
        for _ in range(n_rings):
            radius = rng.uniform(0.16, 0.26) * size if kind == "DCIS" else rng.uniform(3.6, 5.0) * r0
            cy, cx = rng.uniform(0.2, 0.8, 2) * size
            layers = int(rng.integers(2, 4)) if kind == "DCIS" else 1
            lumen = radius - layers * spacing * 0.9
            dist = np.hypot(yy - cy, xx - cx)
            canvas.e[dist < lumen] *= 0.08
            if comedo:
                canvas.e[dist < lumen * 0.8] += 0.3 + 0.15 * rng.random(int((dist < lumen * 0.8).sum()))
            for k in range(layers):
                ring = radius - (k + 0.5) * spacing * 0.9
                n = max(5, int(2 * np.pi * ring / spacing))
                phi = rng.uniform(0, 2 * np.pi) + np.linspace(0, 2 * np.pi, n, endpoint=False)
                pts_list.append(np.column_stack([cy + ring * np.sin(phi), cx + ring * np.cos(phi)]) + rng.normal(0, 0.6, (n, 2)))
        pts = np.concatenate(pts_list)
    else:
        nests = smooth_field(rng, (size, size), rng.uniform(10, 18)) > rng.uniform(-0.6, 0.1)
        g = np.arange(spacing / 2, size, spacing)
        gy, gx = np.meshgrid(g, g, indexing="ij")
        pts = np.column_stack([gy.ravel(), gx.ravel()]) + rng.uniform(-0.35, 0.35, (gy.size, 2)) * spacing
        iy, ix = np.clip(pts.astype(int), 0, size - 1).T
        pts = pts[nests[iy, ix] & (rng.random(len(pts)) > 0.08)]
    inside = (pts >= -2).all(axis=1) & (pts < size + 2).all(axis=1)
    return pts[inside]


def render_micrograph(biology: TumourBiology, stain: Stain, size: int, rng: np.random.Generator) -> np.ndarray:
    """Render one case's H&E-like micrograph.

    Args:
        biology: the case's grade, Ki-67, type and HER2 (the renderer's whole view of the case).
        stain: the case's stain (``case_stain`` of its site's ``site_stain``).
        size: the side of the square micrograph in pixels.
        rng: the case's pathology noise generator.

    Returns:
        (size, size, 3) uint8 RGB.
    """
    shape = (size, size)
    grade = int(np.clip(biology.histologic_grade, 1, 3))
    fibres = ndimage.gaussian_filter(rng.standard_normal(shape), (0.7, 3.5) if rng.random() < 0.5 else (3.5, 0.7))
    e = 0.42 + 0.10 * smooth_field(rng, shape, 8) + 0.55 * fibres
    e[smooth_field(rng, shape, 12) > rng.uniform(1.3, 2.2)] *= 0.1  # fat or a tissue crack
    canvas = _Canvas(np.zeros(shape), np.clip(e, 0.02, None))
    kind = biology.histologic_type if biology.histologic_type in ("ILC", "DCIS", "other") else "IDC"
    ki = np.log(max(biology.ki67, 1.0) / 22.0)
    r0 = _NUCLEUS_R[grade] * float(np.exp(rng.normal(0, 0.05))) * (0.8 if kind == "ILC" else 1.0)
    pleo = _PLEOMORPHISM[grade] * (0.6 if kind == "ILC" else 1.0)
    spacing = r0 * float(np.clip(2.75 - 0.18 * (grade - 2) - 0.22 * ki + rng.normal(0, 0.12), 2.05, 3.4))
    her2_cue = rng.uniform(0.5, 1.0) if biology.her2 else rng.uniform(0.0, 0.3) * (rng.random() < 0.35)
    p_mitosis = 0.008 + 0.11 * max(biology.ki67, 1.0) / 100.0 * (0.55 + 0.25 * grade)
    centres = _centres(kind, size, r0, spacing, rng, canvas, comedo=grade == 3)
    for y, x in centres:
        r = r0 * float(np.exp(rng.normal(0, pleo)))
        if rng.random() < p_mitosis:
            _mitosis(canvas, y, x, r, rng)
            continue
        h = 0.95 * float(np.exp(rng.normal(0.04 * (grade - 2), 0.08 + 0.5 * pleo)))
        _stamp(canvas, y, x, r, float(np.exp(rng.normal(0, 0.1 + pleo))), rng.uniform(0, np.pi), h,
               membrane=0.32 * her2_cue, cytoplasm=0.12 + 0.18 * her2_cue)
        if grade == 3 and rng.random() < 0.6:
            _stamp(canvas, y + rng.normal(0, 0.3 * r), x + rng.normal(0, 0.3 * r), 0.8, 1.0, 0.0, 0.7)
    for _ in range(int(rng.integers(6, 20))):  # fibroblasts: thin dark spindles
        _stamp(canvas, *rng.uniform(0, size, 2), rng.uniform(1.2, 1.8), 2.8, rng.uniform(0, np.pi), 0.85)
    for _ in range(int(rng.poisson(rng.uniform(2, 25)))):  # lymphocytes: small round dark nuclei
        _stamp(canvas, *rng.uniform(0, size, 2), rng.uniform(1.4, 1.9), 1.0, 0.0, 1.25)
    chromatin = 1.0 + 0.22 * ndimage.gaussian_filter(rng.standard_normal(shape), 0.6) / 0.33
    h_map = np.clip(canvas.h, 0, 2.4) * chromatin * stain.h_scale
    e_map = np.clip(canvas.e, 0, 1.5) * stain.e_scale
    od = h_map[..., None] * stain.h_vector + e_map[..., None] * stain.e_vector + 0.03
    rgb = stain.light * np.exp(-od)
    rgb = ndimage.gaussian_filter(rgb, (rng.uniform(0.3, 0.9),) * 2 + (0,))
    rgb += rng.normal(0, 3.0, rgb.shape)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
