"""Site-aware FedAvg and FedProx (FedBN and SCAFFOLD build on them): Flower's strategies with hooks for roles, dtypes and per-site records."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg, FedProx

from models.run_config import RunConfig
from protocol.messages import ARRAYS, CONFIG
from protocol.metrics import NUM_EXAMPLES
from protocol.packing import Layout, PackingError, layout_of, pack, unpack
from server.flower_compat import aggregate_metric_records
from strategies.central_dp import CentralDP
from strategies.sites import NodeSite, NodeSubset, TooFewSitesError, wait_for_nodes
from strategies.update_checks import check_arrays, norm_outliers, numpy_arrays, update_norm

if TYPE_CHECKING:
    from strategies.named import StrategySettings

logger = logging.getLogger("axilla.server")


AVERAGED = (NUM_EXAMPLES, "loss", "auc", "pr_auc", "brier", "accuracy", "sensitivity", "specificity", "seg_dice")
RECORD_KEYS = {"arrayrecord_key": ARRAYS, "configrecord_key": CONFIG, "weighted_by_key": NUM_EXAMPLES}  # the protocol's names


class Extras(Protocol):
    """Records added to every message of a stage (its run config, models the site must hold), per node."""

    def records_for(self, node: int) -> Mapping[str, Any]:
        """The records to add to a message for ``node``."""

    def settled(self, node: int, ok: bool) -> None:
        """``node`` answered (``ok``) or not a message that carried its records."""


class RoundObserver(Protocol):
    """Receives what happened in each round, per site (the server writes it to the run directory)."""

    def trained(self, server_round: int, arrays: ArrayRecord | None, per_site: dict[str, MetricRecord], missing: dict[str, str]) -> None:
        """A training round was aggregated; ``missing`` maps absent sites to the reason."""

    def evaluated(self, server_round: int, per_site: dict[str, MetricRecord], missing: dict[str, str]) -> None:
        """A validation round was aggregated."""


class SiteAwareMixin:
    """Hooks shared by the site-aware strategies.

    - training and per-round evaluation go to enrolled ``train`` sites only;
    - the model travels packed (``protocol.packing``): sent packed, replies unpacked against the
      global model's layout before they are checked, and the aggregate unpacked again, so
      callers (``strategy.start``, the observer) see the model's own tensors;
    - aggregated arrays keep the global model's dtypes (e.g. BatchNorm's int64 counters);
    - updates with wrong keys, shapes or dtypes, non-finite values or an outlying norm are
      rejected before aggregation and named, and the round goes on without them; then the
      strategy's own aggregation runs (``_aggregate``), then the dtypes are restored;
    - a round waits at most ``wait_timeout`` for ``min-train-sites`` training sites to be
      connected, and needs that many usable updates; otherwise ``TooFewSitesError`` stops the run;
    - per-round validation runs every ``validate_every`` rounds (0: only the final evaluation);
    - rounds are numbered from ``round_offset`` + 1, so a resumed run continues the numbering
      (and the sites' per-round seeds and learning rates) where the checkpoint left it;
    - every reply is handed to the observer under its site's name, and absent sites are named;
    - ``extras`` adds the stage's records (run config, models the site must hold) to every
      training and evaluation message, and hears which nodes answered;
    - with ``central`` (run config ``central-dp``), the aggregate is DP-FedAvg's noisy uniform
      mean of clipped updates instead of the case-weighted mean (``strategies/central_dp.py``),
      with client clipping an update above the clipping norm is rejected, and the norm-outlier
      rule is off (it would make one site's update count depend on another's);
    - FedBN and SCAFFOLD (``strategies/fedbn.py``, ``strategies/scaffold.py``) override three hooks:
      ``_reply_template`` (what reply arrays must look like), ``_reply_problem`` (another reason to
      reject a reply) and ``_completed`` (the next global model from the aggregate and the updates).
    """

    sites: dict[int, NodeSite]
    observer: RoundObserver | None
    central: CentralDP | None = None

    def _init_sites(
        self,
        sites: dict[int, NodeSite],
        observer: RoundObserver | None,
        max_update_norm_ratio: float,
        min_train_sites: int,
        wait_timeout: float,
        round_offset: int,
        validate_every: int,
        extras: Extras | None,
    ) -> None:
        self.sites = sites
        self.extras = extras
        self.validate_every = validate_every
        self.max_update_norm_ratio = max_update_norm_ratio
        self.min_train_sites = min_train_sites
        self.wait_timeout = wait_timeout
        self.round_offset = round_offset
        self.observer = observer
        self._global: ArrayRecord | None = None  # the global model sent this round
        self._template: ArrayRecord | None = None  # what a reply's arrays must look like (``_reply_template``)
        self._layout: Layout = ()
        self._grid: Grid | None = None
        self._sent: dict[str, list[int]] = {"train": [], "evaluate": []}

    def _train_view(self, grid: Grid, validation: bool = False) -> NodeSubset:
        return NodeSubset(grid, [n for n, s in self.sites.items() if (s.validates if validation else s.trains)])

    def _connected_train_sites(self, grid: Grid, needed: int, validation: bool = False) -> NodeSubset | None:
        """The training (or validation) sites' view once ``needed`` of them are connected; None after ``wait_timeout``."""
        view = self._train_view(grid, validation)
        return view if len(wait_for_nodes(view, needed, self.wait_timeout)) >= needed else None

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        """Sample only training sites, once at least ``min-train-sites`` of them are connected."""
        server_round += self.round_offset
        self._global, self._template, self._grid = arrays, self._reply_template(arrays), grid
        self._layout = layout_of(self._template)
        view = self._connected_train_sites(grid, self.min_train_sites)
        if view is None:
            online = {self._name(n) for n in self._train_view(grid).get_node_ids()}
            offline = sorted(s.name for s in self.sites.values() if s.trains and s.name not in online)
            raise TooFewSitesError(
                f"round {server_round}: {len(online)} training site(s) connected after waiting {self.wait_timeout:.0f} s, "
                f"fewer than min-train-sites={self.min_train_sites} (offline: {', '.join(offline) or 'none'})"
            )
        messages = self._attach(super().configure_train(server_round, pack(arrays), config, view))  # type: ignore[misc]
        self._sent["train"] = [m.metadata.dst_node_id for m in messages]
        return messages

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        """Per-round validation on the connected training sites, every ``validate_every`` rounds (0: never).

        External sites wait for the final model, which every site evaluates whatever this setting.
        """
        server_round += self.round_offset
        if self.validate_every < 1 or server_round % self.validate_every:
            self._sent["evaluate"] = []
            return []
        view = self._connected_train_sites(grid, 1, validation=True)
        if view is None:
            logger.warning("round %d: no validation site connected; validation skipped", server_round)
            self._sent["evaluate"] = []
            return []
        messages = self._attach(super().configure_evaluate(server_round, pack(arrays), config, view))  # type: ignore[misc]
        self._sent["evaluate"] = [m.metadata.dst_node_id for m in messages]
        return messages

    def _reply_template(self, arrays: ArrayRecord) -> ArrayRecord:
        """What a site's reply arrays must look like for the global model ``arrays`` (FedBN: without the normalisation entries)."""
        return arrays

    def _reply_problem(self, node: int) -> str | None:
        """Why a reply whose model arrays are usable still cannot be aggregated (SCAFFOLD: its control change), or None."""
        return None

    def _completed(self, arrays: ArrayRecord, updates: dict[int, ArrayRecord]) -> ArrayRecord:
        """The next global model from the checked aggregate of the replies' arrays and the accepted updates by node (FedBN, SCAFFOLD override it)."""
        return arrays

    def _attach(self, messages: Iterable[Message]) -> list[Message]:
        """Add the stage's records to each message's content."""
        out = list(messages)
        if self.extras is not None:
            for message in out:
                for name, record in self.extras.records_for(message.metadata.dst_node_id).items():
                    message.content[name] = record
        return out

    def _settle(self, sent: list[int], replies: list[Message]) -> None:
        """Tell the extras which nodes answered the messages that carried their records."""
        if self.extras is None:
            return
        ok = {r.metadata.src_node_id for r in replies if not r.has_error()}
        for node in sent:
            self.extras.settled(node, node in ok)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Reject bad updates, then FedAvg's weighted mean cast back to the global dtypes, recorded per site."""
        server_round += self.round_offset
        replies = list(replies)
        self._settle(self._sent["train"], replies)
        rejected, updates = self._reject_bad_updates(replies)
        # In site order, not arrival order: the weighted sum is then the same in every run (floating-point addition is not associative).
        accepted = sorted((r for r in replies if r.metadata.src_node_id not in rejected), key=lambda r: self._name(r.metadata.src_node_id))
        per_site, missing = self._by_site(accepted, self._sent["train"])
        for node, reason in rejected.items():
            missing[self._name(node)] = f"update rejected: {reason}"
            logger.warning("round %d: update of site %s rejected: %s", server_round, self._name(node), reason)
        if len(per_site) < self.min_train_sites:
            if self.observer is not None:
                self.observer.trained(server_round, None, per_site, missing)
            absent = "; ".join(f"{site}: {reason}" for site, reason in sorted(missing.items()))
            raise TooFewSitesError(
                f"round {server_round}: {len(per_site)} usable update(s), fewer than min-train-sites={self.min_train_sites} ({absent})"
            )
        arrays, metrics = self._aggregate(server_round, _shared_metrics_only(accepted), updates)
        if arrays is not None and self._template is not None:
            arrays = restore_dtypes(arrays, self._template)
            usable = [r.metadata.src_node_id for r in accepted if r.metadata.src_node_id in updates]  # an error reply holds no update
            if self.central is not None:
                noisy = self.central.aggregate([numpy_arrays(updates[node]) for node in usable], numpy_arrays(self._template))
                arrays = ArrayRecord({k: Array(v) for k, v in noisy.items()})
            arrays = self._completed(arrays, {node: updates[node] for node in usable})
        if self.observer is not None:
            self.observer.trained(server_round, arrays, per_site, missing)
        return arrays, metrics

    def _aggregate(
        self, server_round: int, replies: list[Message], updates: dict[int, ArrayRecord]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """The strategy's own aggregation of the accepted replies, in the model's keys (``updates``: each one unpacked).

        FedAvg's weighted mean is element-wise, so it runs on the packed arrays; the named strategies
        (``strategies/named.py``) aggregate the unpacked tensors instead.
        """
        arrays, metrics = self._flower_aggregate(server_round, replies)
        if arrays is not None and self._template is not None:
            arrays = unpack(arrays, self._layout)
        return arrays, metrics

    def _flower_aggregate(self, server_round: int, replies: list[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """The Flower strategy's own ``aggregate_train``."""
        return super().aggregate_train(server_round, replies)  # type: ignore[misc,no-any-return]

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        """Record each site's validation metrics; return the case-weighted mean of the rates (for the log)."""
        server_round += self.round_offset
        replies = list(replies)
        self._settle(self._sent["evaluate"], replies)
        per_site, missing = self._by_site(replies, self._sent["evaluate"])
        if self.observer is not None:
            self.observer.evaluated(server_round, per_site, missing)
        scalars = [
            RecordDict({"metrics": MetricRecord({k: r[k] for k in AVERAGED if k in r})})
            for r in per_site.values()
            if int(r.get(NUM_EXAMPLES, 0)) > 0
        ]
        return aggregate_metric_records(scalars, NUM_EXAMPLES) if scalars else None

    def _reject_bad_updates(self, replies: list[Message]) -> tuple[dict[int, str], dict[int, ArrayRecord]]:
        """Nodes whose arrays have wrong keys, shapes or dtypes, non-finite values, or an outlying norm; and every usable update, unpacked."""
        if self._template is None:
            return {}, {}
        rejected: dict[int, str] = {}
        updates: dict[int, ArrayRecord] = {}
        norms: dict[int, float] = {}
        for msg in replies:
            if msg.has_error():
                continue
            node = msg.metadata.src_node_id
            records = list(msg.content.array_records.values())
            reason, update = "expected exactly one ArrayRecord", None
            if len(records) == 1:
                try:
                    update = unpack(records[0], self._layout)
                    reason = check_arrays(update, self._template)
                except PackingError as err:
                    reason = str(err)
            if reason is None:
                reason = self._reply_problem(node)
            norm = update_norm(update, self._template) if reason is None and update is not None else 0.0
            if reason is None and self.central is not None:
                reason = self.central.over_norm(norm)
            if reason is None and update is not None:
                norms[node], updates[node] = norm, update
            else:
                rejected[node] = str(reason)
        # Under central DP clipping bounds every update, and rejecting by the others' norms would let one
        # site's presence change whether another's update counts (a sensitivity above C): no outlier rule.
        ratio = 0.0 if self.central is not None else self.max_update_norm_ratio
        outliers = norm_outliers({str(n): v for n, v in norms.items()}, ratio)
        rejected.update({int(n): reason for n, reason in outliers.items()})
        return rejected, {n: u for n, u in updates.items() if n not in rejected}

    def _name(self, node: int) -> str:
        """A node's site name (or its id if it never shook hands)."""
        return self.sites[node].name if node in self.sites else f"node-{node}"

    def _by_site(self, replies: list[Message], sent: list[int]) -> tuple[dict[str, MetricRecord], dict[str, str]]:
        """Valid replies' metrics by site name, and the reason each other sampled site is absent."""
        per_site: dict[str, MetricRecord] = {}
        missing: dict[str, str] = {}
        answered: set[int] = set()
        for msg in replies:
            node = msg.metadata.src_node_id
            answered.add(node)
            name = self._name(node)
            if msg.has_error():
                missing[name] = f"error: {msg.error.reason}"
            else:
                per_site[name] = next(iter(msg.content.metric_records.values()))
        connected = set(self._grid.get_node_ids()) if self._grid is not None else set(sent)
        for node in sent:
            if node not in answered:
                missing[self._name(node)] = (
                    "no reply before the round timeout" if node in connected else "no reply: the site went offline during the round"
                )
        return per_site, missing


class SiteFedAvg(SiteAwareMixin, FedAvg):
    """FedAvg over enrolled training sites, weighted by their training cases."""

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
    ) -> None:
        # Flower's own waits are satisfied by the hooks' bounded waits (min_available_nodes=1).
        FedAvg.__init__(self, min_train_nodes=min_train_sites, min_evaluate_nodes=1, min_available_nodes=1, **RECORD_KEYS)
        self._init_sites(sites, observer, max_update_norm_ratio, min_train_sites, wait_timeout, round_offset, validate_every, extras)


class SiteFedProx(SiteAwareMixin, FedProx):
    """FedProx: FedAvg on the server, ``proximal-mu`` sent to sites for the proximal term of their loss."""

    def __init__(
        self,
        sites: dict[int, NodeSite],
        observer: RoundObserver | None = None,
        min_train_sites: int = 2,
        proximal_mu: float = 0.01,
        max_update_norm_ratio: float = 10.0,
        wait_timeout: float = 3600.0,
        round_offset: int = 0,
        validate_every: int = 1,
        extras: Extras | None = None,
    ) -> None:
        FedProx.__init__(
            self, min_train_nodes=min_train_sites, min_evaluate_nodes=1, min_available_nodes=1, proximal_mu=proximal_mu, **RECORD_KEYS
        )
        self._init_sites(sites, observer, max_update_norm_ratio, min_train_sites, wait_timeout, round_offset, validate_every, extras)


def restore_dtypes(arrays: ArrayRecord, template: ArrayRecord) -> ArrayRecord:
    """Cast aggregated arrays back to the template's dtypes (integers rounded)."""
    out = ArrayRecord()
    for key, array in arrays.items():
        value = array.numpy()
        dtype = template[key].numpy().dtype if key in template else value.dtype
        if np.issubdtype(dtype, np.integer):
            value = np.rint(value)
        out[key] = Array(np.asarray(value, dtype=dtype))
    return out


def build_strategy(
    name: str,
    sites: dict[int, NodeSite],
    observer: RoundObserver | None,
    min_train_sites: int,
    proximal_mu: float,
    max_update_norm_ratio: float = 10.0,
    wait_timeout: float = 3600.0,
    round_offset: int = 0,
    validate_every: int = 1,
    extras: Extras | None = None,
    central: CentralDP | None = None,
    settings: StrategySettings | None = None,
    run: RunConfig | None = None,
) -> Any:
    """The run config's strategy by name (``settings``: the named strategies' hyper-parameters; FedBN and SCAFFOLD read the network of ``run``), with central DP when ``central`` is given."""
    strategy: Any
    if name == "fedbn":
        from strategies.fedbn import SiteFedBN

        strategy = SiteFedBN(sites, _network_keys(run)[0], observer, min_train_sites, max_update_norm_ratio, wait_timeout, round_offset, validate_every, extras)
    elif name == "scaffold":
        from strategies.scaffold import SiteScaffold

        parameters = _network_keys(run)[1]
        assert run is not None  # _network_keys refused None
        strategy = SiteScaffold(
            sites, parameters, run.scaffold_server_lr, observer, min_train_sites, max_update_norm_ratio, wait_timeout, round_offset, validate_every, extras
        )
    elif name == "fedprox":
        strategy = SiteFedProx(
            sites, observer, min_train_sites, proximal_mu, max_update_norm_ratio, wait_timeout, round_offset, validate_every, extras
        )
    elif name == "fedavg":
        strategy = SiteFedAvg(sites, observer, min_train_sites, max_update_norm_ratio, wait_timeout, round_offset, validate_every, extras)
    else:
        from strategies.named import NAMED  # it imports this module

        if name not in NAMED:
            raise ValueError(f"unknown strategy '{name}' (known: fedavg, fedprox, fedbn, scaffold, {', '.join(NAMED)})")
        if central is not None:
            raise ValueError(f"central DP adds noise to a mean of clipped updates: strategy '{name}' does not take that mean (use fedavg or fedprox)")
        return NAMED[name](sites, observer, min_train_sites, max_update_norm_ratio, wait_timeout, round_offset, validate_every, extras, settings)
    strategy.central = central
    return strategy


def _network_keys(run: RunConfig | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The run network's normalisation and float parameter keys (``models.norm_state``)."""
    if run is None:
        raise ValueError("FedBN and SCAFFOLD need the run config to know the network's normalisation and parameter entries")
    from models.norm_state import network_keys

    return network_keys(run)


def _shared_metrics_only(replies: list[Message]) -> list[Message]:
    """The replies with only the metric names all of them hold (Flower's mean needs equal keys; a DP site adds its ``dp_*`` figures).

    Each site's full metrics are recorded separately (``_by_site`` keeps the original records).
    """
    answered = [r for r in replies if not r.has_error() and r.content.metric_records]
    records = [next(iter(r.content.metric_records.items())) for r in answered]
    shared = set.intersection(*(set(record.keys()) for _, record in records)) if records else set()
    for reply, (name, record) in zip(answered, records):
        if set(record.keys()) != shared:
            reply.content[name] = MetricRecord({k: v for k, v in record.items() if k in shared})
    return replies
