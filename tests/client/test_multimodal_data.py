"""A site's multimodal inputs: each case's patches, views and radiomics, what is present, the views as images, --check."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from client.cli import check_site
from client.data import clear_cache
from client.multimodal_data import load_multimodal_site_data, load_view_site_data
from client.radiomics import FEATURE_NAMES
from client.site_config import load_site_config
from models.task import InputSpec, ModalInputs
from tests.multimodal_sites import tiny_multimodal

MODAL = ModalInputs(("ultrasound", "pathology", "mammography", "radiomics"), pathology_size=32, pathology_patches=2, mammo_size=32)
SPEC = InputSpec(32, modal=MODAL)


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return tiny_multimodal(tmp_path_factory.mktemp("multimodal"))


def test_every_case_carries_its_modalities_and_says_which_it_has(sites: list[Path]) -> None:
    a = load_multimodal_site_data(load_site_config(sites[0]), SPEC)
    b = load_multimodal_site_data(load_site_config(sites[1]), SPEC)
    train = a.splits["train"]
    assert train.extra is not None and train.extra["present"].shape == (len(train), 4)
    assert train.extra["pathology"].shape == (len(train), 2, 3, 32, 32) and train.extra["pathology"].dtype == torch.uint8
    assert train.extra["mammo"].shape == (len(train), 2, 1, 32, 32) and train.extra["radiomics"].shape == (len(train), 92)
    assert bool(train.extra["present"][:, :3].all())  # every case at site_a has a still, a micrograph and both views
    assert not bool(b.splits["train"].extra["present"][:, 1].any()) and int(b.splits["train"].extra["pathology_count"].sum()) == 0  # type: ignore[index]
    assert b.modality_counts("test") == {"n_ultrasound": len(b.splits["test"]), "n_pathology": 0, "n_mammography": len(b.splits["test"]), "n_radiomics": b.modality_counts("test")["n_radiomics"]}
    has = train.extra["present"][:, 3]
    assert bool(torch.isfinite(train.extra["radiomics"][has]).all()) and bool(torch.isnan(train.extra["radiomics"][~has]).all())
    batch = next(iter(a.loader("train", train=True, seed=1)))
    assert {"image", "label", "present", "pathology", "pathology_count", "mammo", "radiomics"} <= set(batch)


def test_a_single_modality_reads_only_the_cases_that_have_it(sites: list[Path]) -> None:
    spec = InputSpec(32, modal=ModalInputs(("pathology",), pathology_size=32, pathology_patches=2))
    assert len(load_multimodal_site_data(load_site_config(sites[1]), spec).splits["train"]) == 0  # site_b has no pathology
    assert len(load_multimodal_site_data(load_site_config(sites[0]), spec).splits["train"]) > 0


def test_the_mass_segmenter_reads_each_view_as_an_image_with_its_mass_mask(sites: list[Path]) -> None:
    data = load_view_site_data(load_site_config(sites[0]), InputSpec(32, modal=ModalInputs(("mammography",), mammo_size=32), views=True))
    train, cases = data.splits["train"], load_multimodal_site_data(load_site_config(sites[0]), InputSpec(32, modal=ModalInputs(("mammography",), mammo_size=32))).splits["train"]
    assert len(train) == 2 * len(cases) and train.images.shape[1:] == (1, 32, 32)
    assert [c.case_id for c in train.cases[:4]] == [cases.cases[0].case_id] * 2 + [cases.cases[1].case_id] * 2
    assert bool(train.has_mask.all()) and int(train.masks.sum()) > 0  # type: ignore[union-attr]
    assert torch.equal(train.labels[::2], cases.labels)


class _Square(nn.Module):
    """A 'segmenter' that calls a fixed centred square the mass."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.full_like(x, -5.0)
        out[..., 12:20, 12:20] = 5.0
        return out


def test_predicted_rois_cut_the_radiomics_and_are_cached_apart_from_the_manifests_masks(sites: list[Path]) -> None:
    config = load_site_config(sites[0])
    spec = InputSpec(32, modal=ModalInputs(("radiomics",), mammo_size=32))
    truth = load_multimodal_site_data(config, spec).splits["train"].extra["radiomics"]  # type: ignore[index]
    square = load_multimodal_site_data(config, spec, segmenter=_Square(), digest="square").splits["train"].extra["radiomics"]  # type: ignore[index]
    assert len(square) >= len(truth) > 0  # a case whose manifest mask holds no mass has no truth ROI, but the segmenter finds one
    assert not torch.allclose(square.mean(0), truth.mean(0))
    area = FEATURE_NAMES.index("shape_pixel_area")
    # the square's 8 x 8 pixels of the 32-pixel view, read at 128 px: 32 x 32 in every case's CC and MLO view
    assert set(square[:, area].tolist()) == {1024.0} and set(square[:, len(FEATURE_NAMES) + area].tolist()) == {1024.0}


def test_check_lists_an_unreadable_micrograph_and_a_case_with_one_view(sites: list[Path], tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(sites[0].parent, site, ignore=shutil.ignore_patterns("output"))
    rows = list(csv.DictReader((site / "manifest.csv").open()))
    (site / rows[2]["pathology"]).write_bytes(b"not an image")
    rows[5]["mammo_mlo"] = ""
    with (site / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    clear_cache()
    summary, unreadable = check_site(site / "site.yaml", 32)
    assert unreadable == 1 and f"manifest row 4 (case {rows[2]['case_id']})" in summary and rows[2]["pathology"].split("/")[-1] in summary
    assert "1 case(s) with one view only (rows 7)" in summary


def test_the_clinical_modality_codes_the_named_variables_and_refuses_a_categorical_one(sites: list[Path]) -> None:
    from client.errors import SiteDataError

    config = load_site_config(sites[0])
    spec = InputSpec(32, modal=ModalInputs(("clinical",), clinical=("age", "her2", "histologic_grade")))
    train = load_multimodal_site_data(config, spec).splits["train"]
    rows = {c.case_id: c for c in train.cases}
    first = train.cases[0]
    expected = [float(first.clinical["age"]), float(first.clinical["her2"]), float(["1", "2", "3"].index(first.clinical["histologic_grade"]))]
    assert train.extra is not None and train.extra["clinical"][0].tolist() == expected and len(rows) == len(train)
    with pytest.raises(SiteDataError, match="'histologic_type' is categorical"):
        load_multimodal_site_data(config, InputSpec(32, modal=ModalInputs(("clinical",), clinical=("age", "histologic_type"))))
