"""Site-aware FedAvg/FedProx tested with mock replies and a fake grid (no network)."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MessageType, MetricRecord, RecordDict
from flwr.app.metadata import Metadata
from server.flower_compat import set_server_task_identity
from protocol.packing import layout_of, pack, packed_keys

from strategies.site_aware import SiteFedAvg, SiteFedProx, build_strategy
from strategies.sites import NodeSite


@pytest.fixture(autouse=True)
def _server_identity() -> None:
    """Messages created on the server need the task identity that Flower's runtime sets."""
    set_server_task_identity()


class FakeGrid:
    """Only what the strategies use: the connected node ids."""

    def __init__(self, node_ids: list[int]) -> None:
        self.node_ids = node_ids

    def get_node_ids(self) -> Iterable[int]:
        return list(self.node_ids)


class Recorder:
    """A RoundObserver keeping what it was told."""

    def __init__(self) -> None:
        self.trained_calls: list[tuple] = []
        self.evaluated_calls: list[tuple] = []

    def trained(self, server_round, arrays, per_site, missing) -> None:  # noqa: ANN001
        self.trained_calls.append((server_round, arrays, per_site, missing))

    def evaluated(self, server_round, per_site, missing) -> None:  # noqa: ANN001
        self.evaluated_calls.append((server_round, per_site, missing))


SITES = {
    11: NodeSite(11, "a", "train", {"train": {0: 30, 1: 10}}),
    22: NodeSite(22, "b", "train", {"train": {0: 10, 1: 10}}),
    33: NodeSite(33, "ext", "external", {"test": {0: 20, 1: 20}}),
}


def _reply(src: int, arrays: dict[str, np.ndarray] | None, metrics: dict, error: str | None = None) -> Message:
    """A reply as a site would send it (metadata filled as the grid would; arrays packed, in the given order)."""
    meta = Metadata(
        run_id=1, message_id="", src_node_id=src, dst_node_id=0, reply_to_message_id="x", group_id="1",
        created_at=0.0, ttl=60.0, message_type=MessageType.TRAIN,
    )
    if error is not None:
        return Message(metadata=meta, error=Error(code=1, reason=error))
    content = RecordDict({"metrics": MetricRecord(metrics)})
    if arrays is not None:
        content["arrays"] = pack(ArrayRecord({k: Array(v) for k, v in arrays.items()}))  # as a site sends it
    return Message(metadata=meta, content=content)


def _global() -> ArrayRecord:
    return ArrayRecord({"w": Array(np.zeros(3, np.float32)), "bn.num_batches_tracked": Array(np.array(5, np.int64))})


def test_training_goes_to_train_sites_only_and_carries_proximal_mu() -> None:
    strategy = SiteFedProx(SITES, None, min_train_sites=2, proximal_mu=0.3)
    messages = list(strategy.configure_train(1, _global(), ConfigRecord({"lr": 0.1}), FakeGrid([11, 22, 33])))
    assert sorted(m.metadata.dst_node_id for m in messages) == [11, 22]
    assert all(m.content["config"]["proximal-mu"] == pytest.approx(0.3) for m in messages)
    assert all(m.metadata.message_type == MessageType.TRAIN for m in messages)
    assert all(list(m.content["arrays"].keys()) == list(packed_keys(layout_of(_global()))) for m in messages)  # sent packed
    evals = list(strategy.configure_evaluate(1, _global(), ConfigRecord({"split": "val"}), FakeGrid([11, 22, 33])))
    assert sorted(m.metadata.dst_node_id for m in evals) == [11, 22]


def test_aggregation_weights_by_training_cases_and_keeps_dtypes() -> None:
    recorder = Recorder()
    strategy = SiteFedAvg(SITES, recorder, min_train_sites=2)
    list(strategy.configure_train(1, _global(), ConfigRecord(), FakeGrid([11, 22, 33])))
    replies = [
        _reply(11, {"w": np.array([1.0, 2.0, 3.0], np.float32), "bn.num_batches_tracked": np.array(8, np.int64)}, {"num_examples": 40, "train_loss": 1.0}),
        _reply(22, {"w": np.array([3.0, 6.0, 9.0], np.float32), "bn.num_batches_tracked": np.array(9, np.int64)}, {"num_examples": 20, "train_loss": 4.0}),
    ]
    arrays, metrics = strategy.aggregate_train(1, replies)
    assert arrays is not None and metrics is not None
    np.testing.assert_allclose(arrays["w"].numpy(), [5 / 3, 10 / 3, 5.0], rtol=1e-6)  # (40*x + 20*y) / 60
    assert arrays["w"].numpy().dtype == np.float32
    assert arrays["bn.num_batches_tracked"].numpy().dtype == np.int64
    assert int(arrays["bn.num_batches_tracked"].numpy()) == 8  # 8*2/3 + 9/3 = 8.33 -> 8
    assert metrics["train_loss"] == pytest.approx(2.0)
    (_, _, per_site, missing), = recorder.trained_calls
    assert set(per_site) == {"a", "b"} and missing == {}


def test_failed_and_silent_sites_are_named_and_left_out() -> None:
    recorder = Recorder()
    strategy = SiteFedAvg(SITES, recorder, min_train_sites=1)
    list(strategy.configure_train(2, _global(), ConfigRecord(), FakeGrid([11, 22, 33])))
    arrays, _ = strategy.aggregate_train(2, [_reply(11, {"w": np.ones(3, np.float32), "bn.num_batches_tracked": np.array(1, np.int64)}, {"num_examples": 5})])
    assert arrays is not None and np.allclose(arrays["w"].numpy(), 1.0)
    assert recorder.trained_calls[-1][3] == {"b": "no reply before the round timeout"}
    list(strategy.configure_evaluate(2, _global(), ConfigRecord(), FakeGrid([11, 22, 33])))
    agg = strategy.aggregate_evaluate(
        2,
        [
            _reply(11, None, {"num_examples": 10, "auc": 0.8, "hist_pos": [1, 2]}),
            _reply(22, None, {}, error="manifest row 4: label is not 0 or 1"),
        ],
    )
    assert agg is not None and agg["auc"] == pytest.approx(0.8) and "hist_pos" not in agg
    _, per_site, missing = recorder.evaluated_calls[-1]
    assert set(per_site) == {"a"} and missing == {"b": "error: manifest row 4: label is not 0 or 1"}


def test_build_strategy_by_name() -> None:
    assert isinstance(build_strategy("fedprox", SITES, None, 2, 0.1), SiteFedProx)
    assert type(build_strategy("fedavg", SITES, None, 2, 0.1)) is SiteFedAvg
    with pytest.raises(ValueError, match="unknown strategy"):
        build_strategy("fedsgd", SITES, None, 2, 0.1)


def test_reply_packed_for_another_model_is_rejected_by_name() -> None:
    strategy = SiteFedAvg(SITES, Recorder(), min_train_sites=1)
    list(strategy.configure_train(1, _global(), ConfigRecord(), FakeGrid([11, 22, 33])))
    good = {"w": np.array([1.0, 2.0, 3.0], np.float32), "bn.num_batches_tracked": np.array(8, np.int64)}
    renamed = {"v": np.array([1.0, 2.0, 3.0], np.float32), "bn.num_batches_tracked": np.array(8, np.int64)}  # same sizes
    arrays, _ = strategy.aggregate_train(1, [_reply(11, good, {"num_examples": 10}), _reply(22, renamed, {"num_examples": 10})])
    assert arrays is not None and list(arrays.keys()) == ["w", "bn.num_batches_tracked"]  # unpacked for the caller
    (_, _, per_site, missing), = strategy.observer.trained_calls  # type: ignore[union-attr]
    assert set(per_site) == {"a"} and "do not fit this model" in missing["b"]


def test_aggregation_is_the_same_whatever_order_the_replies_arrive_in() -> None:
    """Floating-point sums depend on their order; updates are summed in site order, so every run agrees bit for bit."""
    sites = {n: NodeSite(n, name, "train", {"train": {0: 10, 1: 10}}) for n, name in ((11, "a"), (22, "b"), (44, "c"))}
    values = {11: 1e20, 22: 1.0, 44: -1e20}  # (1e20 + 1) - 1e20 == 0, but 1e20 - 1e20 + 1 == 1

    def aggregate(order: list[int]) -> np.ndarray:
        strategy = SiteFedAvg(sites, None, min_train_sites=3)
        list(strategy.configure_train(1, _global(), ConfigRecord(), FakeGrid(order)))
        replies = [_reply(n, {"w": np.full(3, values[n], np.float32), "bn.num_batches_tracked": np.array(1, np.int64)}, {"num_examples": 20}) for n in order]
        arrays, _ = strategy.aggregate_train(1, replies)
        assert arrays is not None
        return arrays["w"].numpy()

    first = aggregate([11, 22, 44])
    for order in ([44, 11, 22], [22, 44, 11], [11, 44, 22]):
        np.testing.assert_array_equal(aggregate(order), first)


def test_central_dp_takes_the_clipped_uniform_mean_and_no_update_is_an_outlier() -> None:
    from strategies.central_dp import CentralDP

    sites = {**SITES, 44: NodeSite(44, "c", "train", {"train": {0: 5, 1: 5}})}
    strategy = build_strategy("fedavg", sites, None, 2, 0.0, max_update_norm_ratio=2.0, central=CentralDP("server-clipping", 1e-9, 1.0, 1e-5, 0.0, 3))
    list(strategy.configure_train(1, _global(), ConfigRecord(), FakeGrid([11, 22, 33, 44])))
    counter = {"bn.num_batches_tracked": np.array(5, np.int64)}
    replies = [
        _reply(11, {"w": np.array([0.1, 0.0, 0.0], np.float32), **counter}, {"num_examples": 40}),
        _reply(22, {"w": np.array([0.0, 0.2, 0.0], np.float32), **counter}, {"num_examples": 20}),
        _reply(44, {"w": np.array([0.0, 0.0, 40.0], np.float32), **counter}, {"num_examples": 10}),  # 200x the others: an outlier for FedAvg
    ]
    arrays, _ = strategy.aggregate_train(1, replies)
    assert arrays is not None
    np.testing.assert_allclose(arrays["w"].numpy(), [0.1 / 3, 0.2 / 3, 1.0 / 3], atol=1e-6)  # clipped to norm 1, not weighted, not rejected
