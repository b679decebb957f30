"""FedBN and SCAFFOLD federations run in-process through the real ClientApp (privacy guard included)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from client.fedbn import shared_layout
from models.norm_state import network_keys
from models.run_config import RunConfig
from protocol.packing import packed_signature
from server.federation import run_federation
from tests.server.test_federation import LoopbackGrid, _three_sites


def _checkpoint(run_dir: Path, name: str) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / f"{name}.pt", map_location="cpu", weights_only=True)


def _train_replies(site: Path) -> list[dict]:
    lines = [json.loads(line) for line in (site.parent / "output" / "audit" / "outgoing.jsonl").read_text().splitlines()]
    return [line for line in lines if line["kind"] == "train"]


def test_a_fedbn_federation_keeps_normalisation_at_the_sites(tmp_path: Path) -> None:
    sites = _three_sites(tmp_path)
    cfg = RunConfig(image_size=32, num_rounds=2, local_epochs=1, runs_dir=str(tmp_path / "runs"), run_id="r1", strategy="fedbn", baselines=False)
    run_dir = run_federation(LoopbackGrid(sites), cfg)  # type: ignore[arg-type]
    start, final = _checkpoint(run_dir, "round-000"), _checkpoint(run_dir, "round-002")
    norm = network_keys(cfg)[0]
    assert all(torch.equal(final[k], start[k]) for k in norm)
    assert any(not torch.equal(final[k], start[k]) for k in final if k not in norm)
    expected = {k: [d, list(s)] for k, (d, s) in packed_signature(shared_layout(cfg)).items()}
    for site in sites[:2]:
        replies = _train_replies(site)
        assert len(replies) == 2 and all(r["records"]["arrays"]["arrays"] == expected and not r["blocked"] for r in replies)
        assert list((site.parent / "output" / "state").rglob("*.norm.npz"))
    assert not (sites[2].parent / "output" / "state").exists()  # the external site never trains, keeps nothing
    assert (run_dir / "report.json").exists()


def test_a_scaffold_federation_sends_control_changes_and_keeps_c_i_at_the_sites(tmp_path: Path) -> None:
    sites = _three_sites(tmp_path)
    cfg = RunConfig(
        image_size=32, num_rounds=2, local_epochs=1, runs_dir=str(tmp_path / "runs"), run_id="r1", strategy="scaffold", optimizer="sgd", lr=0.01, baselines=False,
    )  # fmt: skip
    run_dir = run_federation(LoopbackGrid(sites), cfg)  # type: ignore[arg-type]
    start, final = _checkpoint(run_dir, "round-000"), _checkpoint(run_dir, "round-002")
    assert all(torch.isfinite(v).all() for v in final.values() if v.is_floating_point())
    assert any(not torch.equal(final[k], start[k]) for k in network_keys(cfg)[1])
    for site in sites[:2]:
        replies = _train_replies(site)
        assert len(replies) == 2 and all(set(r["records"]) == {"arrays", "control", "metrics"} and not r["blocked"] for r in replies)
        assert list((site.parent / "output" / "state").rglob("*.control.npz"))
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {(line["round"], line["site"]) for line in lines if line["split"] == "val" and line["round"] != "final"} == {(1, "a"), (1, "b"), (2, "a"), (2, "b")}
