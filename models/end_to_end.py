"""The end-to-end two-stage model of seed 002: a segmenter, then a classifier of the segmented lesion."""

from __future__ import annotations

import torch
from torch import nn


class SegmentThenClassify(nn.Module):
    """Segment the lesion, then classify the image with the lesion map as attention.

    The classifier sees two channels: the image and the image weighted by the predicted lesion
    probability, so the classification loss reaches the segmenter and both stages are optimised
    together (the weighted Dice + BCE loss of ``models/task.py``).
    """

    def __init__(self, segmenter: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.segmenter = segmenter
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, H, W) -> (class logits (B, 1), lesion logits (B, 1, H, W))."""
        mask_logits = self.segmenter(x)
        lesion = torch.sigmoid(mask_logits)
        return self.classifier(torch.cat([x, x * lesion], dim=1)), mask_logits


class ClassLogit(nn.Module):
    """The class-logit output of a two-output model (what Grad-CAM explains)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) -> (B, 1) class logits."""
        return self.model(x)[0]
