"""The server job run in-process: a grid that hands each message to the real ClientApp."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import pytest
from flwr.app import Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from client.app import app as client_app
from models.run_config import RunConfig
from server.federation import FederationError, run_federation
from tests.conftest import make_site


@pytest.fixture(autouse=True)
def _server_identity() -> None:
    """Messages created on the server need the task identity that Flower's runtime sets."""
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0


class LoopbackGrid:
    """Delivers each message to the ClientApp of its node, in this process."""

    def __init__(self, site_yamls: list[Path]) -> None:
        self.contexts = {
            100 + i: Context(run_id=1, node_id=100 + i, node_config={"site-config": str(p)}, state=RecordDict(), run_config={})
            for i, p in enumerate(site_yamls)
        }
        self.sent: list[Message] = []

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        replies = []
        for message in messages:
            self.sent.append(message)
            replies.append(client_app(message, self.contexts[message.metadata.dst_node_id]))
        return replies


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
