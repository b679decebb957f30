"""SCAFFOLD on the server: x and c moved as Algorithm 1 says, checked by hand; mock replies, no network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message

from models.run_config import RunConfig
from protocol.messages import CONTROL
from protocol.packing import layout_of, pack, unpack
from server.run_dir import RunDirectory
from strategies.named import ServerStateError, restore_server_state
from strategies.scaffold import SiteScaffold, scaffold_step
from strategies.site_aware import build_strategy
from tests.strategies.test_site_aware import SITES, FakeGrid, Recorder, _reply, _server_identity  # noqa: F401 (the autouse fixture)


def test_the_server_step_by_hand() -> None:
    x = {"w": np.array([1.0, 2.0]), "rm": np.array([0.0, 0.0])}
    c = {"w": np.array([0.5, 0.5])}
    ys = [{"w": np.array([2.0, 2.0]), "rm": np.array([1.0, 1.0])}, {"w": np.array([0.0, 4.0]), "rm": np.array([3.0, 3.0])}]
    dcs = [{"w": np.array([1.0, 0.0])}, {"w": np.array([3.0, 2.0])}]
    new_x, new_c = scaffold_step(x, c, ys, dcs, server_lr=0.5, n_sites=4)
    np.testing.assert_allclose(new_x["w"], [1.0, 2.5])  # x + 0.5 * mean([1, 0], [-1, 2])
    np.testing.assert_allclose(new_x["rm"], [2.0, 2.0])  # a buffer: the mean of the y_i
    np.testing.assert_allclose(new_c["w"], [1.5, 1.0])  # c + 2/4 * mean([1, 0], [3, 2])


def _global() -> ArrayRecord:
    return ArrayRecord({
        "w": Array(np.array([1.0, 2.0], np.float32)),
        "bn.running_mean": Array(np.zeros(2, np.float32)),
        "bn.num_batches_tracked": Array(np.array(4, np.int64)),
    })  # fmt: skip


def _scaffold_reply(src: int, w: list[float], change: list[float] | None, cases: int = 10) -> Message:
    reply = _reply(src, {"w": np.array(w, np.float32), "bn.running_mean": np.ones(2, np.float32), "bn.num_batches_tracked": np.array(6, np.int64)},
                   {"num_examples": cases})  # fmt: skip
    if change is not None:
        reply.content[CONTROL] = pack(ArrayRecord({"w": Array(np.array(change, np.float32))}))
    return reply


def _sent_control(message: Message) -> np.ndarray:
    return unpack(message.content[CONTROL], layout_of(ArrayRecord({"w": Array(np.zeros(2, np.float32))})))["w"].numpy()


def test_a_round_moves_x_and_c_as_the_paper_says_and_sends_the_new_c() -> None:
    strategy = SiteScaffold(SITES, ("w",), 2.0, Recorder(), min_train_sites=2)
    first = list(strategy.configure_train(1, _global(), ConfigRecord(), FakeGrid([11, 22, 33])))
    assert sorted(m.metadata.dst_node_id for m in first) == [11, 22]
    assert all(np.array_equal(_sent_control(m), [0.0, 0.0]) for m in first)
    arrays, _ = strategy.aggregate_train(1, [_scaffold_reply(11, [2.0, 2.0], [1.0, 0.0], cases=30), _scaffold_reply(22, [1.0, 4.0], [3.0, 2.0])])
    assert arrays is not None
    np.testing.assert_allclose(arrays["w"].numpy(), [2.0, 4.0])  # x + 2 * mean([1, 0], [0, 2]): uniform, not case-weighted
    np.testing.assert_allclose(arrays["bn.running_mean"].numpy(), [1.0, 1.0])
    assert arrays["w"].numpy().dtype == np.float32 and int(arrays["bn.num_batches_tracked"].numpy()) == 6
    np.testing.assert_allclose(strategy.control["w"], [2.0, 1.0])  # 0 + 2/2 * mean([1, 0], [3, 2])
    again = list(strategy.configure_train(2, arrays, ConfigRecord(), FakeGrid([11, 22, 33])))
    assert all(np.array_equal(_sent_control(m), [2.0, 1.0]) for m in again)


def test_replies_without_a_fitting_control_change_are_rejected_and_c_counts_all_training_sites() -> None:
    recorder = Recorder()
    strategy = SiteScaffold(SITES, ("w",), 1.0, recorder, min_train_sites=1)
    list(strategy.configure_train(1, _global(), ConfigRecord(), FakeGrid([11, 22, 33])))
    wrong = _scaffold_reply(22, [5.0, 5.0], None)
    wrong.content[CONTROL] = pack(ArrayRecord({"w": Array(np.zeros(3, np.float32))}))
    arrays, _ = strategy.aggregate_train(1, [_scaffold_reply(11, [3.0, 2.0], [4.0, 2.0]), wrong])
    assert arrays is not None
    np.testing.assert_allclose(arrays["w"].numpy(), [3.0, 2.0])
    np.testing.assert_allclose(strategy.control["w"], [2.0, 1.0])  # |S|/N = 1/2 of the one accepted change
    (_, _, per_site, missing), = recorder.trained_calls
    assert set(per_site) == {"a"} and missing["b"].startswith("update rejected: control change")
    list(strategy.configure_train(2, arrays, ConfigRecord(), FakeGrid([11, 22, 33])))
    strategy.aggregate_train(2, [_scaffold_reply(11, [3.0, 2.0], [0.0, 0.0]), _scaffold_reply(22, [3.0, 2.0], None)])
    assert "no 'control' record" in recorder.trained_calls[-1][3]["b"]


def test_build_strategy_gives_scaffold_the_float_parameters_and_server_lr() -> None:
    run = RunConfig(strategy="scaffold", optimizer="sgd", scaffold_server_lr=0.5)
    strategy = build_strategy("scaffold", SITES, None, 2, 0.0, run=run)
    assert isinstance(strategy, SiteScaffold) and strategy.server_lr == pytest.approx(0.5)
    assert "conv1.weight" in strategy.control_keys and "bn1.weight" in strategy.control_keys and "bn1.running_mean" not in strategy.control_keys


def test_fedbn_and_scaffold_need_the_run_config() -> None:
    for name in ("fedbn", "scaffold"):
        with pytest.raises(ValueError, match="need the run config"):
            build_strategy(name, SITES, None, 2, 0.0)


def test_c_is_saved_with_each_round_and_a_resumed_strategy_sends_it_on(tmp_path: Path) -> None:
    run_dir = RunDirectory(tmp_path / "run")
    strategy = SiteScaffold(SITES, ("w",), 2.0, run_dir, min_train_sites=2)
    list(strategy.configure_train(1, _global(), ConfigRecord(), FakeGrid([11, 22, 33])))
    arrays, _ = strategy.aggregate_train(1, [_scaffold_reply(11, [2.0, 2.0], [1.0, 0.0]), _scaffold_reply(22, [1.0, 4.0], [3.0, 2.0])])
    assert arrays is not None and run_dir.last_round() == 1
    resumed = SiteScaffold(SITES, ("w",), 2.0, None, min_train_sites=2, round_offset=1)
    restore_server_state(resumed, run_dir, 1)
    np.testing.assert_allclose(resumed.control["w"], [2.0, 1.0])
    sent = list(resumed.configure_train(1, arrays, ConfigRecord(), FakeGrid([11, 22, 33])))
    assert all(np.array_equal(_sent_control(m), [2.0, 1.0]) for m in sent)  # not reset to zero
    with pytest.raises(ServerStateError, match="strategy 'scaffold' keeps server state.*round 2"):
        restore_server_state(SiteScaffold(SITES, ("w",), 2.0, None, min_train_sites=2), run_dir, 2)
