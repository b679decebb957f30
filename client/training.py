"""Local training and prediction loops shared by the ClientApp and the baselines."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from models.task import Task


@dataclass(frozen=True)
class TrainStats:
    """What one local training call reports (scalars only)."""

    num_examples: int
    loss: float
    steps: int


def make_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float, momentum: float = 0.9) -> torch.optim.Optimizer:
    """Adam (seed studies' default) or SGD with ``momentum`` (SCAFFOLD: 0, the plain steps its control variates assume)."""
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)


def proximal_term(model: nn.Module, anchor: list[torch.Tensor]) -> torch.Tensor:
    """FedProx's ||w - w_global||^2 over the trainable parameters."""
    return sum(((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor))  # type: ignore[return-value]


def train_epochs(
    model: nn.Module,
    loader: DataLoader,
    task: Task,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    device: torch.device,
    proximal_mu: float = 0.0,
    desc: str = "train",
    anchor: list[torch.Tensor] | None = None,
    correction: Mapping[str, torch.Tensor] | None = None,
) -> TrainStats:
    """Train for ``epochs`` passes; with ``proximal_mu`` > 0 add FedProx's (mu/2)||w - w0||^2.

    ``w0`` is ``anchor`` (one tensor per trainable parameter; Ditto's global model), else the model
    as it arrives (the global model). ``correction`` (by parameter name) is added to each
    parameter's gradient before every step (SCAFFOLD's c - c_i); a parameter without a gradient
    (frozen or unused) is left alone. One progress bar per epoch.
    """
    model.to(device).train()
    shifts = [(p, correction[n].to(device, p.dtype)) for n, p in model.named_parameters() if n in correction] if correction else []
    loss_fn = task.loss()
    if proximal_mu > 0:
        anchor = [a.detach().to(device) for a in anchor] if anchor is not None else [p.detach().clone() for p in model.parameters()]
    total, count, steps = 0.0, 0, 0
    for epoch in range(epochs):
        bar = tqdm(loader, desc=f"{desc} epoch {epoch + 1}/{epochs}", leave=False, disable=not sys.stderr.isatty())
        for batch in bar:
            batch = {k: v.to(device) for k, v in batch.items()}
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(task.network_input(batch)), task.targets(batch))
            if proximal_mu > 0:
                loss = loss + proximal_mu / 2 * proximal_term(model, anchor)
            loss.backward()
            for param, shift in shifts:
                if param.grad is not None:
                    param.grad.add_(shift)
            optimizer.step()
            total += float(loss.detach()) * len(batch["label"])
            count += len(batch["label"])
            steps += 1
            bar.set_postfix(loss=f"{total / max(count, 1):.4f}")
    return TrainStats(num_examples=len(loader.dataset), loss=total / max(count, 1), steps=steps)  # type: ignore[arg-type]


@dataclass
class Prediction:
    """A model's outputs over one loader, in case order (stays at the site)."""

    labels: np.ndarray  # (N,) int64
    loss: float
    scores: np.ndarray | None = None  # (N,) probabilities, tasks with scores
    masks: torch.Tensor | None = None  # (N, 1, S, S) predicted binary masks, tasks with masks
    truth: torch.Tensor | None = None  # (N, 1, S, S) ground-truth masks
    has_mask: np.ndarray | None = None  # (N,) whether the case has a ground-truth mask


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, task: Task, device: torch.device) -> Prediction:
    """Run a model over a loader (evaluation mode, no augmentation): scores, masks and mean loss.

    The loss covers the cases it can: for tasks that need masks, those with a ground-truth mask.
    """
    model.to(device).eval()
    loss_fn = task.loss()
    labels, scores, masks, truth, has_mask = [], [], [], [], []
    total, counted = 0.0, 0
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        out = model(task.network_input(batch))
        usable = batch["has_mask"].bool() if task.needs_masks else torch.ones_like(batch["label"], dtype=torch.bool)
        if bool(usable.any()):
            kept = {k: v[usable] for k, v in batch.items()}
            total += float(loss_fn(_rows(out, usable), task.targets(kept))) * int(usable.sum())
            counted += int(usable.sum())
        labels.append(batch["label"].cpu().numpy())
        case_scores, mask_logits = task.scores(out), task.mask_logits(out)
        if case_scores is not None:
            scores.append(case_scores.cpu().numpy())
        if mask_logits is not None:
            masks.append((mask_logits > 0).to(torch.uint8).cpu())
            truth.append(batch["mask"].to(torch.uint8).cpu())
            has_mask.append(batch["has_mask"].bool().cpu().numpy())
    return Prediction(
        labels=np.concatenate(labels).astype(np.int64) if labels else np.zeros(0, dtype=np.int64),
        loss=total / max(counted, 1),
        scores=np.concatenate(scores).astype(np.float64) if scores else None,
        masks=torch.cat(masks) if masks else None,
        truth=torch.cat(truth) if truth else None,
        has_mask=np.concatenate(has_mask) if has_mask else None,
    )


def _rows(outputs: torch.Tensor | tuple[torch.Tensor, ...], keep: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """The kept cases of a network output (a tensor, or a tuple of tensors)."""
    return tuple(o[keep] for o in outputs) if isinstance(outputs, tuple) else outputs[keep]


def resolve_device(setting: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)
