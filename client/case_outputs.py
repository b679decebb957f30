"""What the final image model says about each of a site's cases, for the clinical jobs: its signature and its encoders' embeddings.

The signature is the model's probability for the case as a logit, clipped to [-12, 12]. A multimodal
model (``models/multimodal_task.MultimodalNet``) adds, per modality, its encoder's embedding of the
case (``encoders[m]``: for mammography the two-view ResNet-18's CC then MLO features, for radiomics
the z-scored features), NaN where the case lacks the modality. Both come from one pass of the held
model the query names over every split, kept in the site cache by model, segmenters, data
fingerprint and run config; nothing here leaves the site.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from client.errors import SiteDataError
from client.model_store import ModelStore
from client.node_site import LocalSite
from models.task import Task
from protocol.clinical import ClinicalQuery

LOGIT_CLIP = 12.0
Key = tuple[str, str]  # (case id, split)


@dataclass(frozen=True)
class CaseOutputs:
    """Every case's signature and, by modality, embedding (rows by ``index``)."""

    index: dict[Key, int]
    logits: np.ndarray
    embeddings: dict[str, np.ndarray]

    def signature(self, keys: Sequence[Key]) -> np.ndarray:
        """The cases' signatures (NaN for a case the model did not score)."""
        return np.array([self.logits[self.index[k]] if k in self.index else np.nan for k in keys], dtype=np.float64)

    def features(self, modality: str, keys: Sequence[Key]) -> np.ndarray:
        """The cases' embeddings by ``modality``'s encoder, (len(keys), dim), NaN rows where the case lacks it or was not scored."""
        table = self.embeddings[modality]
        out = np.full((len(keys), table.shape[1]), np.nan)
        for row, key in enumerate(keys):
            if key in self.index:
                out[row] = table[self.index[key]]
        return out


def _capture(into: list[np.ndarray]) -> Any:
    """A forward hook keeping an encoder's (N, dim) output, NaN in the rows it was not given (``forward(batch, rows)``)."""

    def hook(module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> None:
        x = output.detach().to("cpu", torch.float64).clone()
        x[~args[1].to("cpu").bool()] = float("nan")
        into.append(x.numpy())

    return hook


def model_outputs(model: nn.Module, loader: DataLoader, task: Task, device: torch.device) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    """A loader's case probabilities (None: the task gives none) and each modality encoder's embeddings (none without ``encoders``)."""
    from client.training import predict

    encoders: dict[str, nn.Module] = dict(getattr(model, "encoders", None) or {})
    captured: dict[str, list[np.ndarray]] = {m: [] for m in encoders}
    hooks = [encoder.register_forward_hook(_capture(captured[m])) for m, encoder in encoders.items()]
    try:
        scores = predict(model, loader, task, device).scores
    finally:
        for hook in hooks:
            hook.remove()
    dims = {m: int(getattr(e, "dim")) for m, e in encoders.items()}
    return scores, {m: np.concatenate(parts) if parts else np.zeros((0, dims[m])) for m, parts in captured.items()}


_OUTPUTS: dict[Path, CaseOutputs] = {}  # cache file -> its outputs (the key names model, crops, data and run)


def case_outputs(site: LocalSite, query: ClinicalQuery, store: ModelStore) -> CaseOutputs:
    """The held image model's signature and embeddings of every case of every split: from the site cache, else computed now."""
    if not query.signature:
        raise SiteDataError.public_fact("this clinical job uses the image model's outputs, and the message names no image model")
    from client.site import model_for, node_data  # torch only where the outputs are computed
    from client.training import resolve_device
    from client.work import segmenter_states, unpacked
    from models.task import task_for

    states, crops = segmenter_states(query, store)
    data = node_data(site, query.run, states, crops)
    key = hashlib.sha256(f"outputs|{query.signature}|{crops}|{data.fingerprint}|{query.run.to_mapping()}".encode()).hexdigest()[:24]
    path = Path(site.output_dir) / "cache" / "signature" / f"{key}.npz"
    if path in _OUTPUTS:  # this process computed them already (a site worker answers the whole stage)
        return _OUTPUTS[path]
    if path.exists():
        with np.load(path) as saved:
            keys = [(str(c), str(s)) for c, s in zip(saved["case_ids"], saved["splits"])]
            embeddings = {name.removeprefix("embedding_"): saved[name] for name in saved.files if name.startswith("embedding_")}
            _OUTPUTS[path] = CaseOutputs({k: i for i, k in enumerate(keys)}, saved["logits"], embeddings)
        return _OUTPUTS[path]
    model = model_for(query.run, unpacked(store.get(query.signature), query.run, f"held model {query.signature}"))
    task, device = task_for(query.run), resolve_device(site.config.compute.device)
    keys, logits, parts = [], [], {}
    for split, part in data.splits.items():
        if len(part) == 0:
            continue
        scores, embedded = model_outputs(model, data.loader(split, train=False), task, device)
        if scores is None:
            raise SiteDataError.public_fact(f"the image model ({query.run.task}) gives no case probability to use as a signature")
        p = np.clip(scores.astype(np.float64), 1e-12, 1 - 1e-12)
        logits.append(np.clip(np.log(p / (1 - p)), -LOGIT_CLIP, LOGIT_CLIP))
        keys += [(case.case_id, split) for case in part.cases]
        for m, table in embedded.items():
            parts.setdefault(m, []).append(table)
    out = CaseOutputs({k: i for i, k in enumerate(keys)}, np.concatenate(logits) if logits else np.zeros(0), {m: np.concatenate(t) for m, t in parts.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"embedding_{m}": table for m, table in out.embeddings.items()}
    np.savez(path, case_ids=np.array([k[0] for k in keys]), splits=np.array([k[1] for k in keys]), logits=out.logits, **arrays)
    _OUTPUTS[path] = out
    return out
