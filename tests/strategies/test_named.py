"""The named strategies (server optimisers, robust rules) with the site-aware hooks, tested with mock replies (no network)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord

from models.run_config import RunConfig, RunConfigError
from server.flower_compat import set_server_task_identity
from server.run_dir import RunDirectory
from strategies.central_dp import CentralDP
from strategies.named import NAMED, NamedStrategy, ServerStateError, SiteFedAdam, SiteFedAvgM, StrategySettings, restore_server_state
from strategies.site_aware import build_strategy
from strategies.sites import NodeSite
from tests.strategies.test_site_aware import FakeGrid, Recorder, _reply

NAMES = ("a", "b", "c", "d", "e")
SITES = {11 * (i + 1): NodeSite(11 * (i + 1), name, "train", {"train": {0: 10, 1: 10}}) for i, name in enumerate(NAMES)}
NODES = list(SITES)


@pytest.fixture(autouse=True)
def _server_identity() -> None:
    """Messages created on the server need the task identity that Flower's runtime sets."""
    set_server_task_identity()


def _model(w: list[float], counter: int = 5) -> ArrayRecord:
    return ArrayRecord({"w": Array(np.array(w, np.float32)), "bn.num_batches_tracked": Array(np.array(counter, np.int64))})


def _update(w: list[float], counter: int = 8) -> dict[str, np.ndarray]:
    return {"w": np.array(w, np.float32), "bn.num_batches_tracked": np.array(counter, np.int64)}


def _round(strategy: NamedStrategy, server_round: int, model: ArrayRecord, updates: dict[int, dict[str, np.ndarray]], cases: dict[int, int]) -> ArrayRecord:
    """Configure a round from ``model``, answer it with ``updates`` and return the aggregate."""
    list(strategy.configure_train(server_round, model, ConfigRecord(), FakeGrid(list(SITES))))
    arrays, _ = strategy.aggregate_train(server_round, [_reply(n, u, {"num_examples": cases[n]}) for n, u in updates.items()])
    assert arrays is not None
    return arrays


def _mean(values: dict[int, list[float]], cases: dict[int, int]) -> np.ndarray:
    total = sum(cases[n] for n in values)
    return sum(np.array(v, np.float64) * cases[n] / total for n, v in values.items())  # type: ignore[return-value]


class Store:
    """A ServerStateStore in memory."""

    def __init__(self) -> None:
        self.states: dict[int, ArrayRecord] = {}
        self.trained_calls: list[int] = []

    def trained(self, server_round, arrays, per_site, missing) -> None:  # noqa: ANN001
        self.trained_calls.append(server_round)

    def evaluated(self, server_round, per_site, missing) -> None:  # noqa: ANN001
        pass

    def save_server_state(self, server_round: int, state: ArrayRecord) -> None:
        self.states[server_round] = state

    def load_server_state(self, server_round: int) -> ArrayRecord | None:
        return self.states.get(server_round)


def test_fedadam_steps_as_reddi_et_al_algorithm_2_and_a_resumed_one_continues_it() -> None:
    settings = StrategySettings(server_lr=0.05, server_beta1=0.8, server_beta2=0.9, server_tau=0.01)
    store = Store()
    strategy = SiteFedAdam({n: SITES[n] for n in NODES[:2]}, store, min_train_sites=2, settings=settings)
    cases = {11: 30, 22: 10}
    rounds = [{11: [1.0, -2.0, 0.5], 22: [3.0, 2.0, 0.5]}, {11: [0.0, 1.0, -1.0], 22: [2.0, 1.0, 1.0]}]
    x = np.array([0.5, 0.0, 0.5])
    m, v = np.zeros(3), np.zeros(3)
    model = _model(list(x))
    for r, values in enumerate(rounds, start=1):
        delta = _mean(values, cases) - x
        m = 0.8 * m + 0.2 * delta
        v = 0.9 * v + 0.1 * delta**2
        eta = 0.05 * np.sqrt(1 - 0.9 ** (r + 1)) / (1 - 0.8 ** (r + 1))  # Flower's bias correction counts from round + 1
        x = (x + eta * m / (np.sqrt(v) + 0.01)).astype(np.float32)
        model = _round(strategy, r, model, {n: _update(w, counter=6 + r) for n, w in values.items()}, cases)
        np.testing.assert_allclose(model["w"].numpy(), x, rtol=1e-5)
        assert model["w"].numpy().dtype == np.float32
        assert model["bn.num_batches_tracked"].numpy().dtype == np.int64 and int(model["bn.num_batches_tracked"].numpy()) == 6 + r
    assert sorted(store.states) == [1, 2] and set(store.states[1].keys()) == {"m/w", "v/w"}  # the model's own keys, no counter
    # A run resumed after round 1: a new strategy, numbering from round 2, given round 1's state, gives round 2's model.
    resumed = SiteFedAdam({n: SITES[n] for n in NODES[:2]}, Store(), min_train_sites=2, round_offset=1, settings=settings)
    restore_server_state(resumed, store, 1)
    after_one = _round(SiteFedAdam({n: SITES[n] for n in NODES[:2]}, None, 2, settings=settings), 1, _model([0.5, 0.0, 0.5]), {n: _update(w) for n, w in rounds[0].items()}, cases)
    again = _round(resumed, 1, after_one, {n: _update(w) for n, w in rounds[1].items()}, cases)
    np.testing.assert_allclose(again["w"].numpy(), model["w"].numpy(), rtol=1e-6)
    fresh = _round(SiteFedAdam({n: SITES[n] for n in NODES[:2]}, None, 2, round_offset=1, settings=settings), 1, after_one, {n: _update(w) for n, w in rounds[1].items()}, cases)
    assert not np.allclose(fresh["w"].numpy(), model["w"].numpy(), rtol=1e-3)  # without the state, the step differs


def test_fedavgm_steps_with_server_momentum_on_the_pseudo_gradient() -> None:
    strategy = SiteFedAvgM({n: SITES[n] for n in NODES[:2]}, Store(), min_train_sites=2, settings=StrategySettings(server_lr=0.5, server_momentum=0.9))
    cases = {11: 10, 22: 30}
    x, buf = np.array([1.0, 1.0]), None
    model = _model(list(x))
    for r, values in enumerate(({11: [2.0, 0.0], 22: [0.0, 4.0]}, {11: [1.0, 1.0], 22: [3.0, -1.0]}), start=1):
        gradient = x - _mean(values, cases)
        buf = gradient if buf is None else 0.9 * buf + gradient  # PyTorch SGD's convention: the first buffer is the gradient
        x = (x - 0.5 * buf).astype(np.float32)
        model = _round(strategy, r, model, {n: _update(w) for n, w in values.items()}, cases)
        np.testing.assert_allclose(model["w"].numpy(), x, rtol=1e-6)
        assert model["bn.num_batches_tracked"].numpy().dtype == np.int64 and int(model["bn.num_batches_tracked"].numpy()) == 8


def test_the_trimmed_mean_ignores_an_outlying_site_and_the_median_is_elementwise() -> None:
    values = {11: [1.0, 5.0], 22: [2.0, 4.0], 33: [3.0, 3.0], 44: [4.0, 2.0], 55: [1000.0, -1000.0]}
    cases = {11: 10, 22: 10, 33: 10, 44: 10, 55: 500}
    updates = {n: _update(w) for n, w in values.items()}
    trimmed = build_strategy("fedtrimmedavg", SITES, None, 2, 0.0, max_update_norm_ratio=0.0, settings=StrategySettings(trim_beta=0.2))
    np.testing.assert_allclose(_round(trimmed, 1, _model([0.0, 0.0]), updates, cases)["w"].numpy(), [3.0, 3.0])  # 1 of 5 cut at each end
    rng = np.random.default_rng(0)
    random = {n: list(rng.normal(size=4)) for n in NODES[:4]}
    median = build_strategy("fedmedian", SITES, None, 2, 0.0, max_update_norm_ratio=0.0)
    got = _round(median, 1, _model([0.0] * 4), {n: _update(w) for n, w in random.items()}, cases)["w"].numpy()
    np.testing.assert_allclose(got, np.median(np.array(list(random.values()), np.float32), axis=0), rtol=1e-6)


def test_krum_selects_the_update_closest_to_the_others_whatever_their_step_counters() -> None:
    values = {11: [0.9, 1.0], 22: [1.1, 1.0], 33: [1.0, 1.0], 44: [1.0, 1.1], 55: [9.0, -7.0]}
    counters = {11: 10, 22: 10, 33: 4000, 44: 10, 55: 10}  # site c ran many more batches; counters are not parameters
    updates = {n: _update(w, counters[n]) for n, w in values.items()}
    cases = {n: 10 for n in values}
    flat = np.array(list(values.values()))
    distances = ((flat[:, None, :] - flat[None, :, :]) ** 2).sum(-1)
    scores = [np.sort(row)[1:3].sum() for row in distances]  # n - f - 2 = 2 nearest others (f = 1)
    assert int(np.argmin(scores)) == 2  # c
    krum = build_strategy("krum", SITES, None, 2, 0.0, max_update_norm_ratio=0.0, settings=StrategySettings(num_malicious_sites=1))
    np.testing.assert_allclose(_round(krum, 1, _model([0.0, 0.0]), updates, cases)["w"].numpy(), values[33])
    multi = build_strategy("multikrum", SITES, None, 2, 0.0, max_update_norm_ratio=0.0, settings=StrategySettings(num_malicious_sites=1))  # keeps n - f = 4
    got = _round(multi, 1, _model([0.0, 0.0]), updates, cases)["w"].numpy()
    np.testing.assert_allclose(got, np.mean([values[n] for n in (11, 22, 33, 44)], axis=0), rtol=1e-6)  # the outlier dropped


@pytest.mark.parametrize("name", sorted(NAMED))
def test_every_named_strategy_rejects_a_malformed_update_first_and_keeps_integer_dtypes(name: str) -> None:
    recorder = Recorder()
    strategy = build_strategy(name, SITES, recorder, 2, 0.0, settings=StrategySettings(server_momentum=0.5))
    assert isinstance(strategy, NAMED[name])
    values = {11: [1.0, 2.0], 22: [1.5, 2.5], 33: [1.2, 2.2], 44: [1.1, 2.1]}
    updates: dict[int, dict[str, np.ndarray]] = {n: _update(w, 9) for n, w in values.items()}
    updates[55] = {"w": np.array([np.nan, 1.0], np.float32), "bn.num_batches_tracked": np.array(9, np.int64)}
    model = _round(strategy, 1, _model([1.0, 2.0]), updates, {n: 10 for n in updates})
    assert list(model.keys()) == ["w", "bn.num_batches_tracked"]
    assert model["w"].numpy().dtype == np.float32 and np.isfinite(model["w"].numpy()).all()
    assert model["bn.num_batches_tracked"].numpy().dtype == np.int64 and int(model["bn.num_batches_tracked"].numpy()) == 9
    (_, _, per_site, missing), = recorder.trained_calls
    assert set(per_site) == {"a", "b", "c", "d"} and "non-finite" in missing["e"]


def test_build_strategy_refuses_central_dp_with_a_named_strategy_and_unknown_names() -> None:
    with pytest.raises(ValueError, match="central DP adds noise to a mean.*'krum'"):
        build_strategy("krum", SITES, None, 2, 0.0, central=CentralDP("server-clipping", 1.0, 1.0, 1e-5, 0.0, 5))
    with pytest.raises(ValueError, match=r"unknown strategy 'fedsgd' \(known: fedavg, fedprox, fedbn, scaffold, fedavgm"):
        build_strategy("fedsgd", SITES, None, 2, 0.0)


def test_a_server_optimisers_state_round_trips_through_the_run_directory_and_is_required_on_resume(tmp_path: Path) -> None:
    run_dir = RunDirectory(tmp_path / "run")
    strategy = build_strategy("fedyogi", SITES, run_dir, 2, 0.0)
    _round(strategy, 1, _model([0.0, 0.0]), {11: _update([1.0, 2.0]), 22: _update([3.0, 0.0])}, {11: 10, 22: 10})
    saved = run_dir.load_server_state(1)
    assert saved is not None and run_dir.last_round() == 1  # the state file is not a round checkpoint
    resumed = build_strategy("fedyogi", SITES, None, 2, 0.0, round_offset=1)
    restore_server_state(resumed, run_dir, 1)
    np.testing.assert_allclose(resumed.v_t["w"], strategy.v_t["w"])  # type: ignore[attr-defined]
    with pytest.raises(ServerStateError, match="strategy 'fedyogi' keeps server state.*round 2"):
        restore_server_state(resumed, run_dir, 2)
    restore_server_state(build_strategy("fedmedian", SITES, None, 2, 0.0), run_dir, 2)  # stateless: nothing needed
    restore_server_state(build_strategy("fedavgm", SITES, None, 2, 0.0), run_dir, 2)  # no momentum: plain server SGD


def test_run_config_names_the_strategies_and_checks_their_settings() -> None:
    assert RunConfig.from_mapping({"strategy": "multikrum", "num-malicious-sites": 1, "multikrum-keep": 3}).multikrum_keep == 3
    with pytest.raises(RunConfigError, match="'strategy' = 'fedsgd': expected one of fedavg, fedprox, fedbn, scaffold, fedavgm"):
        RunConfig.from_mapping({"strategy": "fedsgd"})
    with pytest.raises(RunConfigError, match="'central-dp' = 'server-clipping' needs strategy = fedavg or fedprox.*'fedadam'"):
        RunConfig.from_mapping({"strategy": "fedadam", "central-dp": "server-clipping"})


@pytest.mark.parametrize(
    "key, value",
    [("server-lr", -0.1), ("server-tau", 0.0), ("server-momentum", 1.0), ("server-beta1", -0.1), ("server-beta2", 1.0), ("trim-beta", 0.5),
     ("num-malicious-sites", -1), ("multikrum-keep", -2)],
)  # fmt: skip
def test_bad_strategy_settings_are_refused_by_name(key: str, value: float) -> None:
    with pytest.raises(RunConfigError, match=f"'{key}'"):
        RunConfig.from_mapping({key: value})
