"""Loading a whole site: validation on the full path, counts, summary and pooling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from client.cli import main as client_main
from client.data import load_site_data, pool_site_data, site_summary
from client.node_site import discover_sites, site_path_for_partition
from client.errors import SiteDataError
from client.site_config import load_site_config
from tests.conftest import make_site, write_png


def test_dicom_site_loads_and_splits_by_case(tmp_path: Path) -> None:
    data = load_site_data(load_site_config(make_site(tmp_path, "alpha", n=20, kind="dicom")), 32)
    counts = data.counts()
    assert sum(c[0] + c[1] for c in counts.values()) == 20
    assert counts["train"][0] > 0 and counts["train"][1] > 0
    assert tuple(data.splits["train"].images.shape[1:]) == (1, 32, 32)
    assert load_site_data(data.config, 32) is data  # cached per process
    assert "alpha" in site_summary(data) and "64x48 (20)" in site_summary(data)


def test_truncated_dicom_names_row_and_file(tmp_path: Path) -> None:
    site = make_site(tmp_path, "alpha", n=8, kind="dicom")
    victim = tmp_path / "alpha" / "images" / "alpha-005.dcm"
    victim.write_bytes(victim.read_bytes()[:400])
    with pytest.raises(SiteDataError) as err:
        load_site_data(load_site_config(site), 32)
    assert "row 7" in str(err.value) and "alpha-005.dcm" in str(err.value)
    assert "alpha-005" not in err.value.public and "row 7" in err.value.public


def test_one_class_training_split_stops_a_training_site_only(tmp_path: Path) -> None:
    def all_negative(rows: list[dict[str, str]]) -> None:
        for r in rows:
            r["label"] = "0"

    with pytest.raises(SiteDataError, match="only label 0"):
        load_site_data(load_site_config(make_site(tmp_path, "alpha", n=10, rows=all_negative)), 32)
    external = load_site_data(load_site_config(make_site(tmp_path, "ext", role="external", n=10, rows=all_negative)), 32)
    assert len(external.splits["test"]) == 10


def test_pooling_and_partition_mapping(tmp_path: Path) -> None:
    a = load_site_data(load_site_config(make_site(tmp_path, "a", n=20)), 32)
    b = load_site_data(load_site_config(make_site(tmp_path, "b", n=10, kind="rgb")), 32)
    pooled = pool_site_data([a, b])
    assert len(pooled.splits["train"]) == len(a.splits["train"]) + len(b.splits["train"])
    assert torch.equal(pooled.splits["val"].labels, torch.cat([a.splits["val"].labels, b.splits["val"].labels]))
    (tmp_path / "_truth").mkdir()
    assert [p.parent.name for p in discover_sites(tmp_path)] == ["a", "b"]
    assert site_path_for_partition(tmp_path, 1).parent.name == "b"
    with pytest.raises(SiteDataError, match="2 site folders"):
        site_path_for_partition(tmp_path, 2)


def test_client_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert client_main(["--site", str(make_site(tmp_path, "alpha", n=12)), "--check"]) == 0
    out = capsys.readouterr().out
    assert "site alpha (role train)" in out and "positive" in out
    assert client_main(["--site", str(tmp_path / "none.yaml"), "--check"]) == 1
    assert "not found" in capsys.readouterr().err


def test_masks_load_with_their_images_and_missing_ones_are_named(tmp_path: Path) -> None:
    def drop_two_masks(rows: list[dict[str, str]]) -> None:
        rows[0]["mask"] = ""
        rows[5]["mask"] = ""

    data = load_site_data(load_site_config(make_site(tmp_path, "m", n=20, seed=4, masks=True, rows=drop_two_masks)), 32)
    everything = {name: split for name, split in data.splits.items()}
    assert sum(int(s.has_mask.sum()) for s in everything.values()) == 18
    for split in everything.values():
        assert split.masks is not None and tuple(split.masks.shape[1:]) == (1, 32, 32)
        assert set(torch.unique(split.masks).tolist()) <= {0, 1}
        for image, mask, has in zip(split.images, split.masks, split.has_mask):
            if has:  # the mask lies on the dark disc of its image
                assert float(image[mask.bool()].mean()) < float(image[~mask.bool()].mean()) - 0.2
            else:
                assert int(mask.sum()) == 0
    where = {c.row: name for name, s in everything.items() for c in s.cases}
    for row in (2, 7):
        with pytest.raises(SiteDataError, match=rf"rows? .*\b{row}\b"):
            data.require_masks(where[row])
    batch = next(iter(data.loader("train", train=True, seed=1)))
    assert set(batch) == {"image", "label", "mask", "has_mask"} and batch["mask"].shape[1:] == batch["image"].shape[1:]


def test_a_mask_of_another_shape_names_its_row(tmp_path: Path) -> None:
    yaml = make_site(tmp_path, "m", n=8, seed=4, masks=True)
    write_png(yaml.parent / "masks" / "m-003.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(SiteDataError, match=r"row 5 .*mask .*shape"):
        load_site_data(load_site_config(yaml), 32)
