"""Personalisation at a site: the epoch count chosen on validation, Ditto's step, the personal model on disk, who sends personal metrics."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from flwr.app import ArrayRecord, RecordDict
from torch import nn

import client.personal as personal
from client.personal import choose_epochs, ditto_update, finetune
from client.personal_store import PersonalStore
from client.site import stage_data
from client.site_config import load_site_config
from client.work import run_work
from models.run_config import RunConfig
from models.task import build_network
from protocol.messages import EVALUATE, Evaluate

ROOT = Path(__file__).resolve().parents[2]
DP = "privacy:\n  dp: {enabled: true, target_epsilon: 8.0, delta: 1.0e-5, max_grad_norm: 1.0}\n"


def test_the_epoch_count_is_the_argmax_of_the_validation_scores_fewest_among_ties() -> None:
    assert choose_epochs({1: 0.6, 2: 0.9, 4: 0.7}) == 2
    assert choose_epochs({1: 0.8, 2: 0.8, 4: 0.5}) == 1
    assert choose_epochs({1: -0.9, 3: -0.4}) == 3  # minus the loss: the lower loss wins


def test_fine_tuning_keeps_the_model_of_the_best_validated_epoch_not_the_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import make_site

    cfg = RunConfig(image_size=32, personalise="finetune", personalise_epochs="4,1,2", lr=0.01)
    data = stage_data(load_site_config(make_site(tmp_path, "a", n=16, seed=1)), cfg)
    scripted, seen = iter([0.6, 0.9, 0.7]), []  # validation scores after epochs 1, 2, 4

    def recorded(data: Any, model: nn.Module, cfg: RunConfig) -> float:
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return next(scripted)

    monkeypatch.setattr(personal, "val_score", recorded)
    start = build_network(cfg)
    before = {k: v.clone() for k, v in start.state_dict().items()}
    tuned, epochs, scores = finetune(data, start, cfg, seed=3)
    assert (epochs, scores) == (2, {1: 0.6, 2: 0.9, 4: 0.7})
    assert len(seen) == 3 and any(not torch.equal(seen[1][k], seen[2][k]) for k in seen[1])  # epochs 2 and 4 gave different models
    for key, value in tuned.state_dict().items():
        torch.testing.assert_close(value, seen[1][key])  # the state validated after epoch 2
    for key, value in start.state_dict().items():
        torch.testing.assert_close(value, before[key])  # the global model is left as it was


class _Squared:
    """A task for a linear model: the model reads ``x``, the loss is the squared error to ``label``."""

    def loss(self) -> Any:
        return lambda out, y: ((out.squeeze(-1) - y) ** 2).mean()

    def network_input(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["x"]

    def targets(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["label"]


def test_one_ditto_step_equals_the_hand_computed_gradient_step(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y, lr, lam = torch.tensor([[1.0, 2.0]]), torch.tensor([3.0]), 0.1, 0.5
    v = nn.Linear(2, 1)
    with torch.no_grad():
        v.weight.copy_(torch.tensor([[0.5, -1.0]]))
        v.bias.copy_(torch.tensor([0.25]))
    w = {"weight": torch.tensor([[1.0, 1.0]]), "bias": torch.tensor([-0.5])}
    batches = [{"x": x, "label": y}]
    data = SimpleNamespace(config=SimpleNamespace(site="a", compute=SimpleNamespace(device="cpu")), loader=lambda *a, **k: _Loader(batches))
    monkeypatch.setattr(personal, "task_for", lambda cfg: _Squared())
    cfg = RunConfig(optimizer="sgd", lr=lr, weight_decay=0.0, lr_schedule="constant", local_epochs=1, ditto_lambda=lam)
    new = ditto_update(data, v, w, cfg, server_round=1, seed=0)  # type: ignore[arg-type]
    # by hand: r = v.x + b - y = 0.5 - 2 + 0.25 - 3 = -4.25; dF/dweight = 2 r x, dF/dbias = 2 r; plus lambda (v - w)
    r = 0.5 * 1.0 - 1.0 * 2.0 + 0.25 - 3.0
    weight = torch.tensor([[0.5, -1.0]]) - lr * (2 * r * torch.tensor([[1.0, 2.0]]) + lam * (torch.tensor([[0.5, -1.0]]) - w["weight"]))
    bias = torch.tensor([0.25]) - lr * (2 * r + lam * (0.25 - (-0.5)))
    torch.testing.assert_close(new["weight"], weight)
    torch.testing.assert_close(new["bias"], bias)


class _Loader(list):
    """A one-pass loader over given batches, with the ``dataset`` length train_epochs reports."""

    @property
    def dataset(self) -> list[int]:
        return [0] * sum(len(b["label"]) for b in self)


def test_a_personal_model_survives_a_new_process_and_is_kept_per_run_and_stage(tmp_path: Path) -> None:
    store, cfg, layout = PersonalStore(tmp_path), RunConfig(run_id="r1"), (("w", "float32", (2,)),)
    path = store.save(cfg, 0, layout, {"w": torch.tensor([1.5, -2.0])})
    assert not list(path.parent.glob("*.tmp"))  # written atomically: no temporary file is left
    script = f"from client.personal_store import PersonalStore; from models.run_config import RunConfig; print(PersonalStore({str(tmp_path)!r}).load(RunConfig(run_id='r1'), 0, {layout!r})['w'].tolist())"
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[1.5, -2.0]"
    assert store.load(RunConfig(run_id="r2"), 0, layout) is None and store.load(cfg, 8, layout) is None
    assert store.load(cfg, 0, (("w", "float32", (3,)),)) is None  # another network's layout


def _evaluate_with_personalisation(site_yaml: Path, cfg: RunConfig) -> dict[str, Any]:
    message = Evaluate(run=cfg, split="test", personalise=True)
    content = RecordDict(message.records(ArrayRecord(build_network(cfg).state_dict())))
    reply = run_work(EVALUATE, content, {"site-config": str(site_yaml)})
    assert not reply.array_records  # the reply holds no model, personalised or global
    return dict(reply.metric_records["metrics"])


def test_only_a_training_site_without_dp_and_with_validation_cases_sends_personal_metrics(tmp_path: Path) -> None:
    from tests.conftest import make_site

    cfg = RunConfig(image_size=32, personalise="finetune", personalise_epochs="1")
    trains = _evaluate_with_personalisation(make_site(tmp_path, "a", n=16, seed=1), cfg)
    assert trains["personal/epochs"] == 1 and "personal/auc" in trains and "vs:global/delong_p" in trains
    assert "auc" in trains  # the global model's own metrics stay as they were
    def no_validation(rows: list[dict[str, str]]) -> None:
        for i, row in enumerate(rows):
            row["split"] = "train" if i % 4 < 2 else "test"

    unvalidated = make_site(tmp_path, "noval", n=16, seed=4, rows=no_validation)
    for site in (make_site(tmp_path, "ext", role="external", n=12, seed=2), make_site(tmp_path, "dp", n=16, seed=3, extra_yaml=DP), unvalidated):
        metrics = _evaluate_with_personalisation(site, cfg)
        assert "auc" in metrics and not [k for k in metrics if k.startswith(("personal/", "vs:global/"))]
