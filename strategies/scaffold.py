"""SCAFFOLD (Karimireddy et al., ICML 2020, Algorithm 1, option II) on the server: the global model x and control variate c."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid

from protocol.messages import CONTROL
from protocol.packing import PackingError, layout_of, pack, unpack
from strategies.named import ServerStateStore
from strategies.site_aware import SiteFedAvg, restore_dtypes
from strategies.sites import NodeSite
from strategies.update_checks import check_arrays, numpy_arrays

Arrays = dict[str, np.ndarray]


def scaffold_step(
    x: Mapping[str, np.ndarray], c: Mapping[str, np.ndarray], ys: list[Mapping[str, np.ndarray]], dcs: list[Mapping[str, np.ndarray]],
    server_lr: float, n_sites: int,
) -> tuple[Arrays, Arrays]:
    """x + eta_g mean(y_i - x) on the parameters (those of ``c``; other entries, such as running statistics, take the mean of y_i), and c + |S|/N mean(dc_i), in float64."""
    new_x: Arrays = {}
    for key, value in x.items():
        step = np.mean([np.asarray(y[key], np.float64) - np.asarray(value, np.float64) for y in ys], axis=0)
        new_x[key] = np.asarray(np.asarray(value, np.float64) + (server_lr if key in c else 1.0) * step)  # 0-d entries stay arrays
    new_c = {key: np.asarray(value + len(dcs) / n_sites * np.mean([np.asarray(d[key], np.float64) for d in dcs], axis=0)) for key, value in c.items()}
    return new_x, new_c


class SiteScaffold(SiteFedAvg):
    """SCAFFOLD over the enrolled training sites.

    Each training message carries c (record ``control``, packed over the network's float
    parameters); each reply returns y_i (``arrays``) and the site's change of c_i (``control``),
    checked like the model. x moves by ``server_lr`` times the uniform mean of the accepted
    y_i - x, and c by |S|/N times the mean of their control changes (N: the enrolled training
    sites). c starts at zero with each stage; it is saved with every round's checkpoint
    (``round-XXX-server.pt``) and restored when the run resumes.
    """

    name = "scaffold"

    def __init__(self, sites: dict[int, NodeSite], control_keys: tuple[str, ...], server_lr: float, *args: Any, **kwargs: Any) -> None:
        """``control_keys``: the network's float parameters (``models.norm_state.parameter_keys``); the rest as ``SiteFedAvg``."""
        super().__init__(sites, *args, **kwargs)
        self.control_keys, self.server_lr = frozenset(control_keys), server_lr
        self.control: Arrays = {}
        self._changes: dict[int, Arrays | str] = {}
        self._round = 0  # the round being aggregated, numbered as the checkpoints are

    def keeps_server_state(self) -> bool:
        """c is carried between rounds: a resumed run restores it."""
        return True

    def server_state(self) -> ArrayRecord:
        """c by ``control/<parameter>``."""
        return ArrayRecord({f"control/{k}": Array(np.asarray(v)) for k, v in self.control.items()})

    def load_server_state(self, state: ArrayRecord) -> None:
        """Continue from a saved c."""
        self.control = {k.split("/", 1)[1]: v.numpy().astype(np.float64) for k, v in state.items() if k.startswith("control/")}

    def _control_template(self) -> ArrayRecord:
        assert self._global is not None
        return ArrayRecord({k: v for k, v in self._global.items() if k in self.control_keys})

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        """FedAvg's training messages, each with c."""
        messages = list(super().configure_train(server_round, arrays, config, grid))
        template = self._control_template()
        if list(self.control) != list(template.keys()) or any(self.control[k].shape != v.shape for k, v in template.items()):
            self.control = {k: np.zeros(v.shape, np.float64) for k, v in template.items()}
        packed = pack(ArrayRecord({k: Array(self.control[k].astype(v.numpy().dtype)) for k, v in template.items()}))
        for message in messages:
            message.content[CONTROL] = packed
        return messages

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Take each reply's control change out (Flower's checks want one ArrayRecord), then aggregate as SCAFFOLD."""
        replies = list(replies)
        self._round = self.round_offset + server_round
        template = self._control_template()
        layout = layout_of(template)
        self._changes = {}
        for reply in replies:
            if reply.has_error():
                continue
            node = reply.metadata.src_node_id
            if CONTROL not in reply.content.array_records:
                self._changes[node] = f"no '{CONTROL}' record (SCAFFOLD's control change)"
                continue
            record = reply.content.array_records[CONTROL]
            del reply.content[CONTROL]
            try:
                change = unpack(record, layout)
                self._changes[node] = check_arrays(change, template) or numpy_arrays(change)
            except PackingError as err:
                self._changes[node] = f"control change: {err}"
        return super().aggregate_train(server_round, replies)

    def _reply_problem(self, node: int) -> str | None:
        change = self._changes.get(node, "no control change")
        return f"control change: {change}" if isinstance(change, str) else None

    def _completed(self, arrays: ArrayRecord, updates: dict[int, ArrayRecord]) -> ArrayRecord:
        """x and c moved by the accepted updates (the weighted mean in ``arrays`` is replaced)."""
        assert self._global is not None
        changes = [change for change in (self._changes[node] for node in updates) if not isinstance(change, str)]  # accepted: all usable
        n_sites = sum(site.trains for site in self.sites.values()) or len(updates)
        x, self.control = scaffold_step(numpy_arrays(self._global), self.control, [numpy_arrays(u) for u in updates.values()], changes, self.server_lr, n_sites)
        if isinstance(self.observer, ServerStateStore):
            self.observer.save_server_state(self._round, self.server_state())  # before the observer writes the round's checkpoint
        return restore_dtypes(ArrayRecord({k: Array(v) for k, v in x.items()}), self._global)
