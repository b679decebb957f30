"""Update checks before aggregation: bad updates are rejected, named, and the round goes on."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord
from server.flower_compat import set_server_task_identity

from strategies.site_aware import SiteFedAvg
from strategies.sites import NodeSite
from strategies.update_checks import check_arrays, norm_outliers, update_norm
from tests.strategies.test_site_aware import SITES, FakeGrid, Recorder, _global, _reply


@pytest.fixture(autouse=True)
def _server_identity() -> None:
    set_server_task_identity()


def _arrays(w: list[float], counter: int = 5, dtype: type = np.float32) -> dict[str, np.ndarray]:
    return {"w": np.array(w, dtype=dtype), "bn.num_batches_tracked": np.array(counter, np.int64)}


def test_check_arrays_names_each_problem() -> None:
    template = _global()
    good = ArrayRecord({k: Array(v) for k, v in _arrays([1, 2, 3]).items()})
    assert check_arrays(good, template) is None
    cases = {
        "non-finite": _arrays([1, float("nan"), 3]),
        "shape": {"w": np.zeros(4, np.float32), "bn.num_batches_tracked": np.array(1, np.int64)},
        "dtype": _arrays([1, 2, 3], dtype=np.float64),
        "wrong keys": {"w": np.zeros(3, np.float32)},
    }
    for expected, arrays in cases.items():
        reason = check_arrays(ArrayRecord({k: Array(v) for k, v in arrays.items()}), template)
        assert reason is not None and expected in reason, (expected, reason)


def test_norms_and_outliers() -> None:
    template = _global()
    update = ArrayRecord({k: Array(v) for k, v in _arrays([3, 4, 0], counter=99).items()})
    assert update_norm(update, template) == pytest.approx(5.0)  # integer buffers do not count
    assert set(norm_outliers({"a": 1.0, "b": 1.2, "c": 50.0}, 10.0)) == {"c"}
    assert norm_outliers({"a": 1.0, "b": 1.2, "c": 50.0}, 0.0) == {}
    assert norm_outliers({"a": 1.0}, 10.0) == {}


def test_nan_update_is_rejected_named_and_the_round_continues() -> None:
    recorder = Recorder()
    strategy = SiteFedAvg(SITES, recorder, min_train_sites=1)
    list(strategy.configure_train(1, _global(), ConfigRecord(), FakeGrid([11, 22, 33])))
    replies = [
        _reply(11, _arrays([1, 2, 3]), {"num_examples": 40}),
        _reply(22, _arrays([float("nan"), 0, 0]), {"num_examples": 20}),
    ]
    arrays, _ = strategy.aggregate_train(1, replies)
    assert arrays is not None and np.allclose(arrays["w"].numpy(), [1, 2, 3])  # only site a aggregated
    (_, _, per_site, missing), = recorder.trained_calls
    assert set(per_site) == {"a"}
    assert missing["b"].startswith("update rejected:") and "non-finite" in missing["b"]


def test_outlying_update_is_rejected_with_three_sites() -> None:
    sites = dict(SITES)
    sites[44] = NodeSite(44, "d", "train", {"train": {0: 5, 1: 5}})
    recorder = Recorder()
    strategy = SiteFedAvg(sites, recorder, min_train_sites=1, max_update_norm_ratio=10.0)
    list(strategy.configure_train(1, _global(), ConfigRecord(), FakeGrid([11, 22, 33, 44])))
    replies = [
        _reply(11, _arrays([1, 0, 0]), {"num_examples": 10}),
        _reply(22, _arrays([0, 1.5, 0]), {"num_examples": 10}),
        _reply(44, _arrays([500, 0, 0]), {"num_examples": 10}),
    ]
    arrays, _ = strategy.aggregate_train(1, replies)
    assert arrays is not None and np.allclose(arrays["w"].numpy(), [0.5, 0.75, 0])
    assert "update norm" in recorder.trained_calls[0][3]["d"]
