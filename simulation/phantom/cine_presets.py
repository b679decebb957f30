"""The cine phantom's presets: the image presets' hospitals at cine size, with their scanners' frame rates."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

from simulation.phantom.presets import PRESETS, Preset, Role, Scanner, SiteSpec, Storage


@dataclass(frozen=True)
class CinePreset:
    """A named federation of phantom hospitals recording sweeps: sweep durations (s) and the fewest and most frames."""

    preset: Preset
    duration_s: tuple[float, float]
    frames: tuple[int, int]

    @property
    def name(self) -> str:
        """The preset's name (its random streams' key)."""
        return self.preset.name


def _cine_scanner(base: Scanner, height: int, width: int, frame_time_ms: float, storage: Storage) -> Scanner:
    """Return ``base`` at a small cine frame size (grain and blur halved, as the tiny preset does) and frame rate."""
    return replace(base, height=height, width=width, frame_time_ms=frame_time_ms, storage=storage,
                   grain_axial_px=base.grain_axial_px * 0.5, grain_lateral_px=base.grain_lateral_px * 0.5,
                   blur_px=base.blur_px * 0.5)


class _CineSite(NamedTuple):
    """One cine hospital: the demo site whose scanner and case mix it copies, its cases, frame size, rate and storage."""

    name: str
    prefix: str
    role: Role
    demo_site: int
    n_cases: int
    height: int
    width: int
    frame_time_ms: float
    storage: Storage


_DEMO_SITES = (
    _CineSite("hospital_a", "HA", "train", 0, 130, 96, 128, 33.3, "png"),
    _CineSite("hospital_b", "HB", "train", 1, 110, 96, 128, 50.0, "dicom"),
    _CineSite("hospital_c", "HC", "train", 2, 120, 84, 112, 40.0, "png_rgb"),
    _CineSite("hospital_ext", "HX", "external", 3, 120, 92, 120, 45.0, "dicom"),
)
_TINY_SITES = (
    _CineSite("site_a", "SA", "train", 0, 28, 64, 80, 66.7, "png"),
    _CineSite("site_b", "SB", "train", 1, 24, 64, 80, 83.3, "dicom"),
    _CineSite("site_ext", "SX", "external", 2, 28, 64, 80, 75.0, "png_rgb"),
)


def _cine_preset(name: str, picks: tuple[_CineSite, ...], duration_s: tuple[float, float],
                 frames: tuple[int, int]) -> CinePreset:
    """Build a cine preset of the demo hospitals ``picks`` with its sweep durations and frame-count bounds."""
    demo = PRESETS["demo"].sites
    sites = tuple(
        SiteSpec(pick.name, pick.role, pick.prefix,
                 _cine_scanner(demo[pick.demo_site].scanner, pick.height, pick.width, pick.frame_time_ms, pick.storage),
                 replace(demo[pick.demo_site].mix, n_cases=pick.n_cases))
        for pick in picks
    )
    return CinePreset(Preset(name, sites), duration_s, frames)


CINE_PRESETS: dict[str, CinePreset] = {
    "demo": _cine_preset("demo_cine", _DEMO_SITES, (1.0, 1.6), (16, 48)),
    "tiny": _cine_preset("tiny_cine", _TINY_SITES, (1.0, 1.3), (12, 20)),
}
