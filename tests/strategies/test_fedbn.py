"""FedBN on the server: shared entries averaged, the global normalisation entries never changed; mock replies, no network."""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord

from protocol.packing import layout_of, packed_keys
from strategies.fedbn import SiteFedBN
from strategies.site_aware import build_strategy
from models.run_config import RunConfig
from models.norm_state import network_keys
from tests.strategies.test_site_aware import SITES, FakeGrid, Recorder, _reply, _server_identity  # noqa: F401 (the autouse fixture)

LOCAL = ("bn.weight", "bn.running_var", "bn.num_batches_tracked")


def _global() -> ArrayRecord:
    return ArrayRecord({
        "conv.weight": Array(np.zeros(3, np.float32)),
        "bn.weight": Array(np.array([0.5, 1.5], np.float32)),
        "bn.running_var": Array(np.array([2.0, 3.0], np.float32)),
        "bn.num_batches_tracked": Array(np.array(7, np.int64)),
        "fc.bias": Array(np.ones(2, np.float32)),
    })  # fmt: skip


def _shared(value: float) -> dict[str, np.ndarray]:
    return {"conv.weight": np.full(3, value, np.float32), "fc.bias": np.full(2, value, np.float32)}


def test_sites_get_the_whole_model_and_their_replies_must_omit_the_normalisation_entries() -> None:
    strategy = SiteFedBN(SITES, LOCAL, Recorder(), min_train_sites=1)
    messages = list(strategy.configure_train(1, _global(), ConfigRecord(), FakeGrid([11, 22, 33])))
    assert all(list(m.content["arrays"].keys()) == list(packed_keys(layout_of(_global()))) for m in messages)
    full = {k: np.asarray(v.numpy() + 1) for k, v in _global().items()}  # a reply that carries normalisation entries
    arrays, _ = strategy.aggregate_train(1, [_reply(11, _shared(2.0), {"num_examples": 10}), _reply(22, full, {"num_examples": 10})])
    assert arrays is not None
    (_, _, per_site, missing), = strategy.observer.trained_calls  # type: ignore[union-attr]
    assert set(per_site) == {"a"} and "do not fit this model" in missing["b"]


def test_a_round_averages_the_shared_entries_and_leaves_the_global_normalisation_bit_identical() -> None:
    strategy = SiteFedBN(SITES, LOCAL, Recorder(), min_train_sites=2)
    before = _global()
    list(strategy.configure_train(1, before, ConfigRecord(), FakeGrid([11, 22, 33])))
    replies = [_reply(11, _shared(1.0), {"num_examples": 30}), _reply(22, _shared(3.0), {"num_examples": 10})]
    arrays, _ = strategy.aggregate_train(1, replies)
    assert arrays is not None and list(arrays.keys()) == list(before.keys())
    np.testing.assert_allclose(arrays["conv.weight"].numpy(), 1.5)  # (30*1 + 10*3) / 40
    np.testing.assert_allclose(arrays["fc.bias"].numpy(), 1.5)
    for key in LOCAL:
        assert arrays[key].numpy().dtype == before[key].numpy().dtype
        assert arrays[key].numpy().tobytes() == before[key].numpy().tobytes()


def test_build_strategy_reads_the_normalisation_entries_from_the_run_network() -> None:
    run = RunConfig(strategy="fedbn")
    strategy = build_strategy("fedbn", SITES, None, 2, 0.0, run=run)
    assert isinstance(strategy, SiteFedBN)
    assert strategy.local_keys == frozenset(network_keys(run)[0]) and "bn1.running_mean" in strategy.local_keys
