"""``axilla-simulate prepare`` from the command line: the sites it writes and the errors it names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulation.cli import main
from tests.simulation.public.replicas import write_bcnb, write_bus_bra, write_busi


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("downloads")
    return {"busi": write_busi(root, n=10), "bus-bra": write_bus_bra(root, n=8), "bcnb": write_bcnb(root, n=4)}


def test_a_dirichlet_partition_from_the_command_line_is_the_same_for_the_same_seed(downloads: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["prepare", "--dataset", f"busi={downloads['busi']}", "--dataset", f"bus-bra={downloads['bus-bra']}",
            "--partition", "dirichlet", "--num-sites", "2", "--alpha", "2", "--min-cases", "5", "--seed", "1"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "site_1 (train)" in out and f"run it: axilla-simulate run --sites {tmp_path / 'b'}" in out
    for site in ("site_1", "site_2"):
        first = (tmp_path / "a" / site / "manifest.csv").read_text().replace(str(tmp_path / "a"), "OUT")
        assert first == (tmp_path / "b" / site / "manifest.csv").read_text().replace(str(tmp_path / "b"), "OUT")
    record = json.loads((tmp_path / "a" / "_prepare" / "prepare.json").read_text())
    assert record["partition"]["method"] == "dirichlet" and sum(s["cases"] for s in record["sites"].values()) == sum(
        d["cases"] for d in record["datasets"].values()
    )


@pytest.mark.parametrize(
    ("dataset_args", "message"),
    [
        (["--dataset", "busi"], "expected NAME=PATH"),
        (["--dataset", "inbreast=/nowhere"], "unknown dataset 'inbreast'; known: busi, bus-bra"),
        (["--dataset", "busi=/nowhere/at/all"], "/nowhere/at/all does not exist"),
        ([], "give at least one --dataset"),
    ],
)
def test_bad_dataset_arguments_are_named(dataset_args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prepare", *dataset_args, "--out", str(tmp_path / "sites")]) == 1
    assert message in capsys.readouterr().err


def test_datasets_of_different_endpoints_are_refused_and_nothing_is_written(downloads: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["prepare", "--dataset", f"busi={downloads['busi']}", "--dataset", f"bcnb={downloads['bcnb']}", "--out", str(tmp_path / "sites")])
    assert code == 1
    assert "label different endpoints" in capsys.readouterr().err
    assert not (tmp_path / "sites" / "busi").exists()


def test_bcnb_is_prepared_as_lymph_node_status_with_its_split_and_clinical_columns(downloads: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "sites"
    args = ["prepare", "--dataset", f"bcnb={downloads['bcnb']}", "--out", str(out)]
    assert main(args) == 1  # one hospital: a center partition has one training site
    assert main([*args, "--partition", "dirichlet", "--num-sites", "2", "--alpha", "100", "--min-cases", "3"]) == 0
    assert 'endpoint = "axillary lymph-node status"' in (out / "run-config.toml").read_text()
    from client.manifest import read_manifest  # noqa: PLC0415
    from client.site_config import load_site_config  # noqa: PLC0415

    cases = read_manifest(out / "site_1" / "manifest.csv", required_input="pathology")
    assert {c.split for c in cases} <= {"train", "val", "test"} and all(c.split for c in cases)
    assert {"age", "er", "her2", "ki67", "histologic_grade"} <= set(cases[0].clinical)
    header = (out / "site_1" / "manifest.csv").read_text().splitlines()[0].split(",")
    assert {"pathology", "aln_status", "n_metastases"} <= set(header)
    assert load_site_config(out / "site_1" / "site.yaml").data.crop == "none"


def test_skew_settings_with_a_center_partition_are_refused_not_ignored(downloads: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["prepare", "--dataset", f"busi={downloads['busi']}", "--dataset", f"bus-bra={downloads['bus-bra']}", "--alpha", "0.1", "--out", str(tmp_path / "s")])
    assert code == 2
    assert "--alpha apply to --partition dirichlet or quantity, not center" in capsys.readouterr().err


def test_a_quantity_partition_of_the_replicas_covers_every_case_once(downloads: dict[str, Path], tmp_path: Path) -> None:
    from client.manifest import read_manifest  # noqa: PLC0415

    out = tmp_path / "sites"
    args = ["prepare", "--dataset", f"busi={downloads['busi']}", "--dataset", f"bus-bra={downloads['bus-bra']}", "--external", "busi",
            "--partition", "quantity", "--num-sites", "2", "--alpha", "1", "--min-cases", "3", "--seed", "2", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    record = json.loads((out / "_prepare" / "prepare.json").read_text())
    sizes = [record["sites"][s]["cases"] for s in ("site_1", "site_2")]
    assert sum(sizes) == record["datasets"]["bus-bra"]["cases"] and min(sizes) >= 3  # (unequal sizes: test_partition.py, on 200 cases)
    ids = [c.case_id for s in ("site_1", "site_2") for c in read_manifest(out / s / "manifest.csv")]
    assert len(set(ids)) == record["datasets"]["bus-bra"]["cases"]  # a patient's images never straddle sites
    assert record["sites"]["busi"]["role"] == "external"
