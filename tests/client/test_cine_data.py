"""A site's cine loops: decoded once into the site cache, cut into clips, short or missing loops named."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from client.cine_data import load_cine_site_data
from client.data import SiteData, clear_cache, load_site_data
from client.errors import SiteDataError
from client.site_cache import SiteCache
from client.site_config import load_site_config
from tests.cine_sites import make_cine_site
from tests.conftest import write_png


def _entries(site_yaml: Path) -> int:
    """Entries in a site's cache."""
    return sum(1 for _ in SiteCache(site_yaml.parent / "output").root.rglob("*.axc"))


@pytest.mark.parametrize("storage", ["folder", "dicom"])
def test_loops_are_decoded_once_and_cut_into_clips(tmp_path: Path, storage: str) -> None:
    site = make_cine_site(tmp_path, "a", n=8, storage=storage, frames=(6, 9))
    config = load_site_config(site)
    data = load_cine_site_data(config, 24, 4)
    loops = [loop for split in data.splits.values() for loop in split.loops or []]
    assert len(loops) == 8 and all(loop.dtype == np.uint8 and loop.shape[1:] == (24, 24) and 6 <= len(loop) <= 9 for loop in loops)
    assert _entries(site) == 8
    clear_cache()  # a new process: every loop comes from the site cache
    os.utime(site.parent / "manifest.csv")
    again = load_cine_site_data(config, 24, 4)
    assert _entries(site) == 8 and again.fingerprint == data.fingerprint
    torch.manual_seed(0)  # the clips' frame and augmentation draws come from torch's RNG
    batch = next(iter(data.loader("train", train=True, seed=1)))
    assert batch["image"].shape == (4, 1, 4, 24, 24) and batch["image"].dtype == torch.float32
    # Frames are scaled to [0, 1]; the training gain change (RandScaleIntensity, factors 0.2) may lift a clip up to x1.2.
    assert 0.0 <= float(batch["image"].min()) and float(batch["image"].max()) <= 1.2 + 1e-6
    evaluation = [next(iter(data.loader("train", train=False))) for _ in range(2)]
    assert torch.equal(evaluation[0]["image"], evaluation[1]["image"])  # evaluation clips: each segment's middle frame


def test_training_clips_draw_frames_and_augmentation_per_seed(tmp_path: Path) -> None:
    data = load_cine_site_data(load_site_config(make_cine_site(tmp_path, "a", n=8, frames=(8, 8))), 24, 4)
    torch.manual_seed(0)
    first = next(iter(data.loader("train", train=True, seed=5)))["image"]
    torch.manual_seed(0)
    same = next(iter(data.loader("train", train=True, seed=5)))["image"]
    torch.manual_seed(1)
    other = next(iter(data.loader("train", train=True, seed=6)))["image"]
    assert torch.equal(first, same) and not torch.equal(first, other)


def test_a_changed_frame_is_decoded_again(tmp_path: Path) -> None:
    site = make_cine_site(tmp_path, "a", n=6)
    config = load_site_config(site)
    before = load_cine_site_data(config, 24, 4)
    frame = sorted((site.parent / "loops" / "a-000").iterdir())[0]
    write_png(frame, np.zeros((40, 48), dtype=np.uint8))
    os.utime(frame, ns=(1, 1))  # a rewritten frame with an old mtime: its size still tells
    clear_cache()
    after = load_cine_site_data(config, 24, 4)
    assert after.fingerprint != before.fingerprint and _entries(site) == 7


def _by_case(data: SiteData) -> dict[str, torch.Tensor]:
    """Each case's preprocessed image by the number in its id."""
    return {c.case_id[-3:]: split.images[i] for split in data.splits.values() for i, c in enumerate(split.cases)}


def _edit_rows(site: Path, edit) -> None:  # type: ignore[no-untyped-def]
    """Rewrite a site's manifest rows through ``edit``."""
    path = site.parent / "manifest.csv"
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    edit(rows)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_short_empty_and_missing_loops_are_named_by_row_and_file(tmp_path: Path) -> None:
    site = make_cine_site(tmp_path, "a", n=6, frames=(5, 5))
    config = load_site_config(site)
    with pytest.raises(SiteDataError, match=r"manifest row 2 \(case a-000\): cine loop .*a-000 has 5 frame\(s\), fewer than the clip length T = 8"):
        load_cine_site_data(config, 24, 8)
    for frame in (site.parent / "loops" / "a-001").iterdir():
        frame.unlink()
    with pytest.raises(SiteDataError, match=r"manifest row 3 \(case a-001\): cine folder .*a-001: no frame images"):
        load_cine_site_data(config, 24, 4)
    _edit_rows(site, lambda rows: rows[4].update(video=""))
    with pytest.raises(SiteDataError, match=r"trains on cine loops, but 1 row\(s\) have no 'video' \(rows 6\)"):
        load_cine_site_data(load_site_config(site), 24, 4)


def test_a_still_model_reads_the_key_frame_of_a_loop_without_a_still(tmp_path: Path) -> None:
    folder_site = make_cine_site(tmp_path, "a", n=6, stills=False, frames=(7, 7))
    dicom_site = make_cine_site(tmp_path, "b", n=6, stills=False, storage="dicom", frames=(7, 7))
    with_stills = make_cine_site(tmp_path, "c", n=6, frames=(7, 7))
    for site in (folder_site, dicom_site):
        data = load_site_data(load_site_config(site), 24)
        assert sum(len(s) for s in data.splits.values()) == 6 and data.image_shapes == {(40, 48): 6}
    # the key frame of a 7-frame loop is its middle frame: the still written beside it (the same seed draws the same loops)
    from_loop, from_still = (_by_case(load_site_data(load_site_config(site), 24)) for site in (folder_site, with_stills))
    assert from_loop.keys() == from_still.keys() and all(torch.equal(from_loop[k], from_still[k]) for k in from_loop)
    _edit_rows(folder_site, lambda rows: rows[0].update(video="", image=""))
    with pytest.raises(SiteDataError, match="row 2 .*empty 'image' and 'video'"):
        load_site_data(load_site_config(folder_site), 24)
