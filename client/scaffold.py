"""SCAFFOLD at a site (Karimireddy et al., ICML 2020, Algorithm 1, option II).

Each local step of plain SGD follows the corrected gradient g(y) - c_i + c, where c is the server's
control variate (the message's ``control`` record) and c_i the site's own. After K steps at learning
rate lr from the global model x to y_i the site sets c_i+ = c_i - c + (x - y_i) / (K lr), keeps it,
and returns y_i with the change c_i+ - c_i. Control variates cover the network's float parameters
only (``models.norm_state.parameter_keys``), never buffers such as BatchNorm's running statistics.
c_i lives in a ``LocalState`` file (per run, model and stage, with the parameter layout's digest):
a stage's first round, or a file kept for another layout (warned), starts from zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, RecordDict

from client.local_state import LocalState
from models.norm_state import network_keys
from models.run_config import RunConfig
from protocol.messages import CONTROL, ProtocolError, Train
from protocol.packing import Layout, PackingError, layout_digest, pack, unpack

KIND = "control"
Arrays = dict[str, np.ndarray]


def control_layout(cfg: RunConfig) -> Layout:
    """The layout of a control variate: the run model's layout restricted to its float parameters."""
    from client.work import model_layout  # noqa: PLC0415 (client.work imports this module)

    params = set(network_keys(cfg)[1])
    return tuple(entry for entry in model_layout(cfg) if entry[0] in params)


def control_update(c_i: Mapping[str, np.ndarray], c: Mapping[str, np.ndarray], x: Mapping[str, np.ndarray], y: Mapping[str, np.ndarray], steps: int, lr: float) -> Arrays:
    """Option II: c_i+ = c_i - c + (x - y) / (K lr), per parameter, in float64."""
    return {k: c_i[k] - c[k] + (np.asarray(x[k], np.float64) - np.asarray(y[k], np.float64)) / (steps * lr) for k in c_i}


@dataclass
class SiteControl:
    """The control variates of one training message: the server's c, the site's c_i, and where c_i is kept."""

    layout: Layout
    c: Arrays
    c_i: Arrays
    store: LocalState

    @classmethod
    def of(cls, output_dir: Path, message: Train, content: RecordDict) -> SiteControl:
        """c from the message (``ProtocolError`` if it has none that fits the model) and c_i from the site's file (or zero)."""
        layout = control_layout(message.run)
        if CONTROL not in content.array_records:
            raise ProtocolError(f"a SCAFFOLD training message must carry the '{CONTROL}' record")
        try:
            c = {k: v.numpy().astype(np.float64) for k, v in unpack(content.array_records[CONTROL], layout).items()}
        except PackingError as err:
            raise ProtocolError(f"the '{CONTROL}' record: {err}") from None
        store = LocalState(output_dir, message.run.run_id, message.model, message.stage_offset, KIND)
        kept = store.load(layout_digest(layout)) if message.server_round > message.stage_offset + 1 else None
        c_i = kept if kept is not None else {k: np.zeros_like(v) for k, v in c.items()}
        return cls(layout, c, c_i, store)

    def correction(self) -> dict[str, torch.Tensor]:
        """What each local step adds to a parameter's gradient: c - c_i."""
        return {k: torch.from_numpy(self.c[k] - self.c_i[k]) for k in self.c}

    def update(self, x: Mapping[str, torch.Tensor], y: Mapping[str, torch.Tensor], steps: int, lr: float) -> ArrayRecord:
        """Keep c_i+ (option II) at the site; return the change c_i+ - c_i, packed as the message's control variate."""
        new = control_update(self.c_i, self.c, {k: x[k].numpy() for k in self.c}, {k: y[k].detach().cpu().numpy() for k in self.c}, steps, lr)
        self.store.save(new, layout_digest(self.layout))
        dtypes = {name: dtype for name, dtype, _ in self.layout}
        return pack(ArrayRecord({k: Array((new[k] - self.c_i[k]).astype(dtypes[k])) for k in self.c}))
