"""SCAFFOLD at a site: corrected SGD steps, option II's control variate, kept on disk across processes, and what may leave."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.app.metadata import Metadata
from torch import nn

from client.data import load_site_data
from client.errors import SiteDataError
from client.local_state import LocalState
from client.privacy_guard import policy_violations
from client.scaffold import SiteControl, control_layout, control_update
from client.site import train_round
from client.site_config import load_site_config
from client.training import train_epochs
from models.run_config import RunConfig, RunConfigError
from models.task import build_network
from protocol.messages import CONTROL, Train
from protocol.packing import layout_digest, pack, unpack
from tests.client.test_dp_training import DP
from tests.client.test_local_state import read_in_new_process
from tests.conftest import make_site

RUN = RunConfig(strategy="scaffold", optimizer="sgd", run_id="r1")


class _Loader(list):
    """Batches, as a DataLoader gives them, with the ``dataset`` size that ``train_epochs`` reports."""

    dataset = range(4)


class _Task:
    """A regression 'task': what ``train_epochs`` asks of one."""

    def loss(self) -> nn.Module:
        return nn.MSELoss()

    def network_input(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["x"]

    def targets(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["y"]


def test_corrected_steps_and_option_two_match_a_hand_computation_on_a_linear_model() -> None:
    X = np.array([[1.0, 2.0], [0.5, -1.0], [2.0, 0.0], [-1.0, 1.0]])
    Y = np.array([[1.0], [0.0], [2.0], [-1.0]])
    batches = _Loader({"x": torch.tensor(X[i : i + 2]), "y": torch.tensor(Y[i : i + 2]), "label": torch.zeros(2)} for i in (0, 2))
    model = nn.Linear(2, 1).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.3, -0.2]]))
        model.bias.fill_(0.1)
    x = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    c = {"weight": np.array([[0.2, -0.1]]), "bias": np.array([0.05])}
    c_i = {"weight": np.array([[-0.3, 0.4]]), "bias": np.array([0.1])}
    lr, epochs = 0.1, 2
    correction = {k: torch.tensor(c[k] - c_i[k]) for k in c}
    stats = train_epochs(model, batches, _Task(), torch.optim.SGD(model.parameters(), lr=lr), epochs, torch.device("cpu"), correction=correction)
    # by hand: w <- w - lr (grad - c_i + c) with the MSE gradient 2/n X^T (X w + b - y), over 2 epochs of 2 batches
    w, b, grads = x["weight"].T.copy(), x["bias"].copy(), []
    for _ in range(epochs):
        for i in (0, 2):
            xb, yb = X[i : i + 2], Y[i : i + 2]
            r = xb @ w + b - yb
            gw, gb = 2 / len(xb) * xb.T @ r, 2 * r.mean(axis=0)
            grads.append((gw.T, gb))
            w, b = w - lr * (gw - c_i["weight"].T + c["weight"].T), b - lr * (gb - c_i["bias"] + c["bias"])
    y = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    assert stats.steps == 4
    np.testing.assert_allclose(y["weight"], w.T, rtol=0, atol=1e-12)
    np.testing.assert_allclose(y["bias"], b, rtol=0, atol=1e-12)
    new = control_update(c_i, c, x, y, stats.steps, lr)
    np.testing.assert_allclose(new["weight"], np.mean([g[0] for g in grads], axis=0), rtol=0, atol=1e-12)  # option II: the mean raw gradient
    np.testing.assert_allclose(new["bias"], np.mean([g[1] for g in grads], axis=0), rtol=0, atol=1e-12)


def _content(server_round: int, c: dict[str, np.ndarray], run: RunConfig = RUN) -> RecordDict:
    content = RecordDict(Train(run=run, server_round=server_round).records())
    content[CONTROL] = pack(ArrayRecord({k: Array(v) for k, v in c.items()}))
    return content


def _random_control(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.normal(size=shape).astype(dtype) for name, dtype, shape in control_layout(RUN)}


def test_c_i_is_kept_on_disk_read_back_by_a_new_process_and_the_change_leaves(tmp_path: Path) -> None:
    c = _random_control(0)
    control = SiteControl.of(tmp_path, Train(run=RUN, server_round=2), _content(2, c))
    assert all(not v.any() for v in control.c_i.values())  # nothing kept yet: zero
    x = build_network(RUN).state_dict()
    y = {k: v - 0.01 if v.is_floating_point() else v for k, v in x.items()}
    change = unpack(control.update(x, y, steps=4, lr=0.1), control_layout(RUN))
    for name in c:
        np.testing.assert_allclose(change[name].numpy(), -c[name] + 0.01 / 0.4, rtol=1e-5, atol=1e-6)  # c_i+ - 0 = -c + (x - y)/(K lr)
    names, total = read_in_new_process(tmp_path, "control", layout_digest(control_layout(RUN)))
    assert names == sorted(c) and total == pytest.approx(sum(float((-c[k].astype(np.float64) + 0.01 / 0.4).sum()) for k in c), rel=1e-6)
    later = SiteControl.of(tmp_path, Train(run=RUN, server_round=3), _content(3, c))
    assert all(np.allclose(later.c_i[k], -c[k] + 0.01 / 0.4, atol=1e-6) for k in c)
    restarted = SiteControl.of(tmp_path, Train(run=RUN, server_round=1), _content(1, c))  # a stage's first round starts from zero
    assert all(not v.any() for v in restarted.c_i.values())


def test_a_c_i_kept_for_another_layout_starts_from_zero_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    LocalState(tmp_path, "r1", "federated", 0, "control").save({"conv1.weight": np.ones(3)}, "another-digest")
    with caplog.at_level(logging.WARNING, logger="axilla.client"):
        control = SiteControl.of(tmp_path, Train(run=RUN, server_round=3), _content(3, _random_control(1)))
    assert all(not v.any() for v in control.c_i.values())
    assert "kept for layout another-digest" in caplog.text


def _incoming(run: RunConfig, model: ArrayRecord, c: dict[str, np.ndarray] | None) -> Message:
    meta = Metadata(
        run_id=1, message_id="m1", src_node_id=0, dst_node_id=7, reply_to_message_id="", group_id="1",
        created_at=0.0, ttl=60.0, message_type=MessageType.TRAIN,
    )  # fmt: skip
    content = RecordDict(Train(run=run).records(arrays=model))
    if c is not None:
        content[CONTROL] = pack(ArrayRecord({k: Array(v) for k, v in c.items()}))
    return Message(metadata=meta, content=content)


def _reply(incoming: Message, model: ArrayRecord, change: dict[str, np.ndarray]) -> Message:
    records = {"arrays": pack(model), CONTROL: pack(ArrayRecord({k: Array(v) for k, v in change.items()})), "metrics": MetricRecord({"num_examples": 4})}
    return Message(RecordDict(records), reply_to=incoming)


def test_the_privacy_guard_lets_a_control_change_leave_only_in_answer_to_scaffold() -> None:
    model = ArrayRecord(build_network(RUN).state_dict())
    c = _random_control(2)
    scaffold = _incoming(RUN, model, c)
    assert policy_violations(scaffold, _reply(scaffold, model, c)) == []
    fedavg = _incoming(RUN.replace(strategy="fedavg"), model, None)
    (problem,) = policy_violations(fedavg, _reply(fedavg, model, c))
    assert "did not ask for SCAFFOLD" in problem
    smuggled = _incoming(RUN.replace(strategy="fedavg"), model, c)  # a control record on a non-SCAFFOLD message opens nothing
    assert any("did not ask for SCAFFOLD" in p for p in policy_violations(smuggled, _reply(smuggled, model, c)))
    bigger = {k: np.concatenate([v.reshape(-1), v.reshape(-1)]) for k, v in c.items()}
    assert any("differ" in p for p in policy_violations(scaffold, _reply(scaffold, model, bigger)))


def test_scaffold_needs_plain_sgd_and_no_central_dp() -> None:
    with pytest.raises(RunConfigError, match="needs optimizer = 'sgd'.*Adam"):
        RunConfig(strategy="scaffold")
    with pytest.raises(RunConfigError, match="central-dp"):
        RunConfig(strategy="scaffold", optimizer="sgd", central_dp="server-clipping")
    with pytest.raises(RunConfigError, match="scaffold-server-lr"):
        RunConfig(strategy="scaffold", optimizer="sgd", scaffold_server_lr=0.0)


def test_a_dp_site_refuses_the_gradient_correction(tmp_path: Path) -> None:
    data = load_site_data(load_site_config(make_site(tmp_path, "alpha", n=12, extra_yaml=DP)), 32)
    cfg = RUN.replace(image_size=32, model_variant="dp-compatible")
    state = build_network(cfg).state_dict()
    with pytest.raises(SiteDataError, match="DP-SGD.*SCAFFOLD") as refused:
        train_round(data, state, cfg, 1, total_rounds=2, correction={"conv1.weight": torch.zeros(1)})
    assert "/" not in refused.value.public
    assert not (tmp_path / "alpha" / "output" / "privacy").exists()  # refused before any DP spend
