"""The video task: a clip network classifies lymph-node metastasis from a cine loop (seed 001)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from models.run_config import RunConfig
from models.task import InputSpec, SingleLogit
from models.video_nets import build_video_network


@dataclass(frozen=True)
class VideoTask(SingleLogit):
    """Binary classification from clips of ``clip-frames`` frames cut from each case's loop (the ``video`` column)."""

    network: str = "tin"
    frames: int = 16
    width: int = 64
    name: str = "video"
    needs_masks: bool = False
    has_scores: bool = True

    @classmethod
    def from_config(cls, cfg: RunConfig) -> VideoTask:
        """The run config's clip network."""
        return cls(cfg.video_model, cfg.clip_frames, cfg.video_width)

    def build_model(self, cfg: RunConfig) -> nn.Module:
        """The clip network (one grayscale channel, one logit), seeded."""
        torch.manual_seed(cfg.seed)
        return build_video_network(self.network, 1, 1, self.frames, self.width)

    def input_size(self, cfg: RunConfig) -> int:
        """``image-size``: every frame's side."""
        return cfg.image_size

    def inputs(self, cfg: RunConfig) -> InputSpec:
        """Clips of ``clip-frames`` frames at ``image-size``."""
        return InputSpec(cfg.image_size, frames=self.frames)

    def label(self) -> str:
        """A clip classifier draws no lesion map."""
        return ""

    def describe(self, cfg: RunConfig) -> dict[str, Any]:
        """The clip network, clip length and width."""
        return {"video_model": self.network, "clip_frames": self.frames, "video_width": self.width}

    def explained(self, model: nn.Module) -> None:
        """No Grad-CAM overlay for clips (the still models write theirs)."""
        return None
