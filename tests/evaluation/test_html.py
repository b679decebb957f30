"""report.html: self-contained, complete, escaped, and rendered by a real browser."""

from __future__ import annotations

import base64
import copy
import html
import io
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from evaluation.html import render_html
from tests.evaluation.report_fixture import EXCLUDED_REASON, MODELS

DATA_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def page(report: dict[str, Any], figures: dict[str, bytes]) -> str:
    """The rendered page."""
    return render_html(report, figures)


def test_page_has_every_site_model_and_notice(report: dict[str, Any], page: str) -> None:
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    for site in ("hospital_a", "hospital_b", "hospital_ext", "all"):
        assert f'<section id="site-{site}">' in page
    assert page.index('id="site-hospital_ext"') < page.index('id="site-all"')
    assert page.index('id="site-hospital_a-test"') < page.index('id="site-hospital_a-val"')
    for model in MODELS:
        assert f'<td class="l">{model}</td>' in page
    assert html.escape(EXCLUDED_REASON) in page and "&lt;none&gt; &amp; 2" in page
    assert EXCLUDED_REASON not in page  # never unescaped
    assert "no reply before the round timeout" in page
    assert "sum of per-site score histograms" in page and "resolution 0.005" in page
    assert "Bayes ceiling (AUC of the true risk): <b>0.861</b>" in page


def test_values_are_formatted_and_missing_ones_read_na(report: dict[str, Any], page: str) -> None:
    key = ("federated", "hospital_a", "test")
    row = next(r for r in report["classification"] if (r["model"], r["site"], r["split"]) == key)
    lo, hi = row["sensitivity_ci"]
    assert f"{row['sensitivity']:.3f} ({lo:.2f}–{hi:.2f})" in page
    lo, hi = row["auc_ci"]
    assert f"{row['auc']:.3f} ({lo:.2f}–{hi:.2f})" in page
    section = page[page.index('id="site-hospital_ext"') : page.index('id="site-all"')]
    assert '<td class="na">n/a</td>' in section  # local model's AUC is missing there
    assert "0.113 (p 0.041)" in page and "0.021 (p 0.330)" in page  # NRI and IDI with p
    assert "&lt;0.001" in page  # a tiny HL p
    broken = copy.deepcopy(report)
    broken["classification"] = [{"model": "federated", "site": "x", "split": "test"}]
    broken["comparisons"] = [{"site": "x", "split": "test"}]
    bare = render_html(broken, {})
    assert bare.count('<td class="na">n/a</td>') >= 20


def test_page_is_self_contained_and_embeds_every_figure(figures: dict[str, bytes], page: str) -> None:
    assert "http://" not in page and "https://" not in page and "<script" not in page.lower()
    embedded = [base64.b64decode(m) for m in DATA_URI.findall(page)]
    assert len(embedded) == len(figures)
    assert {hash(b) for b in embedded} == {hash(b) for b in figures.values()}
    assert page.index(base64.b64encode(figures["auc_heatmap_test.png"]).decode()) < page.index('id="site-hospital_a"')
    ext = page[page.index('id="site-hospital_ext"') : page.index('id="site-all"')]
    for kind in ("roc", "calibration", "decision"):
        assert base64.b64encode(figures[f"{kind}_hospital_ext_test.png"]).decode() in ext
    extra = render_html({"run": {}}, {"custom.png": figures["roc_all_test.png"]})
    assert base64.b64encode(figures["roc_all_test.png"]).decode() in extra  # unknown figures are not dropped


def test_page_is_deterministic(report: dict[str, Any], figures: dict[str, bytes], page: str) -> None:
    assert render_html(copy.deepcopy(report), dict(figures)) == page


def _chromium() -> str:
    """Path of Chromium; a missing browser fails the test (it is part of the test environment)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("chromium not found: run scripts/install.sh (installs Debian's chromium package)")
    return found


def _screenshot(page: str, folder: Path, height: int = 4000) -> np.ndarray:
    """Render the page with headless Chromium at 1280 px wide; return the screenshot's RGB pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    target, shot = folder / "report.html", folder / "shot.png"
    target.write_text(page, encoding="utf-8")
    cmd = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={folder / 'profile'}", "--hide-scrollbars", f"--window-size=1280,{height}",
        f"--screenshot={shot}", target.resolve().as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert shot.is_file(), f"no screenshot (exit {done.returncode}): {done.stderr[-2000:]}"
    return np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)


def _dominant_colour(png: bytes) -> np.ndarray:
    """The most frequent saturated colour of a figure (a heatmap cell's fill)."""
    px = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3)
    saturated = px[np.ptp(px.astype(int), axis=1) > 40]
    colours, counts = np.unique(saturated, axis=0, return_counts=True)
    return colours[counts.argmax()].astype(np.float64)


def test_chromium_renders_the_page_with_its_figures(page: str, figures: dict[str, bytes], tmp_path: Path) -> None:
    start = time.perf_counter()
    px = _screenshot(page, tmp_path / "full")
    elapsed = time.perf_counter() - start
    assert px.shape[1] == 1280 and px.shape[0] >= 2000
    assert px.std() > 10
    non_white = px.min(axis=2) < 235
    assert non_white.mean() > 0.02
    # The heatmap (the first figure) is drawn: its most frequent cell colour covers a block of the page.
    cell = np.abs(px - _dominant_colour(figures["auc_heatmap_test.png"])).max(axis=2) < 10
    assert cell.sum() > 3000, f"heatmap colour found on {cell.sum()} pixels only"
    rows, cols = np.nonzero(cell)
    box = non_white[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    assert box.mean() > 0.5
    assert elapsed < 120


def test_chromium_draws_a_lone_figure_in_colour(figures: dict[str, bytes], tmp_path: Path) -> None:
    only = {"auc_heatmap_test.png": figures["auc_heatmap_test.png"]}
    px = _screenshot(render_html({"run": {"id": "one-figure"}, "sites": []}, only), tmp_path / "one", height=1000)
    coloured = np.ptp(px, axis=2) > 40  # saturated pixels: viridis cells, never a grey broken-image icon
    assert coloured.mean() > 0.10, f"only {coloured.mean():.1%} coloured pixels"
