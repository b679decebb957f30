"""The site-folder writer: site configs and manifests the client reads, merged masks, the endpoint, no copies."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from client.manifest import read_manifest
from client.site_config import load_site_config
from simulation.public.cohort import LYMPH_NODE_STATUS, MALIGNANCY, PublicCase, PublicDataError, PublicDataset, PublicImage
from simulation.public.partition import PartitionOptions, partition
from simulation.public.writer import endpoint_of, write_sites


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)
    return path


def _dataset(root: Path, name: str, n: int = 6, split: bool = False) -> PublicDataset:
    """``n`` cases of two images each; case 0's first image has two mask files (left and right halves)."""
    cases = []
    for i in range(n):
        images = []
        for k in range(2):
            image = _png(root / name / f"{i}_{k}.png", np.full((20, 24), 40 + i))
            masks: tuple[Path, ...] = ()
            if i == 0 and k == 0:
                left, right = np.zeros((20, 24)), np.zeros((20, 24))
                left[5:10, 2:8], right[5:10, 15:20] = 255, 255
                masks = (_png(root / name / "0_mask.png", left), _png(root / name / "0_mask_1.png", right))
            elif k == 0:
                mask = np.zeros((20, 24))
                mask[4:9, 4:9] = 255
                masks = (_png(root / name / f"{i}_mask.png", mask),)
            images.append(PublicImage(image, masks))
        split_name = ("train", "val", "test")[i % 3] if split else None
        cases.append(PublicCase(f"p{i}", i % 2, tuple(images), name, split_name, {"birads": "4a", "age": str(40 + i)}))
    return PublicDataset(name, MALIGNANCY, cases, scanner=f"{name} scanner")


def _write(tmp_path: Path, **options: object) -> tuple[Path, dict]:
    data = [_dataset(tmp_path / "downloads", "BUSI"), _dataset(tmp_path / "downloads", "UDIAT-B", split=True), _dataset(tmp_path / "downloads", "QAMEBI")]
    opts = PartitionOptions("center", **options)  # type: ignore[arg-type]
    out = tmp_path / "sites"
    record = write_sites(out, partition(data, opts), {d.name.lower(): (d, tmp_path / "downloads" / d.name) for d in data}, opts)
    return out, record


def test_sites_are_written_as_the_client_reads_them_with_the_users_files_in_place(tmp_path: Path) -> None:
    out, record = _write(tmp_path, external="qamebi")
    assert sorted(record["sites"]) == ["busi", "qamebi", "udiat-b"]
    config = load_site_config(out / "busi" / "site.yaml")
    assert (config.site, config.role, config.data.crop) == ("busi", "train", "auto")
    assert load_site_config(out / "qamebi" / "site.yaml").role == "external"
    cases = read_manifest(out / "busi" / "manifest.csv")
    assert len(cases) == 12 and len({c.case_id for c in cases}) == 6  # one row per image, a patient's images under one case id
    assert {c.image.parent for c in cases} == {(tmp_path / "downloads" / "BUSI").resolve()}  # referenced, not copied
    assert not list((out / "busi").glob("*.png"))
    assert {c.scanner for c in cases} == {"BUSI scanner"}
    assert cases[0].clinical["age"] == "40"
    header = (out / "busi" / "manifest.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["case_id", "label", "image"] and "birads" in header and "split" not in header
    assert {c.split for c in read_manifest(out / "udiat-b" / "manifest.csv")} == {"train", "val", "test"}  # an official split is kept


def test_several_masks_of_one_image_are_merged_by_or(tmp_path: Path) -> None:
    out, _ = _write(tmp_path, external="qamebi")
    first = read_manifest(out / "busi" / "manifest.csv")[0]
    assert first.mask is not None and first.mask.parent == (out / "busi" / "masks").resolve()
    merged = np.asarray(Image.open(first.mask)) > 0
    assert merged[5:10, 2:8].all() and merged[5:10, 15:20].all() and merged.sum() == 5 * 6 + 5 * 5
    second = read_manifest(out / "busi" / "manifest.csv")[2]
    assert second.mask == (tmp_path / "downloads" / "BUSI" / "1_mask.png").resolve()  # one mask: the user's own file


def test_the_endpoint_goes_to_the_sites_run_config_and_mixed_endpoints_are_refused(tmp_path: Path) -> None:
    out, record = _write(tmp_path)
    config = tomllib.loads((out / "run-config.toml").read_text())
    assert config == {"endpoint": "lesion malignancy", "endpoint-positive": "malignant", "endpoint-negative": "benign"}
    assert record["endpoint"]["name"] == "lesion malignancy"
    bcnb = PublicDataset("BCNB", LYMPH_NODE_STATUS, [])
    with pytest.raises(PublicDataError, match="label different endpoints.*BCNB: axillary lymph-node status"):
        endpoint_of([_dataset(tmp_path / "d", "BUSI"), bcnb])


def test_prepare_again_replaces_its_own_folders_and_refuses_others(tmp_path: Path) -> None:
    out, _ = _write(tmp_path)
    (out / "busi" / "stale.txt").write_text("from the first prepare")
    _write(tmp_path, external="busi")
    assert not (out / "busi" / "stale.txt").exists() and load_site_config(out / "busi" / "site.yaml").role == "external"
    (out / "busi").rename(out / "keep")
    (out / "busi").mkdir()
    (out / "busi" / "notes.txt").write_text("the user's own")
    with pytest.raises(PublicDataError, match="was not written by axilla-simulate prepare"):
        _write(tmp_path)
    assert (out / "busi" / "notes.txt").read_text() == "the user's own"


def test_pathology_images_fill_the_pathology_column_too_and_patches_are_not_cropped(tmp_path: Path) -> None:
    data = [_dataset(tmp_path / "downloads", "BUSI")]
    bcnb = _dataset(tmp_path / "downloads", "BCNB")
    data.append(PublicDataset("BCNB", MALIGNANCY, bcnb.cases, modality="pathology", crop="none"))
    options = PartitionOptions("center")
    out = tmp_path / "sites"
    write_sites(out, partition(data, options), {d.name.lower(): (d, tmp_path) for d in data}, options)
    rows = (out / "bcnb" / "manifest.csv").read_text().splitlines()
    header = rows[0].split(",")
    first = dict(zip(header, rows[1].split(",")))
    assert first["pathology"] == first["image"] and first["image"].endswith("0_0.png")
    assert load_site_config(out / "bcnb" / "site.yaml").data.crop == "none"
    assert "pathology" not in (out / "busi" / "manifest.csv").read_text().splitlines()[0]
