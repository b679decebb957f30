"""The task contract shared by all tasks: model factory, loss, scores and metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

from evaluation.classification import binary_metrics
from models.classifiers import build_classifier
from models.run_config import RunConfig


class Task(Protocol):
    """What every task provides, so strategies, clients and reports never branch on the task."""

    name: str

    def build_model(self, cfg: RunConfig, in_channels: int = 1) -> nn.Module:
        """Return a freshly initialised network for the run."""

    def loss(self) -> nn.Module:
        """Return the training loss taking (outputs, targets)."""

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """Turn a batch's labels into the loss's target tensor."""

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        """Turn network outputs into one probability per case."""

    def metrics(self, labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float | int | list[float]]:
        """Compute the task's metrics on one split at an operating point."""


@dataclass(frozen=True)
class ClassificationTask:
    """Binary classification of lymph-node metastasis from one image per case."""

    name: str = "classification"

    def build_model(self, cfg: RunConfig, in_channels: int = 1) -> nn.Module:
        """Build the run's classifier with a seeded initialisation."""
        torch.manual_seed(cfg.seed)
        return build_classifier(cfg.model, in_channels, cfg.pretrained_weights)

    def loss(self) -> nn.Module:
        """Binary cross-entropy on the single logit."""
        return nn.BCEWithLogitsLoss()

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """Labels as a (B, 1) float tensor."""
        return labels.float().view(-1, 1)

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        """Sigmoid of the logit."""
        return torch.sigmoid(outputs.view(-1))

    def metrics(self, labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float | int | list[float]]:
        """AUC with DeLong CI and the threshold-dependent proportions."""
        return binary_metrics(labels, scores, threshold)


TASKS: dict[str, Task] = {"classification": ClassificationTask()}


def get_task(name: str) -> Task:
    """Look up a task by name."""
    if name not in TASKS:
        raise ValueError(f"unknown task '{name}' (known: {', '.join(sorted(TASKS))})")
    return TASKS[name]
