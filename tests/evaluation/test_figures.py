"""PNG figures of a report: valid, sized, not blank, deterministic, robust to missing keys."""

from __future__ import annotations

import copy
import io
from typing import Any

import numpy as np
from PIL import Image

from evaluation.figures import (
    auc_heatmap,
    calibration_figure,
    decision_figure,
    figure_name,
    model_colors,
    report_figures,
    roc_figure,
    safe_name,
)

SIZE = (600, 450)


def _pixels(png: bytes) -> np.ndarray:
    """Decode PNG bytes to an RGB array, checking the signature first."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)


def _assert_figure(png: bytes) -> np.ndarray:
    """A 600 x 450 PNG with real content (not a blank canvas)."""
    px = _pixels(png)
    assert (px.shape[1], px.shape[0]) == SIZE
    assert px.std() > 20
    assert (px.min(axis=2) < 240).mean() > 0.02
    return px


def _group(report: dict[str, Any], site: str, split: str) -> list[dict[str, Any]]:
    """The curves of one site and split."""
    return [c for c in report["curves"] if c["site"] == site and c["split"] == split]


def _tinted(px: np.ndarray) -> int:
    """Pixels of a pale but coloured fill (a translucent band over white)."""
    low = px.min(axis=2)
    return int(((low > 150) & (low < 245) & (np.ptp(px, axis=2) > 15)).sum())


def _has_colour(px: np.ndarray, hex_colour: str, at_least: int = 50) -> bool:
    """Whether the image has at least ``at_least`` pixels of (close to) this colour."""
    rgb = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.float64)
    return int((np.abs(px - rgb).max(axis=2) < 12).sum()) >= at_least


def test_each_figure_is_a_sized_non_blank_deterministic_png(report: dict[str, Any]) -> None:
    group = _group(report, "hospital_ext", "test")
    rows = [r for r in report["classification"] if r["site"] == "hospital_ext" and r["split"] == "test"]
    aucs = {r["model"]: r["auc"] for r in rows if "auc" in r}
    assert len(aucs) == 2  # one model's AUC is missing: its legend reads n/a
    makers = [
        lambda: roc_figure("hospital_ext", "test", group, aucs, bayes_auc=0.861),
        lambda: calibration_figure("hospital_ext", "test", group),
        lambda: decision_figure("hospital_ext", "test", group),
        lambda: auc_heatmap(report),
    ]
    for make in makers:
        first = make()
        px = _assert_figure(first)
        assert (np.ptp(px, axis=2) > 60).sum() > 500  # in colour, not grey
        assert make() == first
        assert b"matplotlib" not in first.lower()  # no software version embedded


def test_report_figures_cover_every_site_and_split(report: dict[str, Any], figures: dict[str, bytes]) -> None:
    pairs = {(c["site"], c["split"]) for c in report["curves"]}
    assert len(pairs) == 7  # 2 training sites x (test, val), external test, all x (test, val)
    expected = {figure_name(kind, s, sp) for s, sp in pairs for kind in ("roc", "calibration", "decision")}
    assert set(figures) == expected | {"auc_heatmap_test.png"}
    assert "roc_hospital_ext_test.png" in figures and "decision_all_val.png" in figures
    for png in figures.values():
        _assert_figure(png)
    assert report_figures(copy.deepcopy(report)) == figures


def test_model_colours_are_consistent_across_figures(report: dict[str, Any], figures: dict[str, bytes]) -> None:
    colours = model_colors(["local:zeta", "pooled", "federated", "local:alpha"])
    assert colours["federated"] == "#1f77b4" and colours["pooled"] == "#ff7f0e"
    assert colours["local:alpha"] != colours["local:zeta"]
    assert model_colors(["federated"])["federated"] == colours["federated"]
    for name in ("roc_hospital_a_test.png", "decision_hospital_ext_test.png", "calibration_all_val.png"):
        px = _pixels(figures[name])
        assert _has_colour(px, "#1f77b4") and _has_colour(px, "#ff7f0e") and _has_colour(px, "#2ca02c"), name


def test_missing_band_and_missing_keys_do_not_crash(report: dict[str, Any]) -> None:
    group = copy.deepcopy(_group(report, "hospital_a", "test"))
    for curve in group:
        curve.pop("roc_band", None)
    group[0].pop("calibration")
    group[1]["decision"].pop("treat_all")
    group[2]["calibration"]["n"] = []
    group[2]["roc"]["tpr"][3] = None
    _assert_figure(roc_figure("hospital_a", "test", group, {}))
    _assert_figure(calibration_figure("hospital_a", "test", group))
    _assert_figure(decision_figure("hospital_a", "test", group))
    empty = roc_figure("nowhere", "test", [], {})
    assert _pixels(empty).shape[:2] == (SIZE[1], SIZE[0])


def test_roc_band_is_drawn_only_where_present(report: dict[str, Any]) -> None:
    group = _group(report, "hospital_a", "test")
    with_band = _pixels(roc_figure("hospital_a", "test", group, {}))
    bare = [{k: v for k, v in c.items() if k != "roc_band"} for c in group]
    without = _pixels(roc_figure("hospital_a", "test", bare, {}))
    assert _tinted(with_band) > _tinted(without) + 5000


def test_heatmap_of_a_report_without_rows_and_decision_limits() -> None:
    empty = _pixels(auc_heatmap({"sites": [], "classification": []}))
    assert (empty.shape[1], empty.shape[0]) == SIZE and (empty.min(axis=2) < 128).sum() > 200  # a title and a notice
    decision = {"thresholds": [0.1, 0.5, 0.9], "net_benefit": [0.2, 0.1, 0.0], "treat_all": [0.2, -3.0, -50.0]}
    flat = [{"model": "federated", "site": "s", "split": "test", "roc": {"fpr": [0, 1], "tpr": [0, 1]}, "decision": decision}]
    _assert_figure(decision_figure("s", "test", flat))


def test_file_names_are_safe_and_distinct() -> None:
    assert safe_name("hospital_ext") == "hospital_ext"
    assert figure_name("roc", "hospital_ext", "test") == "roc_hospital_ext_test.png"
    odd = [safe_name(s) for s in ("St. Mary's/Leeds", "St. Mary's Leeds", "../etc", "")]
    assert len(set(odd)) == 4
    for name in odd:
        assert name and "/" not in name and " " not in name and not name.startswith(".")
