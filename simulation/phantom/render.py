"""B-mode image and lesion mask of one case, made from its lesion features and a noise RNG only.

The image is built in beam space (rows = depth, columns = scan lines) in decibels: tissue layers,
the lesion and its posterior acoustic effect, speckle, depth attenuation; then log-compressed,
scan-converted to the display (linear: a rectangle; sector: a fan), blurred, and overlaid with
the scanner's burned-in UI. The renderer never sees a label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from simulation.phantom.features import LesionFeatures
from simulation.phantom.presets import Scanner

DB_TOP = 10.0  # dB shown as white
_GAMMA = 1.4
_SIZE_LO_MM, _SIZE_HI_MM = 8.0, 50.0
_FRAC_LO, _FRAC_HI = 0.15, 0.45


@dataclass
class Rendered:
    """One rendered case: the stored image (H, W) or (H, W, 3) uint8 and its uint8 0/255 mask."""

    image: np.ndarray
    mask: np.ndarray


@dataclass
class SiteGeometry:
    """A scanner's display layout, precomputed once per site: field of view, scan conversion, UI."""

    scanner: Scanner
    height: int
    width: int
    fov_box: tuple[int, int, int, int]
    beam_shape: tuple[int, int]
    col_px: np.ndarray
    pixel_mm: float
    fov_mask: np.ndarray
    fov_index: tuple[np.ndarray, np.ndarray]
    beam_coords: np.ndarray | None
    ui_mask: np.ndarray

    @classmethod
    def build(cls, scanner: Scanner, site_name: str) -> SiteGeometry:
        """Lay out the display of ``scanner`` (UI bars, ruler, field of view) for one site.

        Args:
            scanner: the site's scanner.
            site_name: shown in the burned-in UI text.

        Returns:
            The geometry shared by every case of the site.
        """
        h, w = scanner.height, scanner.width
        top = max(7, round(0.085 * h)) if scanner.ui_text else max(3, round(0.03 * h))
        bottom = max(5, round(0.07 * h))
        left = max(3, round(0.05 * w))
        right = max(6, round(0.09 * w)) if scanner.ruler else left
        x0, y0, x1, y1 = left, top, w - right, h - bottom
        if scanner.geometry == "linear":
            hb, wb = y1 - y0, x1 - x0
            col_px = np.ones(hb)
            pixel_mm = scanner.fov_width_mm / wb
            fov_mask = np.zeros((h, w), bool)
            fov_mask[y0:y1, x0:x1] = True
            beam_coords = None
        else:
            hb = y1 - y0
            theta = np.deg2rad(scanner.sector_half_angle_deg)
            r1 = (x1 - x0) / (2.0 * np.sin(theta))
            r1 = max(r1, hb * 1.2)
            r0 = r1 - hb
            xc, apex_y = 0.5 * (x0 + x1 - 1), y0 - r0
            wb = int(round(0.5 * (r0 + r1) * 2 * theta))
            ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
            r = np.hypot(xs - xc, ys - apex_y)
            ang = np.arctan2(xs - xc, ys - apex_y)
            rows = (r - r0) * (hb - 1) / (r1 - r0)
            cols = (ang + theta) * (wb - 1) / (2 * theta)
            fov_mask = (rows >= 0) & (rows <= hb - 1) & (cols >= 0) & (cols <= wb - 1)
            fov_mask &= (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)
            beam_coords = np.stack([rows[fov_mask], cols[fov_mask]]).astype(np.float32)
            col_px = (r0 + np.arange(hb) * (r1 - r0) / (hb - 1)) * (2 * theta / (wb - 1))
            pixel_mm = scanner.depth_mm / hb
        fov_index = np.nonzero(fov_mask)
        ui = static_ui_layer(scanner, site_name, (h, w), (x0, y0, x1, y1), pixel_mm)
        return cls(scanner, h, w, (x0, y0, x1, y1), (hb, wb), col_px, pixel_mm, fov_mask, fov_index,
                   beam_coords, ui & ~fov_mask)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Return a smooth unit-variance random field of ``shape`` with correlation length ``cell`` px."""
    step = max(1, int(cell / 4))
    small = (max(4, shape[0] // step + 1), max(4, shape[1] // step + 1))
    coarse = ndimage.gaussian_filter(rng.standard_normal(small).astype(np.float32), cell / step / 2, mode="wrap")
    field = np.asarray(Image.fromarray(coarse, mode="F").resize((shape[1], shape[0]), Image.Resampling.BILINEAR))
    return (field - float(field.mean())) / max(float(field.std()), 1e-6)


def _wave(rng: np.random.Generator, u: np.ndarray, amp: float, freqs: tuple[float, ...]) -> np.ndarray:
    """Return a smooth random boundary offset along the lateral axis ``u`` (0..1)."""
    out = np.zeros_like(u)
    for f in freqs:
        out += amp * rng.uniform(0.4, 1.0) * np.sin(2 * np.pi * (f * u + rng.random()))
    return out


def tissue_db(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Return the tissue echogenicity map in dB (skin, fat, gland, fascia, muscle, chest wall).

    Returns:
        The map and the smooth texture field reused for the lesion's interior.
    """
    hb, wb = shape
    d = (np.arange(hb, dtype=np.float32) / hb)[:, None]
    u = np.arange(wb, dtype=np.float32) / wb
    texture = _smooth_noise(rng, shape, cell=max(4.0, hb / 14))
    lobules = _smooth_noise(rng, shape, cell=max(5.0, hb / 8))
    skin_line = 0.012 + 0 * u
    skin_end = 0.04 + _wave(rng, u, 0.004, (0.7,))
    fat_end = rng.uniform(0.15, 0.24) + _wave(rng, u, 0.025, (0.8, 1.9))
    gland_end = rng.uniform(0.64, 0.72) + _wave(rng, u, 0.03, (0.6, 1.4))
    retro_end = gland_end + rng.uniform(0.015, 0.03)
    fascia_end = retro_end + 0.012
    muscle_end = fascia_end + rng.uniform(0.12, 0.18) + _wave(rng, u, 0.01, (1.1,))
    slope, n_stripes = rng.uniform(-0.6, 0.6), rng.uniform(14, 22)
    stripes = np.sin(2 * np.pi * (n_stripes * (d + slope * 0.1 * u[None, :]) + 0.15 * texture))
    muscle = -11.0 + 10.0 * np.clip(stripes, 0, 1) ** 2
    gland = 0.5 + 3.5 * texture
    gland = np.where(lobules > 1.3, -7.0 + 2.0 * texture, gland)
    fat = -12.0 + 2.0 * texture
    tissue = np.full(shape, -17.0, np.float32)
    for boundary, value in ((muscle_end, muscle), (fascia_end, 5.0), (retro_end, fat), (gland_end, gland),
                            (fat_end, fat), (skin_end, -2.0), (skin_line, 6.0)):
        tissue = np.where(d < boundary[None, :], value, tissue)
    return tissue.astype(np.float32), texture


MarginParts = list[tuple[str, np.ndarray]]


def _margin_parts(rng: np.random.Generator, irregularity: float, pattern: str) -> MarginParts:
    """Draw the random parts of a lesion outline whose amplitude grows with ``irregularity``.

    Each part is (kind, parameters): a harmonic ``("cos", [k, amp, phase])``,
    Gaussian spicules or microlobules ``("spike", [[centre, height, width, amp], ...])``, triangular
    corners ``("corner", ...)`` or a constant ``("const", [value])``.
    """
    m = irregularity

    def cos_k(k: float, amp: float) -> tuple[str, np.ndarray]:
        """One random-phase harmonic of the outline."""
        return "cos", np.array([k, amp, rng.uniform(0, 2 * np.pi)])

    def bumps(kind: str, n: int, widths: tuple[float, float], amp: float) -> tuple[str, np.ndarray]:
        """``n`` bumps (spicules, microlobules or corners) at random angles, heights and widths."""
        return kind, np.stack([rng.uniform(-np.pi, np.pi, n), rng.uniform(0.3, 1.0, n),
                               rng.uniform(*widths, n), np.full(n, amp)], axis=1)

    parts: MarginParts = [cos_k(2, 0.03), cos_k(3, 0.025)]
    if pattern == "lobulated":
        parts += [cos_k(3, 0.2 * m), cos_k(4, 0.15 * m), cos_k(5, 0.1 * m)]
    elif pattern == "microlobulated":
        parts += [cos_k(3, 0.05 * m), bumps("spike", int(rng.integers(14, 22)), (0.08, 0.15), 0.3 * m),
                  ("const", np.array([-0.08 * m]))]
    elif pattern == "spiculated":
        parts += [cos_k(2, 0.05 * m), cos_k(4, 0.05 * m),
                  bumps("spike", int(rng.integers(10, 18)), (0.05, 0.09), 0.75 * m)]
    else:
        parts += [bumps("corner", int(rng.integers(4, 7)), (0.3, 0.5), 0.45 * m), ("const", np.array([-0.1 * m]))]
    return parts


def margin_offset(parts: MarginParts, phi: np.ndarray) -> np.ndarray:
    """Return the relative boundary offset delta(phi) of a lesion outline."""
    delta = np.zeros_like(phi)
    for kind, p in parts:
        if kind == "cos":
            delta += p[1] * np.cos(p[0] * phi + p[2])
        elif kind == "const":
            delta += p[0]
        else:
            for centre, height, width, amp in p:
                diff = np.abs((phi - centre + np.pi) % (2 * np.pi) - np.pi)
                bump = np.exp(-((diff / width) ** 2)) if kind == "spike" else np.maximum(0, 1 - diff / width)
                delta += amp * height * bump
    return delta


def _lesion_frac(size_mm: float) -> float:
    """Map tumour size to the lesion's longest axis as a fraction of the field width (15-45%)."""
    t = (np.log(size_mm) - np.log(_SIZE_LO_MM)) / (np.log(_SIZE_HI_MM) - np.log(_SIZE_LO_MM))
    return float(_FRAC_LO + (_FRAC_HI - _FRAC_LO) * np.clip(t, 0.0, 1.0))


@dataclass(frozen=True)
class LesionShape:
    """Where and how big a lesion sits in beam space: its outline and the parameters of its edge and halo.

    ``a`` and ``b`` are the half-axes in display px, ``outline_x`` / ``outline_y`` the outline's
    sampled offsets from the centre (display px), ``row_c`` / ``col_c`` the centre in beam rows and
    scan lines, ``col_scale`` display px per scan line at the centre's depth.
    """

    a: float
    b: float
    tilt: float
    parts: MarginParts
    outline_x: np.ndarray
    outline_y: np.ndarray
    row_c: float
    col_c: float
    col_scale: float
    halo: float
    pad: float

    def outline(self, phi: np.ndarray, delta: np.ndarray, a: float | None = None,
                b: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Return the (x, y) offsets in display px of the outline ``(1 + delta(phi))`` around the centre."""
        a, b = self.a if a is None else a, self.b if b is None else b
        ct, st = np.cos(self.tilt), np.sin(self.tilt)
        ex, ey = (1 + delta) * a * np.cos(phi), (1 + delta) * b * np.sin(phi)
        return ex * ct - ey * st, ex * st + ey * ct


_OUTLINE_PROBE = np.linspace(-np.pi, np.pi, 721)


def place_lesion(lesion: LesionFeatures, geometry: SiteGeometry, shape: tuple[int, int],
                 rng: np.random.Generator) -> LesionShape:
    """Size, outline and place a lesion in a beam-space image of ``shape`` (draws its margin parts from ``rng``)."""
    hb, wb = shape
    scale = geometry.width / 480.0
    row_guess = int(np.clip(lesion.center_d * hb, 0, hb - 1))
    diam = _lesion_frac(lesion.tumor_size_mm) * wb * float(geometry.col_px[row_guess]) * geometry.scanner.zoom
    r = lesion.aspect_ratio
    a, b = (0.5 * diam / r, 0.5 * diam) if r >= 1 else (0.5 * diam, 0.5 * diam * r)
    tilt = np.deg2rad(lesion.tilt_deg)
    ct, st = np.cos(tilt), np.sin(tilt)

    def outline(phi: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the outline's (x, y) offsets from the centre in display px."""
        ex, ey = (1 + delta) * a * np.cos(phi), (1 + delta) * b * np.sin(phi)
        return ex * ct - ey * st, ex * st + ey * ct

    parts = _margin_parts(rng, lesion.margin_irregularity, lesion.margin_pattern)
    ox, oy = outline(_OUTLINE_PROBE, margin_offset(parts, _OUTLINE_PROBE))
    halo = 4.0 * scale + 1.0
    pad = 2.5 * halo
    shrink = min(1.0, 0.8 * hb / (oy.max() - oy.min() + 2 * pad), 0.85 * wb / (ox.max() - ox.min() + 2 * pad))
    a, b, ox, oy = a * shrink, b * shrink, ox * shrink, oy * shrink

    row_c = lesion.center_d * hb
    row_c = float(np.clip(row_c, 0.06 * hb - oy.min() + halo, 0.86 * hb - oy.max() - pad))
    col_scale = float(geometry.col_px[int(np.clip(row_c, 0, hb - 1))])
    col_c = float(np.clip(lesion.center_u * wb, 3 + pad / col_scale - ox.min() / col_scale,
                          wb - 4 - pad / col_scale - ox.max() / col_scale))
    return LesionShape(a, b, float(tilt), parts, ox, oy, row_c, col_c, col_scale, halo, pad)


Box = tuple[int, int, int, int]


def lesion_inside(shape: LesionShape, beam_shape: tuple[int, int], scale: float = 1.0,
                  shift: tuple[float, float] = (0.0, 0.0)) -> tuple[np.ndarray, Box]:
    """Return the signed inside distance (display px, >= 0 inside) over the lesion's box, and the box.

    Args:
        shape: the placed lesion.
        beam_shape: the beam image's (rows, scan lines).
        scale: the in-plane size factor of this cross-section (1: the full lesion).
        shift: (rows, scan lines) moved from the placed centre.

    Returns:
        The distance field and its box (r0, r1, c0, c1) in the beam image.
    """
    hb, wb = beam_shape
    a, b = shape.a * scale, shape.b * scale
    ox, oy = shape.outline_x * scale, shape.outline_y * scale
    row_c, col_c, col_scale, pad = shape.row_c + shift[0], shape.col_c + shift[1], shape.col_scale, shape.pad
    r0 = max(0, int(np.floor(row_c + oy.min() - pad)))
    r1 = min(hb, int(np.ceil(row_c + oy.max() + pad)) + 1)
    c0 = max(0, int(np.floor(col_c + (ox.min() - pad) / col_scale)))
    c1 = min(wb, int(np.ceil(col_c + (ox.max() + pad) / col_scale)) + 1)

    ct, st = np.cos(shape.tilt), np.sin(shape.tilt)
    yy = (np.arange(r0, r1, dtype=np.float32) - row_c)[:, None]
    xx = (np.arange(c0, c1, dtype=np.float32) - col_c)[None, :] * col_scale
    xr, yr = xx * ct + yy * st, -xx * st + yy * ct
    ex, ey = xr / a, yr / b
    rho = np.hypot(ex, ey)
    table = np.linspace(-np.pi, np.pi, 2049)
    delta = np.interp(np.arctan2(ey, ex), table, margin_offset(shape.parts, table)).astype(np.float32)
    return (1 + delta - rho) * np.sqrt(a * b), (r0, r1, c0, c1)


def paint_lesion(tissue: np.ndarray, texture: np.ndarray, inside_dist: np.ndarray, box: Box,
                 lesion: LesionFeatures, scale: float) -> np.ndarray:
    """Blend a hypoechoic lesion and its echogenic halo into ``tissue`` (in place); return its beam-space mask.

    Args:
        tissue: the beam-space tissue map in dB.
        texture: the smooth texture field reused for the lesion's interior.
        inside_dist: the signed inside distance over ``box`` (``lesion_inside``).
        box: (r0, r1, c0, c1) in the beam image.
        lesion: the echogenicity and margin irregularity drawn.
        scale: display px per px of a 480 px wide image.
    """
    r0, r1, c0, c1 = box
    halo = 4.0 * scale + 1.0
    inside = inside_dist >= 0
    edge = (1.0 + 0.8 * scale) * (1.0 + 1.5 * lesion.margin_irregularity)
    weight = np.clip(inside_dist / edge + 0.5, 0, 1)
    patch = tissue[r0:r1, c0:c1]
    lesion_db = -26.0 + 70.0 * (lesion.echogenicity - 0.28) + 3.0 * texture[r0:r1, c0:c1]
    halo_gain = 12.0 * max(0.0, lesion.margin_irregularity - 0.2) / 0.8
    halo_w = np.exp(-(((np.minimum(inside_dist, 0.0)) + 0.5 * edge + 0.5 * halo) / halo) ** 2) * (~inside)
    patch[:] = patch * (1 - weight) + lesion_db * weight + halo_gain * halo_w
    mask = np.zeros(tissue.shape, bool)
    mask[r0:r1, c0:c1] = inside
    return mask


def add_posterior(tissue: np.ndarray, mask: np.ndarray, box: Box, posterior: float) -> None:
    """Add the posterior acoustic effect below the lesion ``mask`` (shadow if ``posterior`` < 0) to ``tissue``."""
    hb, wb = tissue.shape
    r0, _, c0, c1 = box
    spread = max(1.0, 0.12 * (c1 - c0))
    s0, s1 = max(0, c0 - int(3 * spread) - 1), min(wb, c1 + int(3 * spread) + 1)
    beside = mask[r0:, s0:s1]
    below = np.maximum.accumulate(beside, axis=0) & ~beside
    below_s = ndimage.gaussian_filter1d(below.astype(np.float32), spread, axis=1, mode="constant")
    below_s *= ~beside
    p = posterior
    tissue[r0:, s0:s1] += (22.0 * p if p < 0 else 12.0 * p) * below_s


def _calcifications(inside_dist: np.ndarray, box: Box, shape: tuple[int, int], a: float, b: float, n: int,
                    scale: float, rng: np.random.Generator) -> np.ndarray:
    """Return the beam-space pixels of ``n`` microcalcifications scattered over the lesion's core."""
    hb, wb = shape
    r0, _, c0, _ = box
    calcs = np.zeros(shape, bool)
    core = np.flatnonzero(inside_dist.ravel() >= 0.3 * np.sqrt(a * b))
    if n > 0 and core.size:
        spots = rng.choice(core, size=min(n, core.size), replace=False)
        sy, sx = np.unravel_index(spots, inside_dist.shape)
        dot = max(1, int(round(2.0 * scale)))
        for dy in range(dot):
            for dx in range(dot):
                calcs[np.clip(r0 + sy + dy, 0, hb - 1), np.clip(c0 + sx + dx, 0, wb - 1)] = True
    return calcs


def _add_lesion(tissue: np.ndarray, texture: np.ndarray, lesion: LesionFeatures, geometry: SiteGeometry,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw the lesion, its halo, calcifications and posterior effect into ``tissue`` (in place).

    Returns:
        The beam-space boolean lesion mask and the microcalcification pixels (drawn after speckle).
    """
    shape = place_lesion(lesion, geometry, tissue.shape, rng)
    inside_dist, box = lesion_inside(shape, tissue.shape)
    scale = geometry.width / 480.0
    mask = paint_lesion(tissue, texture, inside_dist, box, lesion, scale)
    calcs = _calcifications(inside_dist, box, tissue.shape, shape.a, shape.b, lesion.n_calcifications, scale, rng)
    add_posterior(tissue, mask, box, lesion.posterior)
    return mask, calcs


def _speckle_db(rng: np.random.Generator, shape: tuple[int, int], scanner: Scanner, scale: float) -> np.ndarray:
    """Return fully developed speckle (Rayleigh amplitude) in dB with the scanner's grain size."""
    return speckle_db(rng.standard_normal((2, *shape), dtype=np.float32), scanner, scale)


def speckle_db(noise: np.ndarray, scanner: Scanner, scale: float) -> np.ndarray:
    """Return the speckle in dB of a (2, rows, lines) white complex field blurred to the scanner's grain size."""
    sigma = (max(0.5, scanner.grain_axial_px * scale), max(0.5, scanner.grain_lateral_px * scale))
    re = ndimage.gaussian_filter(noise[0], sigma, mode="reflect", truncate=3.0)
    im = ndimage.gaussian_filter(noise[1], sigma, mode="reflect", truncate=3.0)
    intensity = re * re + im * im
    intensity /= float(intensity.mean())
    return 8.5 * scanner.speckle_contrast * np.log10(intensity + 1e-4)


def to_display(db: np.ndarray, beam_mask: np.ndarray, geometry: SiteGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Log-compress, scan-convert and blur a beam-space dB image; return the uint8 display and its lesion mask."""
    scanner = geometry.scanner
    scale = geometry.width / 480.0
    db += 20.0 * np.log10(scanner.gain / 0.7)
    gray = np.clip((db - DB_TOP + scanner.dynamic_range_db) / scanner.dynamic_range_db, 0, 1) ** _GAMMA

    display = np.zeros((geometry.height, geometry.width), np.float32)
    mask = np.zeros((geometry.height, geometry.width), bool)
    x0, y0, x1, y1 = geometry.fov_box
    if geometry.beam_coords is None:
        display[y0:y1, x0:x1] = gray
        mask[y0:y1, x0:x1] = beam_mask
    else:
        display[geometry.fov_index] = ndimage.map_coordinates(gray, geometry.beam_coords, order=1, prefilter=False)
        nearest = np.rint(geometry.beam_coords).astype(np.intp)
        mask[geometry.fov_index] = beam_mask[nearest[0], nearest[1]]
    if scanner.blur_px > 0:
        display = ndimage.gaussian_filter(display, scanner.blur_px * scale, mode="constant")
    if scanner.resolution < 1.0:
        display = resample(display, scanner.resolution)
    return np.rint(display * 255.0).astype(np.uint8), mask


def resample(display: np.ndarray, factor: float) -> np.ndarray:
    """Return a float display down-sampled to ``factor`` of its size (area average) and up-sampled back (bilinear)."""
    h, w = display.shape
    small = (max(2, round(w * factor)), max(2, round(h * factor)))
    image = Image.fromarray(display, mode="F").resize(small, Image.Resampling.BOX)
    return np.asarray(image.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32).clip(0.0, 1.0)


def render_case(lesion: LesionFeatures, geometry: SiteGeometry, rng: np.random.Generator) -> Rendered:
    """Render one case's stored image and lesion mask from its lesion features and noise only.

    Args:
        lesion: the case's image-visible features (never its label).
        geometry: the site's display layout and scanner.
        rng: the case's own noise generator.

    Returns:
        The image as stored by the site (gray, or RGB at a tinted site) and the 0/255 mask.
    """
    scanner = geometry.scanner
    hb, wb = geometry.beam_shape
    scale = geometry.width / 480.0
    tissue, texture = tissue_db(rng, (hb, wb))
    beam_mask, calcs = _add_lesion(tissue, texture, lesion, geometry, rng)
    depth = (np.arange(hb, dtype=np.float32) / hb)[:, None]
    db = tissue + _speckle_db(rng, (hb, wb), scanner, scale) - 10.0 * scanner.attenuation * depth
    db[calcs] = np.maximum(db[calcs], DB_TOP + 2.0)
    image, mask = to_display(db, beam_mask, geometry)

    overlay = geometry.ui_mask
    if rng.random() < scanner.calipers:
        overlay = overlay | caliper_layer(mask, geometry.pixel_mm, (geometry.height, geometry.width),
                                          geometry.fov_box)
    return Rendered(image=finish_frame(image, overlay, scanner), mask=np.where(mask, 255, 0).astype(np.uint8))


def finish_frame(image: np.ndarray, overlay: np.ndarray, scanner: Scanner) -> np.ndarray:
    """Burn the UI overlay into the image and apply the scanner's colour tint, if any."""
    if scanner.tint is None:
        image[overlay] = 235
        return image
    rgb = np.rint(image[..., None] * np.asarray(scanner.tint, np.float32)).clip(0, 255).astype(np.uint8)
    rgb[overlay] = (255, 214, 96)
    return rgb


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Return Pillow's built-in font at ``size`` px (no font file needed)."""
    return ImageFont.load_default(size=size)


def static_ui_layer(scanner: Scanner, site_name: str, shape: tuple[int, int], fov_box: tuple[int, int, int, int],
                    pixel_mm: float) -> np.ndarray:
    """Draw the scanner's fixed burned-in UI (header text, depth ruler, markers) as a boolean layer.

    Args:
        scanner: the site's scanner.
        site_name: the site, shown in the header.
        shape: display (height, width).
        fov_box: the field of view's bounding box (x0, y0, x1, y1).
        pixel_mm: millimetres per display pixel.

    Returns:
        True where the UI is drawn.
    """
    h, w = shape
    x0, y0, x1, y1 = fov_box
    size = max(7, round(0.042 * h))
    font = _font(size)
    layer = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(layer)
    if scanner.ui_text:
        left_text = f"{site_name.upper().replace('_', ' ')}  {scanner.probe}"
        gain_db = round(50 + 40 * (scanner.gain - 0.7))
        right_text = f"{scanner.frequency_mhz:.0f}MHz G{gain_db} DR{scanner.dynamic_range_db:.0f}"
        draw.text((x0 + size, 1), left_text, fill=255, font=font)
        if x0 + size + draw.textlength(left_text, font=font) + size < w - 2 - draw.textlength(right_text, font=font):
            draw.text((w - 2, 1), right_text, fill=255, font=font, anchor="ra")
        draw.rectangle((x0, 2, x0 + size // 2, 2 + size // 2), fill=255)
    depth_mm = (y1 - y0) * pixel_mm
    draw.text((w - 2, h - 1), f"{depth_mm / 10:.1f}cm", fill=255, font=font, anchor="rd")
    if scanner.ruler:
        xr = x1 + max(2, (w - x1) // 2 - 2)
        draw.line((xr, y0, xr, y1 - 1), fill=255)
        for k in range(int(depth_mm // 5) + 1):
            y = y0 + round(k * 5 / pixel_mm)
            long = k % 2 == 0
            draw.line((xr, y, xr + (4 if long else 2) * max(1, w // 240), y), fill=255)
            if long and h >= 200 and 0 < k and y < y1 - size:
                draw.text((xr + 5 * max(1, w // 240), y), str(k // 2), fill=255, font=font, anchor="lm")
        yf = y0 + round(0.45 * (y1 - y0))
        draw.polygon([(xr - 1, yf), (xr - 4, yf - 3), (xr - 4, yf + 3)], fill=255)
    return np.asarray(layer) > 127


def caliper_layer(mask: np.ndarray, pixel_mm: float, shape: tuple[int, int],
                  fov_box: tuple[int, int, int, int]) -> np.ndarray:
    """Draw two '+' calipers across the lesion's widest row and the distance read-out.

    Args:
        mask: the display lesion mask.
        pixel_mm: millimetres per display pixel.
        shape: display (height, width).
        fov_box: the field of view's bounding box (x0, y0, x1, y1).

    Returns:
        True where the calipers and their read-out are drawn.
    """
    h, w = shape
    rows = np.flatnonzero(mask.any(axis=1))
    row = int(rows[len(rows) // 2])
    cols = np.flatnonzero(mask[row])
    left, right = int(cols[0]), int(cols[-1])
    arm = max(2, round(0.012 * w))
    layer = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(layer)
    for x in (left, right):
        draw.line((x - arm, row, x + arm, row), fill=255)
        draw.line((x, row - arm, x, row + arm), fill=255)
    size = max(7, round(0.042 * h))
    draw.text((fov_box[0], h - 1), f"D1 {(right - left) * pixel_mm / 10:.2f}cm", fill=255,
              font=_font(size), anchor="ld")
    return np.asarray(layer) > 127
