"""The named strategies beyond FedAvg and FedProx: server optimisers and robust aggregators, with the site-aware hooks.

Each is ``Site<Name>(NamedStrategy, <Flower strategy>)``: the mixin rejects bad updates first, the
Flower strategy then aggregates, and the aggregate is cast back to the model's dtypes. Unlike
FedAvg (element-wise, so it runs on the packed arrays), these aggregate the model's own
floating-point tensors, unpacked: a server optimiser's state (FedAvgM's momentum, FedOpt's m and
v) is kept per tensor name, and Krum's distances are not swamped by BatchNorm's step counters.
Integer tensors (``num_batches_tracked``) never pass through an optimiser or a robust rule: they
take the case-weighted mean of the accepted updates, as under FedAvg.

The server optimisers keep their state between rounds; it is saved with each round's checkpoint
(``RunDirectory.save_server_state``) and restored on resume (``restore_server_state``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAdagrad, FedAdam, FedAvgM, FedMedian, FedTrimmedAvg, FedYogi, Krum, MultiKrum

from models.run_config import RunConfig
from protocol.metrics import NUM_EXAMPLES
from strategies.site_aware import RECORD_KEYS, Extras, RoundObserver, SiteAwareMixin
from strategies.sites import NodeSite
from strategies.update_checks import float_keys, numpy_arrays


class ServerStateError(ValueError):
    """A server optimiser's state cannot be restored for a resumed run."""


@dataclass(frozen=True)
class StrategySettings:
    """The named strategies' hyper-parameters (run config keys ``server-lr`` ... ``multikrum-keep``)."""

    server_lr: float = 0.0  # 0: Flower's default for the strategy (DEFAULT_SERVER_LR)
    server_momentum: float = 0.0
    server_beta1: float = 0.9
    server_beta2: float = 0.99
    server_tau: float = 1e-3
    trim_beta: float = 0.2
    num_malicious_sites: int = 0
    multikrum_keep: int = 0  # 0: all but num_malicious_sites of the round's usable updates

    @classmethod
    def of(cls, cfg: RunConfig) -> StrategySettings:
        """The run config's settings."""
        return cls(
            cfg.server_lr, cfg.server_momentum, cfg.server_beta1, cfg.server_beta2, cfg.server_tau,
            cfg.trim_beta, cfg.num_malicious_sites, cfg.multikrum_keep,
        )  # fmt: skip

    def lr(self, strategy: str) -> float:
        """The server learning rate of ``strategy``: the setting, or Flower's default when it is 0."""
        return self.server_lr or DEFAULT_SERVER_LR[strategy]


DEFAULT_SERVER_LR = {"fedavgm": 1.0, "fedadam": 0.1, "fedyogi": 0.01, "fedadagrad": 0.1}  # Flower's defaults


@runtime_checkable
class ServerStateStore(Protocol):
    """Where a server optimiser's state is kept with each round's checkpoint (the run directory)."""

    def save_server_state(self, server_round: int, state: ArrayRecord) -> None:
        """Keep the state reached after ``server_round``."""

    def load_server_state(self, server_round: int) -> ArrayRecord | None:
        """The state reached after ``server_round`` (None if none was kept)."""


def case_weighted_mean(updates: Sequence[tuple[Mapping[str, np.ndarray], float]], keys: Iterable[str]) -> dict[str, np.ndarray]:
    """The mean of ``keys`` over the updates, each weighted by its number of cases."""
    total = sum(weight for _, weight in updates)
    return {key: sum((u[key].astype(np.float64) * (w / total) for u, w in updates), np.zeros(())) for key in keys}


class NamedStrategy(SiteAwareMixin):
    """Site-aware hooks for a Flower strategy that aggregates the unpacked floating-point tensors."""

    name: ClassVar[str]

    def __init__(
        self,
        sites: dict[int, NodeSite],
        observer: RoundObserver | None = None,
        min_train_sites: int = 2,
        max_update_norm_ratio: float = 10.0,
        wait_timeout: float = 3600.0,
        round_offset: int = 0,
        validate_every: int = 1,
        extras: Extras | None = None,
        settings: StrategySettings | None = None,
    ) -> None:
        self.settings = settings or StrategySettings()
        # Flower's own waits are satisfied by the hooks' bounded waits (min_available_nodes=1).
        self._init_flower(self.settings, min_train_nodes=min_train_sites, min_evaluate_nodes=1, min_available_nodes=1, **RECORD_KEYS)
        self._init_sites(sites, observer, max_update_norm_ratio, min_train_sites, wait_timeout, round_offset, validate_every, extras)

    def _init_flower(self, settings: StrategySettings, **common: Any) -> None:
        """Initialise the Flower strategy with its hyper-parameters."""
        raise NotImplementedError

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        """The mixin's training messages; the round's global model (its float tensors) is where the server step starts."""
        messages = super().configure_train(server_round, arrays, config, grid)
        self._start_from({k: v for k, v in numpy_arrays(arrays).items() if np.issubdtype(v.dtype, np.floating)})
        return messages

    def _start_from(self, current: dict[str, np.ndarray]) -> None:
        """Set the server optimiser's current model (nothing for stateless rules)."""

    def _aggregate(
        self, server_round: int, replies: list[Message], updates: dict[int, ArrayRecord]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Flower's aggregation of the unpacked float tensors; integer tensors take the case-weighted mean; the server state is saved."""
        if self._template is None:
            return self._flower_aggregate(server_round, replies)
        template = numpy_arrays(self._template)
        floats = float_keys(template)
        used: list[tuple[dict[str, np.ndarray], float]] = []
        for reply in replies:
            node = reply.metadata.src_node_id
            if reply.has_error() or node not in updates:
                continue
            arrays = numpy_arrays(updates[node])
            reply.content[next(iter(reply.content.array_records))] = ArrayRecord({k: Array(arrays[k]) for k in floats})
            used.append((arrays, float(next(iter(reply.content.metric_records.values()))[NUM_EXAMPLES])))  # type: ignore[arg-type]
        self._before_flower(len(used))
        aggregated, metrics = self._flower_aggregate(server_round, replies)
        if aggregated is None:
            return None, metrics
        others = case_weighted_mean(used, [k for k in template if k not in floats]) if used else {}
        out = ArrayRecord({k: aggregated[k] if k in floats else Array(np.asarray(others[k])) for k in template})
        state = self.server_state()
        if state and isinstance(self.observer, ServerStateStore):
            self.observer.save_server_state(server_round, state)
        return out, metrics

    def _before_flower(self, usable: int) -> None:
        """Adjust the Flower strategy to the round's ``usable`` updates (MultiKrum's keep count)."""

    def server_state(self) -> ArrayRecord:
        """The optimiser state carried between rounds, by ``<part>/<tensor>`` (empty for stateless rules)."""
        return ArrayRecord()

    def load_server_state(self, state: ArrayRecord) -> None:
        """Continue from a saved ``server_state``."""

    def keeps_server_state(self) -> bool:
        """Whether the strategy carries state between rounds that a resumed run must restore (server optimisers; plain FedAvgM has none)."""
        if isinstance(self, FedAvgM):
            return bool(self.server_momentum)
        return isinstance(self, (FedAdam, FedYogi, FedAdagrad))


class SiteFedAvgM(NamedStrategy, FedAvgM):
    """FedAvgM (Hsu et al., 2019): server SGD with momentum on the case-weighted mean's pseudo-gradient."""

    name = "fedavgm"

    def _init_flower(self, settings: StrategySettings, **common: Any) -> None:
        FedAvgM.__init__(self, server_learning_rate=settings.lr(self.name), server_momentum=settings.server_momentum, **common)

    def _start_from(self, current: dict[str, np.ndarray]) -> None:
        self.current_arrays = ArrayRecord({k: Array(v) for k, v in current.items()})

    def server_state(self) -> ArrayRecord:
        if self.momentum_vector is None or self.current_arrays is None:
            return ArrayRecord()
        return ArrayRecord({f"momentum/{k}": Array(np.asarray(v)) for k, v in zip(self.current_arrays.keys(), self.momentum_vector, strict=True)})

    def load_server_state(self, state: ArrayRecord) -> None:
        vectors = {k.split("/", 1)[1]: v.numpy() for k, v in state.items() if k.startswith("momentum/")}
        self.momentum_vector = list(vectors.values()) or None


class _FedOptState(NamedStrategy):
    """FedOpt's state: the current model, first (m) and second (v) moments per tensor."""

    current_arrays: dict[str, np.ndarray] | None
    m_t: dict[str, np.ndarray] | None
    v_t: dict[str, np.ndarray] | None

    def _start_from(self, current: dict[str, np.ndarray]) -> None:
        self.current_arrays = current

    def server_state(self) -> ArrayRecord:
        parts = {"m": self.m_t or {}, "v": self.v_t or {}}
        return ArrayRecord({f"{part}/{k}": Array(np.asarray(v)) for part, values in parts.items() for k, v in values.items()})

    def load_server_state(self, state: ArrayRecord) -> None:
        for part in ("m", "v"):
            values = {k.split("/", 1)[1]: v.numpy() for k, v in state.items() if k.startswith(f"{part}/")}
            setattr(self, f"{part}_t", values or None)


class SiteFedAdam(_FedOptState, FedAdam):
    """FedAdam (Reddi et al., 2021): Adam on the server, the case-weighted mean's change as its gradient."""

    name = "fedadam"

    def _init_flower(self, settings: StrategySettings, **common: Any) -> None:
        s = settings
        FedAdam.__init__(self, eta=s.lr(self.name), beta_1=s.server_beta1, beta_2=s.server_beta2, tau=s.server_tau, **common)


class SiteFedYogi(_FedOptState, FedYogi):
    """FedYogi (Reddi et al., 2021): Yogi's additive second-moment update on the server."""

    name = "fedyogi"

    def _init_flower(self, settings: StrategySettings, **common: Any) -> None:
        s = settings
        FedYogi.__init__(self, eta=s.lr(self.name), beta_1=s.server_beta1, beta_2=s.server_beta2, tau=s.server_tau, **common)


class SiteFedAdagrad(_FedOptState, FedAdagrad):
    """FedAdagrad (Reddi et al., 2021): Adagrad on the server (no first-moment decay)."""

    name = "fedadagrad"

    def _init_flower(self, settings: StrategySettings, **common: Any) -> None:
        FedAdagrad.__init__(self, eta=settings.lr(self.name), tau=settings.server_tau, **common)


class SiteFedMedian(NamedStrategy, FedMedian):
    """Coordinate-wise median of the updates (Yin et al., 2018); cases do not weigh."""

    name = "fedmedian"

    def _init_flower(self, settings: StrategySettings, **common: Any) -> None:
        FedMedian.__init__(self, **common)


class SiteFedTrimmedAvg(NamedStrategy, FedTrimmedAvg):
    """Coordinate-wise mean after cutting the ``trim-beta`` fraction of highest and of lowest values; cases do not weigh."""

    name = "fedtrimmedavg"

    def _init_flower(self, settings: StrategySettings, **common: Any) -> None:
        FedTrimmedAvg.__init__(self, beta=settings.trim_beta, **common)


class SiteMultiKrum(NamedStrategy, MultiKrum):
    """Multi-Krum (Blanchard et al., 2017): the case-weighted mean of the ``multikrum-keep`` updates closest to their neighbours."""

    name = "multikrum"

    def _init_flower(self, settings: StrategySettings, **common: Any) -> None:
        MultiKrum.__init__(self, num_malicious_nodes=settings.num_malicious_sites, num_nodes_to_select=max(1, settings.multikrum_keep), **common)

    def _before_flower(self, usable: int) -> None:
        self.num_nodes_to_select = self.settings.multikrum_keep or max(1, usable - self.settings.num_malicious_sites)


class SiteKrum(NamedStrategy, Krum):
    """Krum (Blanchard et al., 2017): the one update with the smallest summed distance to its n - f - 2 nearest others."""

    name = "krum"

    def _init_flower(self, settings: StrategySettings, **common: Any) -> None:
        Krum.__init__(self, num_malicious_nodes=settings.num_malicious_sites, **common)


NAMED: dict[str, type[NamedStrategy]] = {
    cls.name: cls for cls in (SiteFedAvgM, SiteFedAdam, SiteFedYogi, SiteFedAdagrad, SiteFedMedian, SiteFedTrimmedAvg, SiteKrum, SiteMultiKrum)
}


def restore_server_state(strategy: Any, store: ServerStateStore, server_round: int) -> None:
    """Give a resumed ``strategy`` the server state saved after ``server_round`` (strategies that keep none need none)."""
    keeps = getattr(strategy, "keeps_server_state", None)
    if not callable(keeps) or not keeps():
        return
    state = store.load_server_state(server_round)
    if state is None:
        raise ServerStateError(
            f"strategy '{strategy.name}' keeps server state between rounds, and none was saved with round {server_round}'s "
            "checkpoint (a run from before it was kept?): resuming would restart it; start the run again instead"
        )
    strategy.load_server_state(state)
