"""FedBN at a site (Li et al., ICLR 2021): the model's normalisation state never leaves the site and is never overwritten by the global model.

A training site keeps its normalisation entries (``models.norm_state.norm_state_keys``: weight,
bias, running statistics and counters of BatchNorm, InstanceNorm, GroupNorm and LayerNorm) in a
``LocalState`` file, loads them over each arriving global model before training and evaluation
(the stage's first round starts from the global initial model's), and replies with the other
entries only (``shared_layout``). A site that never trained the model (an external site) has no
such state and evaluates with the global model's normalisation entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from client.local_state import LocalState
from models.norm_state import network_keys
from models.run_config import RunConfig
from protocol.messages import Instruction
from protocol.packing import Layout, layout_digest

KIND = "norm"


def _model_layout(cfg: RunConfig) -> Layout:
    from client.work import model_layout  # noqa: PLC0415 (client.work imports this module)

    return model_layout(cfg)


def shared_layout(cfg: RunConfig) -> Layout:
    """The layout of a FedBN reply: the run model's layout without its normalisation entries."""
    local = set(network_keys(cfg)[0])
    return tuple(entry for entry in _model_layout(cfg) if entry[0] not in local)


def _store(output_dir: Path, message: Instruction, model: str) -> LocalState:
    return LocalState(output_dir, message.run.run_id, model, message.stage_offset, KIND)


def with_local_norms(state: Mapping[str, torch.Tensor], output_dir: Path, message: Instruction, model: str, training: bool) -> dict[str, torch.Tensor]:
    """``state`` with this site's kept normalisation entries (none kept, or a stage's first training round: the global ones)."""
    out = dict(state)
    if training and message.server_round <= message.stage_offset + 1:
        return out
    kept = _store(output_dir, message, model).load(layout_digest(_model_layout(message.run)))
    for key, value in (kept or {}).items():
        out[key] = torch.from_numpy(value.copy())
    return out


def keep_norms(state: Mapping[str, torch.Tensor], output_dir: Path, message: Instruction, model: str) -> dict[str, Any]:
    """Keep the trained model's normalisation entries at the site; return the entries that may leave it."""
    local = network_keys(message.run)[0]
    _store(output_dir, message, model).save({k: state[k].detach().cpu().numpy() for k in local}, layout_digest(_model_layout(message.run)))
    return {k: v for k, v in state.items() if k not in set(local)}
