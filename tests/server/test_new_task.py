"""A new task is a task class plus its model: registered in this file alone, it runs through the federation and the baselines."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from evaluation.report import write_report
from models.run_config import RunConfig
from models.stages import plan_for
from models.task import Batch, ImageInput, InputSpec
from models.task_registry import register_task
from server.federation import run_federation
from server.run_dir import RunDirectory
from simulation.baselines import run_baselines
from tests.conftest import make_site
from tests.server.test_federation import LoopbackGrid


class MeanIntensity(nn.Module):
    """A tiny model: one logit from the image's mean and spread (the test sites' lesions are dark discs)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        flat = image.flatten(1)
        return self.linear(torch.stack([flat.mean(1), flat.std(1)], dim=1))


@dataclass(frozen=True)
class ToyTask(ImageInput):
    """Classification by ``MeanIntensity`` on 16 px images (``ImageInput``: the network reads the batch's images)."""

    name: str = "toy-intensity"
    needs_masks: bool = False
    has_scores: bool = True

    def build_model(self, cfg: RunConfig) -> nn.Module:
        torch.manual_seed(cfg.seed)
        return MeanIntensity()

    def input_size(self, cfg: RunConfig) -> int:
        return 16

    def inputs(self, cfg: RunConfig) -> InputSpec:
        return InputSpec(16)

    def label(self) -> str:
        return ""

    def describe(self, cfg: RunConfig) -> dict[str, Any]:
        return {"toy_features": 2}

    def loss(self) -> nn.Module:
        return nn.BCEWithLogitsLoss()

    def targets(self, batch: Batch) -> torch.Tensor:
        return batch["label"].float().view(-1, 1)

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(outputs.view(-1))

    def mask_logits(self, outputs: torch.Tensor) -> None:
        return None

    def explained(self, model: nn.Module) -> None:
        return None


register_task("toy-intensity", lambda cfg: ToyTask())


def test_a_registered_task_runs_through_the_federation_and_the_baselines(tmp_path: Path) -> None:
    sites = [make_site(tmp_path, "a", n=16, seed=1), make_site(tmp_path, "b", n=16, seed=2), make_site(tmp_path, "ext", role="external", n=10, seed=3)]
    cfg = RunConfig(task="toy-intensity", num_rounds=2, local_epochs=1, lr=0.05, runs_dir=str(tmp_path / "runs"), run_id="toy")
    run_dir = run_federation(LoopbackGrid(sites), cfg)  # type: ignore[arg-type]
    run_baselines(RunDirectory(run_dir), cfg, sites)
    report = write_report(run_dir)
    assert report["run"]["task"] == "toy-intensity" and report["run"]["toy_features"] == 2
    rows = {(r["model"], r["site"], r["split"]) for r in report["classification"]}
    models = {"federated", "local:a", "local:b", "pooled"}
    assert {(m, s, "test") for m in models for s in ("a", "b", "ext")} <= rows
    assert ("pooled", "a", "val") in rows and ("local:a", "b", "val") not in rows  # a baseline is validated where it trains
    assert {(c["site"], c["model_b"]) for c in report["comparisons"]} == {(s, m) for s in ("a", "b", "ext") for m in models - {"federated"}}
    final = torch.load(run_dir / "checkpoints" / "final.pt")
    assert set(final) == {"linear.weight", "linear.bias"} and set(torch.load(run_dir / "checkpoints" / "pooled.pt")) == set(final)
    assert plan_for(cfg).total_rounds == 2
