"""Site descriptions of the phantom cohort: scanners, case mixes and the named presets."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

Geometry = Literal["linear", "sector"]
Storage = Literal["png", "png_rgb", "dicom"]
Role = Literal["train", "external"]


@dataclass(frozen=True)
class Scanner:
    """How one hospital's ultrasound machine turns tissue into pixels.

    Sizes and speckle grain are in display pixels (of a 480 px wide image; scaled with the width),
    lengths in millimetres. ``fov_width_mm`` calibrates linear probes and ``depth_mm`` sector
    probes. ``gain`` is an amplitude factor (0.7 = nominal), ``dynamic_range_db`` the displayed
    log-compression range, ``attenuation`` the uncorrected loss over the depth (x10 dB),
    ``calipers`` the share of cases with burned-in calipers, ``tint`` an RGB colour map,
    ``frame_time_ms`` the time between cine frames (its frame rate; used by the cine phantom only),
    ``zoom`` the lesion's on-screen size relative to nominal (a narrower field of view shows it larger),
    ``speckle_contrast`` a factor on the speckle's dB spread, ``resolution`` the fraction of the display
    size the detail survives (the image is down-sampled by it, then up-sampled back; 1 = none).
    """

    manufacturer: str
    model: str
    probe: str
    frequency_mhz: float
    height: int
    width: int
    geometry: Geometry
    fov_width_mm: float
    depth_mm: float
    grain_axial_px: float
    grain_lateral_px: float
    gain: float
    dynamic_range_db: float
    attenuation: float
    blur_px: float
    storage: Storage = "png"
    tint: tuple[float, float, float] | None = None
    ui_text: bool = True
    ruler: bool = True
    calipers: float = 0.0
    sector_half_angle_deg: float = 32.0
    frame_time_ms: float = 40.0
    zoom: float = 1.0
    speckle_contrast: float = 1.0
    resolution: float = 1.0


@dataclass(frozen=True)
class CaseMix:
    """Who comes to one hospital: size, subtype and outcome prevalence of its cases."""

    n_cases: int
    prevalence: float
    size_median_mm: float = 21.0
    size_sigma: float = 0.42
    age_mean: float = 51.0
    age_sd: float = 10.0
    prolif_shift: float = 0.0
    er_logit: float = 1.05
    her2_logit: float = -1.3
    type_probs: tuple[float, float, float, float] = (0.80, 0.05, 0.09, 0.06)


@dataclass(frozen=True)
class SiteSpec:
    """One phantom hospital: its name, role, case-id prefix, scanner and case mix."""

    name: str
    role: Role
    prefix: str
    scanner: Scanner
    mix: CaseMix


@dataclass(frozen=True)
class Preset:
    """A named federation of phantom hospitals."""

    name: str
    sites: tuple[SiteSpec, ...]


def _demo() -> Preset:
    """Build the default four-hospital federation (three training sites, one external)."""
    a = SiteSpec(
        "hospital_a", "train", "HA",
        Scanner("GE Healthcare", "LOGIQ E9", "ML6-15", 12.0, 360, 480, "linear", 48.0, 40.0,
                grain_axial_px=0.9, grain_lateral_px=1.8, gain=0.72, dynamic_range_db=60.0,
                attenuation=0.7, blur_px=0.5, calipers=0.6),
        CaseMix(180, 0.40, size_median_mm=21.0, type_probs=(0.80, 0.04, 0.10, 0.06)),
    )
    b = SiteSpec(
        "hospital_b", "train", "HB",
        Scanner("Siemens Healthineers", "ACUSON S2000", "9L4", 9.0, 420, 560, "linear", 52.0, 45.0,
                grain_axial_px=1.3, grain_lateral_px=2.6, gain=0.66, dynamic_range_db=52.0,
                attenuation=1.2, blur_px=0.9, storage="dicom", calipers=0.3),
        CaseMix(150, 0.46, size_median_mm=24.0, prolif_shift=0.15, age_mean=49.0,
                type_probs=(0.84, 0.05, 0.05, 0.06)),
    )
    c = SiteSpec(
        "hospital_c", "train", "HC",
        Scanner("Esaote", "MyLab Twice", "CA541", 7.5, 300, 400, "sector", 60.0, 50.0,
                grain_axial_px=1.6, grain_lateral_px=2.2, gain=0.76, dynamic_range_db=66.0,
                attenuation=1.5, blur_px=1.1, storage="png_rgb", tint=(1.0, 0.9, 0.74),
                calipers=0.0),
        CaseMix(130, 0.37, size_median_mm=19.0, prolif_shift=-0.1, age_mean=53.0,
                type_probs=(0.76, 0.06, 0.12, 0.06)),
    )
    ext = SiteSpec(
        "hospital_ext", "external", "HX",
        Scanner("Philips", "EPIQ 5", "eL18-4", 14.0, 280, 360, "linear", 44.0, 38.0,
                grain_axial_px=0.7, grain_lateral_px=1.4, gain=0.70, dynamic_range_db=56.0,
                attenuation=0.9, blur_px=0.7, ruler=False, calipers=0.8),
        CaseMix(160, 0.43, size_median_mm=23.0, prolif_shift=0.1, age_mean=52.0,
                er_logit=0.75, her2_logit=-1.15, type_probs=(0.82, 0.03, 0.07, 0.08)),
    )
    return Preset("demo", (a, b, c, ext))


def _tiny() -> Preset:
    """Build the test federation: the demo code path with small images and few cases."""
    demo = _demo()
    # (name, prefix, demo site whose scanner and case mix it copies, cases, height, width)
    picks = (("site_a", "SA", demo.sites[0], 44, 96, 128),
             ("site_b", "SB", demo.sites[1], 40, 104, 128),
             ("site_ext", "SX", demo.sites[2], 48, 96, 120))
    sites = []
    for name, prefix, base, n, height, width in picks:
        scanner = replace(base.scanner, height=height, width=width,
                          grain_axial_px=base.scanner.grain_axial_px * 0.5,
                          grain_lateral_px=base.scanner.grain_lateral_px * 0.5,
                          blur_px=base.scanner.blur_px * 0.5)
        role: Role = "external" if name == "site_ext" else "train"
        sites.append(SiteSpec(name, role, prefix, scanner, replace(base.mix, n_cases=n)))
    return Preset("tiny", tuple(sites))


def _all_presets() -> dict[str, Preset]:
    """Return every named preset: demo, tiny, and the heterogeneous ones of ``hetero_presets.py``."""
    from simulation.phantom.hetero_presets import hetero, hetero_tiny  # noqa: PLC0415 - it builds on this module's classes

    return {"demo": _demo(), "tiny": _tiny(), "hetero": hetero(), "hetero-tiny": hetero_tiny()}


PRESETS: dict[str, Preset] = _all_presets()


def scaled_preset(preset: Preset, total: int) -> Preset:
    """Return a copy of a preset whose sites together hold about ``total`` cases.

    Args:
        preset: the preset to scale.
        total: the wanted number of cases over all sites.

    Returns:
        The preset with every site's ``n_cases`` scaled proportionally (at least 4 per site).
    """
    current = sum(site.mix.n_cases for site in preset.sites)
    sites = tuple(
        replace(site, mix=replace(site.mix, n_cases=max(4, round(site.mix.n_cases * total / current))))
        for site in preset.sites
    )
    return replace(preset, sites=sites)
