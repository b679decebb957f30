"""Local training and prediction loops shared by the ClientApp and the baselines."""

from __future__ import annotations

import sys
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


def make_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """Adam (seed studies' default) or SGD with momentum."""
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
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
) -> TrainStats:
    """Train for ``epochs`` passes; with ``proximal_mu`` > 0 add FedProx's (mu/2)||w - w0||^2.

    ``w0`` is the model as it arrives (the global model). One progress bar per epoch.
    """
    model.to(device).train()
    loss_fn = task.loss()
    anchor = [p.detach().clone() for p in model.parameters()] if proximal_mu > 0 else []
    total, count, steps = 0.0, 0, 0
    for epoch in range(epochs):
        bar = tqdm(loader, desc=f"{desc} epoch {epoch + 1}/{epochs}", leave=False, disable=not sys.stderr.isatty())
        for images, labels in bar:
            images, labels = images.to(device), labels.to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(images), task.targets(labels))
            if proximal_mu > 0:
                loss = loss + proximal_mu / 2 * proximal_term(model, anchor)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(labels)
            count += len(labels)
            steps += 1
            bar.set_postfix(loss=f"{total / max(count, 1):.4f}")
    return TrainStats(num_examples=len(loader.dataset), loss=total / max(count, 1), steps=steps)  # type: ignore[arg-type]


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, task: Task, device: torch.device) -> tuple[np.ndarray, np.ndarray, float]:
    """Return labels, scores and mean loss over a loader (evaluation mode, no augmentation)."""
    model.to(device).eval()
    loss_fn = task.loss()
    labels, scores, total = [], [], 0.0
    for images, y in loader:
        images, y = images.to(device), y.to(device)
        out = model(images)
        total += float(loss_fn(out, task.targets(y))) * len(y)
        labels.append(y.cpu().numpy())
        scores.append(task.scores(out).cpu().numpy())
    y_all = np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)
    s_all = np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)
    return y_all.astype(np.int64), s_all.astype(np.float64), total / max(len(y_all), 1)


def resolve_device(setting: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)
