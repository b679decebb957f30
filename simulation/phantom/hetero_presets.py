"""The heterogeneous federation: seven small training hospitals with strong scanner, label and quantity skew.

``hetero`` is for comparing strategies under non-IID data (issue 16): local-only models see one
scanner and one case mix, so they should generalise poorly to the external site, while pooled
training sees them all. ``hospital_outlier`` (a handheld probe) is the most shifted scanner on
every knob ``scanner_shift`` measures. ``hetero-tiny`` is the same federation at test size.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from simulation.phantom.presets import CaseMix, Preset, Scanner, SiteSpec

OUTLIER = "hospital_outlier"
# The nominal scanner the shifts are measured from (the demo's hospital_a, roughly).
NOMINAL_GAIN, NOMINAL_DR_DB, NOMINAL_GRAIN_PX = 0.7, 60.0, 1.8


def scanner_shift(scanner: Scanner) -> dict[str, float]:
    """How far a scanner is from nominal, knob by knob (0 = nominal; larger = stronger shift).

    gain and dynamic range in dB, speckle contrast, grain and zoom as absolute log-ratios,
    resolution as the share of the display size lost, tint as the weakest channel's shortfall.
    """
    tint = (1.0, 1.0, 1.0) if scanner.tint is None else scanner.tint
    return {
        "gain_db": abs(20.0 * float(np.log10(scanner.gain / NOMINAL_GAIN))),
        "dynamic_range_db": abs(scanner.dynamic_range_db - NOMINAL_DR_DB),
        "speckle_contrast": abs(float(np.log(scanner.speckle_contrast))),
        "grain": abs(float(np.log(scanner.grain_lateral_px / NOMINAL_GRAIN_PX))),
        "zoom": abs(float(np.log(scanner.zoom))),
        "resolution": 1.0 - scanner.resolution,
        "tint": 1.0 - min(tint) / max(tint),
        "blur_px": scanner.blur_px,
        "attenuation": scanner.attenuation,
    }


def _linear(manufacturer: str, model: str, probe: str, mhz: float, size: tuple[int, int], fov_mm: float,
            **knobs: object) -> Scanner:
    """A linear-array scanner of display ``size`` (rows, columns) with its knobs."""
    return Scanner(manufacturer, model, probe, mhz, size[0], size[1], "linear", fov_mm, 40.0, **knobs)  # type: ignore[arg-type]


def hetero() -> Preset:
    """Build the heterogeneous federation: seven training hospitals (40-120 cases, prevalence 15-60%) and one external."""
    sites = (
        SiteSpec("hospital_a", "train", "HA",
                 _linear("GE Healthcare", "LOGIQ E9", "ML6-15", 12.0, (360, 480), 48.0,
                         grain_axial_px=0.9, grain_lateral_px=1.8, gain=0.72, dynamic_range_db=60.0,
                         attenuation=0.7, blur_px=0.5, calipers=0.5),
                 CaseMix(120, 0.30, size_median_mm=21.0, type_probs=(0.80, 0.04, 0.10, 0.06))),
        SiteSpec("hospital_b", "train", "HB",
                 _linear("Siemens Healthineers", "ACUSON S2000", "9L4", 9.0, (420, 560), 54.0,
                         grain_axial_px=1.4, grain_lateral_px=2.7, gain=0.60, dynamic_range_db=50.0,
                         attenuation=1.3, blur_px=0.9, storage="dicom", calipers=0.3, zoom=0.93),
                 CaseMix(95, 0.45, size_median_mm=24.0, prolif_shift=0.15, age_mean=49.0,
                         type_probs=(0.84, 0.05, 0.05, 0.06))),
        SiteSpec("hospital_c", "train", "HC",
                 Scanner("Esaote", "MyLab Twice", "CA541", 7.5, 300, 400, "sector", 60.0, 50.0,
                         grain_axial_px=1.6, grain_lateral_px=2.2, gain=0.78, dynamic_range_db=68.0,
                         attenuation=1.5, blur_px=1.1, storage="png_rgb", tint=(1.0, 0.88, 0.70),
                         calipers=0.0, zoom=1.06, resolution=0.75),
                 CaseMix(70, 0.25, size_median_mm=19.0, prolif_shift=-0.1, age_mean=53.0,
                         type_probs=(0.76, 0.06, 0.12, 0.06))),
        SiteSpec("hospital_d", "train", "HD",
                 _linear("Samsung Medison", "RS85", "LA2-9A", 10.0, (320, 440), 46.0,
                         grain_axial_px=0.8, grain_lateral_px=1.5, gain=0.82, dynamic_range_db=72.0,
                         attenuation=0.8, blur_px=0.6, storage="png_rgb", tint=(0.80, 0.90, 1.0),
                         calipers=0.7, zoom=0.95, speckle_contrast=1.2),
                 CaseMix(55, 0.60, size_median_mm=25.0, prolif_shift=0.3, age_mean=48.0, her2_logit=-1.0,
                         type_probs=(0.86, 0.04, 0.04, 0.06))),
        SiteSpec("hospital_e", "train", "HE",
                 _linear("Canon Medical", "Aplio i800", "i18LX5", 14.0, (340, 460), 44.0,
                         grain_axial_px=1.0, grain_lateral_px=2.0, gain=0.66, dynamic_range_db=56.0,
                         attenuation=1.0, blur_px=1.3, ruler=False, calipers=0.2, resolution=0.70),
                 CaseMix(45, 0.15, size_median_mm=17.0, prolif_shift=-0.25, age_mean=55.0, er_logit=1.4,
                         type_probs=(0.72, 0.10, 0.12, 0.06))),
        SiteSpec("hospital_f", "train", "HF",
                 Scanner("Mindray", "Resona 7", "SC5-1U", 5.0, 280, 380, "sector", 56.0, 46.0,
                         grain_axial_px=1.3, grain_lateral_px=2.4, gain=0.74, dynamic_range_db=64.0,
                         attenuation=1.2, blur_px=0.8, calipers=0.4, zoom=1.08, speckle_contrast=0.85),
                 CaseMix(40, 0.50, size_median_mm=23.0, prolif_shift=0.1, age_mean=50.0,
                         type_probs=(0.82, 0.05, 0.07, 0.06))),
        SiteSpec(OUTLIER, "train", "HO",
                 _linear("Butterfly Network", "iQ+", "single-chip handheld", 5.0, (260, 340), 64.0,
                         grain_axial_px=2.2, grain_lateral_px=3.6, gain=0.50, dynamic_range_db=42.0,
                         attenuation=2.2, blur_px=1.6, storage="png_rgb", tint=(1.0, 0.70, 0.42),
                         ui_text=False, ruler=False, calipers=0.0, zoom=0.80, speckle_contrast=1.5,
                         resolution=0.45),
                 CaseMix(60, 0.40, size_median_mm=22.0, age_mean=52.0, type_probs=(0.80, 0.05, 0.09, 0.06))),
        SiteSpec("hospital_ext", "external", "HX",
                 _linear("Philips", "EPIQ 5", "eL18-4", 14.0, (280, 360), 44.0,
                         grain_axial_px=0.9, grain_lateral_px=1.7, gain=0.70, dynamic_range_db=58.0,
                         attenuation=0.9, blur_px=0.7, ruler=False, calipers=0.6, zoom=1.02, resolution=0.9),
                 CaseMix(150, 0.40, size_median_mm=22.0, prolif_shift=0.05, age_mean=52.0,
                         er_logit=0.85, her2_logit=-1.2, type_probs=(0.81, 0.05, 0.08, 0.06))),
    )
    return Preset("hetero", sites)


def hetero_tiny() -> Preset:
    """Build ``hetero`` at test size: the same scanners at about 1/4 of the display size, 20-37 cases per site."""
    sites = []
    for site in hetero().sites:
        s = site.scanner
        small = replace(s, height=s.height // 4 + 24, width=s.width // 4 + 24, grain_axial_px=s.grain_axial_px * 0.5,
                        grain_lateral_px=s.grain_lateral_px * 0.5, blur_px=s.blur_px * 0.5)
        sites.append(replace(site, scanner=small, mix=replace(site.mix, n_cases=max(20, site.mix.n_cases // 4))))
    return Preset("hetero-tiny", tuple(sites))
