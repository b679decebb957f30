"""Post-fusion of several segmenters' probability maps into one lesion map (seed 000)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from models.run_config import FUSION_RULES

SEGMENTER_PREFIX = "seg:"  # ArrayRecords named "seg:<segmenter>" carry a pipeline's trained segmenters to the sites


class FusedSegmenter(nn.Module):
    """Combine member segmenters pixel by pixel and return the fused map as logits.

    ``mean`` averages the members' probabilities (a pixel is lesion when the mean is >= 0.5);
    ``union`` is the high-recall rule: a pixel is lesion when any member calls it lesion
    (the maximum probability is >= 0.5).
    """

    def __init__(self, members: Sequence[nn.Module], rule: str) -> None:
        super().__init__()
        if rule not in FUSION_RULES:
            raise ValueError(f"unknown fusion rule '{rule}' (known: {', '.join(FUSION_RULES)})")
        if not members:
            raise ValueError("a fusion needs at least one segmenter")
        self.members = nn.ModuleList(members)
        self.rule = rule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, 1, H, W) fused lesion logits."""
        probs = torch.stack([torch.sigmoid(m(x)) for m in self.members])
        fused = probs.mean(0) if self.rule == "mean" else probs.amax(0)
        return torch.logit(fused.clamp(1e-6, 1 - 1e-6))
