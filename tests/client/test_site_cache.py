"""The site cache: a later process decodes, segments and crops nothing it already did; damage and changes rebuild."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import client.data
from client.data import SiteData, clear_cache, load_site_data
from client.site_index import site_index
from client.errors import SiteDataError
from client.images import DecodedImage
from client.lesion_data import lesion_site_data
from client.site_cache import SiteCache
from client.site_config import SiteConfig, load_site_config
from models.run_config import RunConfig
from tests.conftest import lesion_image, make_site, write_png

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The images ``client.data`` decodes from now on, in order."""
    seen: list[Path] = []
    real = client.data.decode_image

    def counting(path: Path) -> DecodedImage:
        seen.append(Path(path))
        return real(path)

    monkeypatch.setattr(client.data, "decode_image", counting)
    return seen


def _case(data: SiteData, case_id: str) -> tuple[torch.Tensor, int, str]:
    """A case's image tensor, label and key, wherever its split."""
    for split in data.splits.values():
        for i, case in enumerate(split.cases):
            if case.case_id == case_id:
                return split.images[i], int(split.labels[i]), split.keys[i]
    raise KeyError(case_id)


def _same(a: SiteData, b: SiteData) -> bool:
    """Identical tensors, labels and masks in every split."""
    return all(
        torch.equal(a.splits[n].images, b.splits[n].images)
        and torch.equal(a.splits[n].labels, b.splits[n].labels)
        and torch.equal(a.splits[n].masks, b.splits[n].masks)  # type: ignore[arg-type]
        and torch.equal(a.splits[n].has_mask, b.splits[n].has_mask)  # type: ignore[arg-type]
        for n in a.splits
    )


def _edit_manifest(config: SiteConfig, edit: Callable[[list[dict[str, str]]], None]) -> None:
    """Rewrite the site's manifest after ``edit`` changed its rows."""
    with config.data.manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    edit(rows)
    with config.data.manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _rewrite_image(path: Path, seed: int) -> None:
    """Write other pixels to an image, stamped later than before (file systems stamp coarsely)."""
    before = path.stat().st_mtime_ns
    write_png(path, lesion_image(np.random.default_rng(seed), 1))
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_a_second_load_decodes_nothing_and_gives_the_same_site(tmp_path: Path, decoded: list[Path]) -> None:
    config = load_site_config(make_site(tmp_path, "a", n=12, masks=True))
    first = load_site_data(config, 32)
    assert len(decoded) == 12
    assert load_site_data(config, 32) is first  # the in-process layer
    clear_cache()
    again = load_site_data(config, 32)
    assert len(decoded) == 12 and again is not first
    assert _same(first, again) and again.fingerprint == first.fingerprint and again.image_shapes == first.image_shapes
    entries = list((config.output_dir / "cache").rglob("*.axc"))
    assert len(entries) == 12 and not [p for p in entries if p.name.startswith(".tmp-")]


def test_a_changed_image_is_decoded_alone(tmp_path: Path, decoded: list[Path]) -> None:
    config = load_site_config(make_site(tmp_path, "a", n=12))
    first = load_site_data(config, 32)
    victim = tmp_path / "a" / "images" / "a-004.png"
    _rewrite_image(victim, seed=99)
    decoded.clear()
    again = load_site_data(config, 32)  # no clear_cache: the in-process layer is keyed by content too
    assert decoded == [victim.resolve()]
    assert not torch.equal(_case(again, "a-004")[0], _case(first, "a-004")[0])
    assert all(torch.equal(_case(again, f"a-{i:03d}")[0], _case(first, f"a-{i:03d}")[0]) for i in range(12) if i != 4)
    assert again.fingerprint != first.fingerprint


def test_a_changed_manifest_row_takes_effect_without_decoding(tmp_path: Path, decoded: list[Path]) -> None:
    config = load_site_config(make_site(tmp_path, "a", n=12))
    first = load_site_data(config, 32)

    def flip_and_repoint(rows: list[dict[str, str]]) -> None:
        rows[2]["label"] = "0" if rows[2]["label"] == "1" else "1"
        rows[3]["image"] = rows[5]["image"]

    _edit_manifest(config, flip_and_repoint)
    decoded.clear()
    again = load_site_data(config, 32)
    assert decoded == []  # a-005's image is in the cache already, under its own file's key
    assert _case(again, "a-002")[1] == 1 - _case(first, "a-002")[1]
    assert torch.equal(_case(again, "a-003")[0], _case(first, "a-005")[0])
    assert _case(again, "a-003")[2] == _case(first, "a-005")[2]
    assert again.fingerprint != first.fingerprint


def test_a_changed_size_or_ui_crop_rebuilds(tmp_path: Path, decoded: list[Path]) -> None:
    yaml = make_site(tmp_path, "a", n=10)
    config = load_site_config(yaml)
    first = load_site_data(config, 32)
    assert tuple(load_site_data(config, 24).splits["train"].images.shape[1:]) == (1, 24, 24)
    assert len(decoded) == 20
    yaml.write_text(yaml.read_text().replace("crop: none", "crop: [0, 0, 32, 24]"))
    cropped = load_site_data(load_site_config(yaml), 32)
    assert len(decoded) == 30 and not torch.equal(cropped.splits["train"].images, first.splits["train"].images)
    clear_cache()
    assert _same(load_site_data(config, 32), first) and len(decoded) == 30  # the first setting's entries still serve


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_a_byte(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    blob[-100] ^= 0xFF
    path.write_bytes(bytes(blob))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize("damage", [_truncate, _flip_a_byte, _empty])
def test_a_damaged_entry_is_deleted_logged_and_rebuilt(
    tmp_path: Path, decoded: list[Path], caplog: pytest.LogCaptureFixture, damage: Callable[[Path], None]
) -> None:
    config = load_site_config(make_site(tmp_path, "a", n=10, masks=True))
    first = load_site_data(config, 32)
    entry = SiteCache(config.output_dir).path(_case(first, "a-006")[2])
    damage(entry)
    clear_cache()
    decoded.clear()
    with caplog.at_level(logging.WARNING, logger="axilla.client"):
        again = load_site_data(config, 32)
    assert decoded == [(tmp_path / "a" / "images" / "a-006.png").resolve()]
    assert any(str(entry) in r.getMessage() and "corrupt" in r.getMessage() for r in caplog.records)
    assert _same(again, first) and again.fingerprint == first.fingerprint
    assert SiteCache(config.output_dir).get(_case(first, "a-006")[2]) is not None  # rebuilt in place


def test_an_entry_is_never_unpickled(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = SiteCache(tmp_path)
    buffer = io.BytesIO()
    np.savez(buffer, image=np.array([{"run": "code"}], dtype=object), allow_pickle=True)
    payload = buffer.getvalue()  # a well-formed header over a pickled payload
    cache.path("ab" * 32).parent.mkdir(parents=True)
    cache.path("ab" * 32).write_bytes(b"AXC1" + len(payload).to_bytes(8, "little") + hashlib.sha256(payload).digest() + payload)
    with caplog.at_level(logging.WARNING, logger="axilla.client"):
        assert cache.get("ab" * 32) is None
    assert not cache.path("ab" * 32).exists() and caplog.records


def test_a_failed_write_leaves_no_entry_and_loading_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_site_config(make_site(tmp_path, "a", n=8))

    def full_disk(src: str, dst: str) -> None:
        raise OSError("no space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    data = load_site_data(config, 32)
    assert sum(len(s) for s in data.splits.values()) == 8
    assert [p for p in (config.output_dir / "cache").rglob("*") if p.is_file()] == []  # neither entries nor temp files


def test_another_process_reuses_the_cache(tmp_path: Path) -> None:
    yaml = make_site(tmp_path, "a", n=10, kind="dicom", masks=True)
    data = load_site_data(load_site_config(yaml), 32)
    script = (
        "import sys\n"
        "import client.data as d\n"
        "from client.site_config import load_site_config\n"
        "seen = []\n"
        "real = d.decode_image\n"
        "d.decode_image = lambda path: (seen.append(path), real(path))[1]\n"
        "data = d.load_site_data(load_site_config(sys.argv[1]), 32)\n"
        "print(len(seen), data.fingerprint)\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(yaml)], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", data.fingerprint]


def test_site_index_counts_without_decoding_and_names_bad_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    yaml = make_site(tmp_path, "a", n=20, masks=True)
    config = load_site_config(yaml)

    def no_decoding(path: Path) -> np.ndarray:
        raise AssertionError(f"site_index decoded {path}")

    with monkeypatch.context() as patch:
        patch.setattr(client.data, "decode_image", no_decoding)
        patch.setattr(client.data, "read_mask", no_decoding)
        index = site_index(config)
    assert index.counts == load_site_data(config, 32).counts()
    assert site_index(config) == index
    _rewrite_image(tmp_path / "a" / "images" / "a-007.png", seed=3)
    assert site_index(config).fingerprint != index.fingerprint

    def bad_label(rows: list[dict[str, str]]) -> None:
        rows[3]["label"] = "2"

    with pytest.raises(SiteDataError, match=r"row 5 .*label"):
        site_index(load_site_config(make_site(tmp_path, "b", n=10, rows=bad_label)))

    def all_negative(rows: list[dict[str, str]]) -> None:
        for r in rows:
            r["label"] = "0"

    with pytest.raises(SiteDataError, match="only label 0"):
        site_index(load_site_config(make_site(tmp_path, "c", n=10, rows=all_negative)))


class CountingSegmenter(nn.Module):
    """Pixels darker than ``level`` are lesion; counts the images it segments."""

    def __init__(self, level: float = 0.15) -> None:
        super().__init__()
        self.level = nn.Parameter(torch.tensor(level))
        self.images = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += int(x.shape[0])
        return (self.level - x) * 50.0


def test_lesion_crops_are_cut_once_per_segmenter(tmp_path: Path, decoded: list[Path]) -> None:
    config = load_site_config(make_site(tmp_path, "c", n=12, seed=5))
    cfg = RunConfig(image_size=24, seg_image_size=32, crop_margin=2, lesion_crop="predicted", segmenters="unet")
    segmenter = CountingSegmenter()
    first = lesion_site_data(load_site_data(config, 32), cfg, segmenter, "dark")
    assert segmenter.images == 12 and len(decoded) == 24  # every image decoded for the base, then for its crop
    clear_cache()
    again = lesion_site_data(load_site_data(config, 32), cfg, segmenter, "dark")
    assert segmenter.images == 12 and len(decoded) == 24  # neither segmented, nor decoded, nor cropped again
    assert _same(first, again) and again.crops_without_lesion == first.crops_without_lesion
    assert again.fingerprint == first.fingerprint
    other = lesion_site_data(load_site_data(config, 32), cfg, segmenter, "other weights")
    assert segmenter.images == 24 and _same(other, first)  # same answer, but other weights are never trusted blindly
    _rewrite_image(tmp_path / "c" / "images" / "c-003.png", seed=8)
    lesion_site_data(load_site_data(config, 32), cfg, segmenter, "dark")
    assert segmenter.images == 25  # the changed image alone
    wider = lesion_site_data(load_site_data(config, 32), cfg.replace(crop_margin=6), segmenter, "dark")
    assert segmenter.images == 37 and not _same(wider, first)


def test_without_a_digest_the_segmenters_own_weights_key_the_crops(tmp_path: Path) -> None:
    config = load_site_config(make_site(tmp_path, "c", n=8, seed=5))
    cfg = RunConfig(image_size=24, seg_image_size=32, crop_margin=2, lesion_crop="predicted", segmenters="unet")
    dark, twin, nothing = CountingSegmenter(0.15), CountingSegmenter(0.15), CountingSegmenter(-1.0)
    found = lesion_site_data(load_site_data(config, 32), cfg, dark)
    clear_cache()
    assert lesion_site_data(load_site_data(config, 32), cfg, twin).fingerprint == found.fingerprint
    assert dark.images == 8 and twin.images == 0  # the same weights: nothing segmented again
    missed = lesion_site_data(load_site_data(config, 32), cfg, nothing)
    assert nothing.images == 8 and sum(missed.crops_without_lesion.values()) == 8 and sum(found.crops_without_lesion.values()) == 0
    mean = lesion_site_data(load_site_data(config, 32), cfg.replace(seg_fusion="mean"), dark)
    assert dark.images == 16 and _same(mean, found)  # another fusion rule is segmented again
