"""The server job run in-process: a grid that hands each message to the real ClientApp."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import pytest
import torch
from flwr.app import Error, Message

from models.run_config import RunConfig
from server.federation import FederationError, run_federation
from server.inprocess_grid import InProcessGrid
from tests.conftest import make_site


class LoopbackGrid(InProcessGrid):
    """The in-process grid of the site folders, keeping every message it delivered."""

    def __init__(self, site_yamls: list[Path]) -> None:
        super().__init__({"site-config": str(p)} for p in site_yamls)
        self.sent: list[Message] = []

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        messages = list(messages)
        self.sent.extend(messages)
        return super().push_messages(messages)


def _cfg(tmp_path: Path, **changes: object) -> RunConfig:
    return RunConfig(image_size=32, num_rounds=2, local_epochs=1, runs_dir=str(tmp_path / "runs"), run_id="r1").replace(**changes)


def test_federation_excludes_a_broken_site_and_evaluates_everywhere(tmp_path: Path) -> None:
    def bad_label(rows: list[dict[str, str]]) -> None:
        rows[3]["label"] = "7"

    grid = LoopbackGrid([
        make_site(tmp_path, "a", n=24, seed=1),
        make_site(tmp_path, "b", n=20, seed=2, kind="dicom"),
        make_site(tmp_path, "broken", n=10, rows=bad_label),
        make_site(tmp_path, "ext", role="external", n=16, seed=3, kind="rgb"),
    ])
    run_dir = run_federation(grid, _cfg(tmp_path))  # type: ignore[arg-type]
    report = json.loads((run_dir / "report.json").read_text())
    assert report["excluded"] == {"node-102": "manifest row 5: label is not 0 or 1"}
    assert {(r["site"], r["split"]) for r in report["classification"]} == {
        ("a", "val"), ("b", "val"), ("a", "test"), ("b", "test"), ("ext", "test"), ("all", "val"), ("all", "test"),
    }
    pooled = next(r for r in report["classification"] if r["site"] == "all" and r["split"] == "test")
    assert pooled["n"] == sum(r["n"] for r in report["classification"] if r["site"] != "all" and r["split"] == "test")
    trained_at = {m.metadata.dst_node_id for m in grid.sent if m.metadata.message_type == "train"}
    assert trained_at == {100, 101}  # neither the external nor the broken site trains
    assert (run_dir / "checkpoints" / "round-002.pt").exists() and (run_dir / "checkpoints" / "final.pt").exists()
    lines = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {(l["round"], l["site"]) for l in lines if l["split"] == "val" and l["round"] != "final"} == {
        (1, "a"), (1, "b"), (2, "a"), (2, "b"),
    }


def test_too_few_training_sites_stop_with_a_clear_message(tmp_path: Path) -> None:
    grid = LoopbackGrid([make_site(tmp_path, "a", n=12), make_site(tmp_path, "ext", role="external", n=8)])
    with pytest.raises(FederationError, match="1 usable training site.*min-train-sites=2"):
        run_federation(grid, _cfg(tmp_path))  # type: ignore[arg-type]
    assert json.loads((tmp_path / "runs" / "r1" / "config.json").read_text())["sites"][0]["name"] == "a"


class FlakyGrid(LoopbackGrid):
    """A loopback grid where chosen sites go offline or fail from given training rounds on."""

    def __init__(self, site_yamls: list[Path], offline_from: dict[int, int] | None = None, unavailable_in: dict[int, int] | None = None) -> None:
        super().__init__(site_yamls)
        self.offline_from = offline_from or {}  # node -> first training round it is disconnected
        self.unavailable_in = unavailable_in or {}  # node -> the one training round its reply is a Flower error
        self.round = 0

    def get_node_ids(self) -> Iterable[int]:
        return [n for n in self.contexts if not (n in self.offline_from and self.round >= self.offline_from[n])]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        messages = list(messages)
        if any(m.metadata.message_type == "train" for m in messages):
            self.round += 1
        replies = []
        for message in messages:
            node = message.metadata.dst_node_id
            if message.metadata.message_type == "train" and self.unavailable_in.get(node) == self.round:
                replies.append(Message(Error(code=3, reason="node unavailable"), reply_to=message))
            else:
                replies.extend(super().send_and_receive([message]))
        return replies


class KilledServer(Exception):
    """Stands for the server process dying."""


class DyingGrid(LoopbackGrid):
    """A loopback grid whose server 'dies' when the given training round is sent."""

    def __init__(self, site_yamls: list[Path], die_at_round: int) -> None:
        super().__init__(site_yamls)
        self.die_at_round, self.round = die_at_round, 0

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        messages = list(messages)
        if any(m.metadata.message_type == "train" for m in messages):
            self.round += 1
            if self.round == self.die_at_round:
                raise KilledServer
        return super().send_and_receive(messages)


def _three_sites(tmp_path: Path) -> list[Path]:
    return [
        make_site(tmp_path, "a", n=20, seed=1),
        make_site(tmp_path, "b", n=20, seed=2),
        make_site(tmp_path, "ext", role="external", n=12, seed=3),
    ]


def test_a_site_unavailable_for_a_round_is_recorded_missing_and_used_again(tmp_path: Path) -> None:
    grid = FlakyGrid(_three_sites(tmp_path), unavailable_in={101: 1})
    run_dir = run_federation(grid, _cfg(tmp_path, min_train_sites=1))  # type: ignore[arg-type]
    lines = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = {(l["round"], l["site"]): l for l in lines if l["split"] == "train"}
    assert train[(1, "b")]["status"] == "missing" and "node unavailable" in train[(1, "b")]["reason"]
    assert train[(1, "a")]["status"] == "ok" and train[(2, "b")]["status"] == "ok"
    report = json.loads((run_dir / "report.json").read_text())
    assert any(m["site"] == "b" and m["round"] == 1 for m in report["missing"])


def test_too_few_connected_sites_stop_the_run_keeping_checkpoints(tmp_path: Path) -> None:
    grid = FlakyGrid(_three_sites(tmp_path), offline_from={101: 1})
    with pytest.raises(FederationError, match=r"round 2: 1 training site\(s\) connected.*min-train-sites=2 \(offline: b\).*resume"):
        run_federation(grid, _cfg(tmp_path, round_timeout=1.0))  # type: ignore[arg-type]
    run_dir = tmp_path / "runs" / "r1"
    stopped = json.loads((run_dir / "stopped.json").read_text())
    assert stopped["last_complete_round"] == 1 and "offline: b" in stopped["reason"]
    assert (run_dir / "checkpoints" / "round-001.pt").exists() and not (run_dir / "checkpoints" / "final.pt").exists()


@pytest.mark.parametrize("strategy", ["fedavg", "fedadam"])  # FedAdam: its server state (m, v) is saved with each checkpoint and restored
def test_a_resumed_run_ends_with_the_uninterrupted_runs_model(tmp_path: Path, strategy: str) -> None:
    sites = _three_sites(tmp_path)
    reference = run_federation(LoopbackGrid(sites), _cfg(tmp_path, num_rounds=3, strategy=strategy))  # type: ignore[arg-type]
    with pytest.raises(KilledServer):
        run_federation(DyingGrid(sites, die_at_round=3), _cfg(tmp_path, num_rounds=3, run_id="r2", strategy=strategy))  # type: ignore[arg-type]
    interrupted = tmp_path / "runs" / "r2"
    assert not (interrupted / "checkpoints" / "round-003.pt").exists()
    assert (interrupted / "checkpoints" / "round-002-server.pt").exists() == (strategy == "fedadam")
    resumed = run_federation(LoopbackGrid(sites), _cfg(tmp_path, num_rounds=3, run_id="ignored", resume_from=str(interrupted), strategy=strategy))  # type: ignore[arg-type]
    assert resumed == interrupted
    want = torch.load(reference / "checkpoints" / "final.pt")
    got = torch.load(resumed / "checkpoints" / "final.pt")
    assert want.keys() == got.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-6)
    lines = [json.loads(l) for l in (resumed / "metrics.jsonl").read_text().splitlines()]
    rounds = sorted((l["round"], l["site"]) for l in lines if l["split"] == "train")
    assert rounds == [(r, s) for r in (1, 2, 3) for s in ("a", "b")]  # each round once, numbering continued
    config = json.loads((resumed / "config.json").read_text())
    assert config["resumed"][0]["after_round"] == 2 and config["run"]["run-id"] == "r2"


def test_resume_refuses_a_different_experiment(tmp_path: Path) -> None:
    sites = _three_sites(tmp_path)
    with pytest.raises(KilledServer):
        run_federation(DyingGrid(sites, die_at_round=2), _cfg(tmp_path))  # type: ignore[arg-type]
    with pytest.raises(FederationError, match="changes lr"):
        run_federation(LoopbackGrid(sites), _cfg(tmp_path, lr=0.5, resume_from=str(tmp_path / "runs" / "r1")))  # type: ignore[arg-type]


def test_validate_every_thins_per_round_validation_but_not_the_final_one(tmp_path: Path) -> None:
    grid = LoopbackGrid(_three_sites(tmp_path))
    run_dir = run_federation(grid, _cfg(tmp_path, num_rounds=3, validate_every=2))  # type: ignore[arg-type]
    val = sorted({(l["round"], l["site"]) for l in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if l["split"] == "val"}, key=str)
    assert val == sorted({(2, "a"), (2, "b"), ("final", "a"), ("final", "b")}, key=str)
    assert sum(m.metadata.message_type == "evaluate" for m in grid.sent) == 2 + 2 + 3  # round 2, final val, final test


def test_a_site_that_goes_offline_mid_round_is_named_as_such(tmp_path: Path) -> None:
    class VanishingGrid(FlakyGrid):
        def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
            replies = super().send_and_receive(messages)
            if self.round == 1 and any(m.metadata.message_type == "train" for m in replies):
                self.offline_from = {101: 1}
                return [r for r in replies if r.metadata.src_node_id != 101]
            self.offline_from = {}
            return replies

    run_dir = run_federation(VanishingGrid(_three_sites(tmp_path)), _cfg(tmp_path, min_train_sites=1))  # type: ignore[arg-type]
    train = {(l["round"], l["site"]): l for l in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if l["split"] == "train"}
    assert train[(1, "b")]["reason"] == "no reply: the site went offline during the round"
    assert train[(2, "b")]["status"] == "ok"


def test_a_site_with_a_truncated_dicom_stops_alone_and_only_the_reason_without_its_path_leaves_it(tmp_path: Path) -> None:
    cut = make_site(tmp_path, "cut", n=12, seed=4, kind="dicom")
    victim = cut.parent / "images" / "cut-005.dcm"
    victim.write_bytes(victim.read_bytes()[:-300])  # cut inside the pixel data
    grid = LoopbackGrid([make_site(tmp_path, "a", n=20, seed=1), make_site(tmp_path, "b", n=20, seed=2), cut])
    run_dir = run_federation(grid, _cfg(tmp_path, num_rounds=1))  # type: ignore[arg-type]
    report = json.loads((run_dir / "report.json").read_text())
    assert {r["site"] for r in report["classification"] if r["model"] == "federated"} == {"a", "b", "all"}
    reasons = {m["reason"] for m in report["missing"] if m["site"] == "cut"}
    assert reasons and all("manifest row 7" in r and "truncated" in r for r in reasons), reasons
    sent_back = json.dumps(report) + (run_dir / "metrics.jsonl").read_text()
    assert str(tmp_path) not in sent_back and "cut-005" not in sent_back  # no path, no case id crossed
