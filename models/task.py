"""The task contract shared by all tasks: model factory, loss, targets, and what the outputs mean.

A batch is a dict of tensors: ``image`` (B, 1, S, S), ``label`` (B,), ``mask`` (B, 1, S, S) and
``has_mask`` (B,). A task says which of them it learns from, and turns the network's outputs into
per-case probabilities (``scores``) and/or per-pixel lesion logits (``mask_logits``); clients,
strategies and reports then handle every task the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from monai.losses import DiceCELoss, DiceLoss
from torch import nn

from models.classifiers import build_classifier
from models.dp_compat import dp_compatible
from models.end_to_end import ClassLogit, SegmentThenClassify
from models.run_config import RunConfig
from models.segmenters import build_segmenter
from models.task_registry import task_for

__all__ = [
    "Batch", "ClassificationTask", "EndToEndTask", "ImageInput", "InputSpec", "ModalInputs", "SegmentationTask", "SingleLogit", "Task",
    "build_network", "task_for",
]

Batch = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class ModalInputs:
    """What a multimodal task reads per case besides the ultrasound still (``client/multimodal_data.py``)."""

    modalities: tuple[str, ...]
    pathology_size: int = 64
    pathology_patches: int = 4
    stain_normalisation: str = "none"
    stain_augmentation: bool = True
    mammo_size: int = 64
    clinical: tuple[str, ...] = ()  # the clinical modality's variables (``clinical-variables``), in order


@dataclass(frozen=True)
class InputSpec:
    """What a task is fed at a site: whole images at ``size`` px, lesion crops cut from images at ``size`` px, or clips.

    ``crop`` is ``none``, ``mask`` (ground-truth masks, a reference only) or ``predicted`` (by the
    segmenters a message refers to, fused by ``seg-fusion``); ``frames`` > 0 asks for clips of that
    many frames cut from each case's cine loop (frames of ``size`` px); ``modal`` asks for a case's
    other modalities too (pathology patches, mammography views, radiomics), the still at ``size`` px;
    ``views`` asks for each mammography view (with its mass mask) as an image of its own.
    """

    size: int
    crop: str = "none"
    frames: int = 0
    modal: ModalInputs | None = None
    views: bool = False

    @property
    def needs_segmenters(self) -> bool:
        """Whether the inputs are cut by trained segmenters."""
        return self.crop == "predicted"


class Task(Protocol):
    """What every task provides, so strategies, clients and reports never branch on the task."""

    name: str
    needs_masks: bool  # training needs a lesion mask for every training case
    has_scores: bool  # the model gives one probability per case (an operating point applies)
    dp_ready: bool  # DP-SGD's per-case gradients (client/dp_training.py) can be computed for this network

    def build_model(self, cfg: RunConfig) -> nn.Module:
        """Return a freshly initialised network for the run (seeded by ``cfg.seed``)."""

    def input_size(self, cfg: RunConfig) -> int:
        """The side of the square images the network is fed."""

    def inputs(self, cfg: RunConfig) -> InputSpec:
        """What the site loads for this task."""

    def label(self) -> str:
        """The name report rows give this model's lesion maps ('' when it makes none)."""

    def describe(self, cfg: RunConfig) -> dict[str, Any]:
        """The task's settings as the report's ``run`` entry shows them (only those that apply)."""

    def loss(self) -> nn.Module:
        """Return the training loss taking (outputs, targets)."""

    def targets(self, batch: Batch) -> Any:
        """Pick the loss's targets from a batch."""

    def scores(self, outputs: Any) -> torch.Tensor | None:
        """One probability per case, or None when the task gives none."""

    def mask_logits(self, outputs: Any) -> torch.Tensor | None:
        """Per-pixel lesion logits (B, 1, S, S), or None when the task gives none."""

    def explained(self, model: nn.Module) -> nn.Module | None:
        """The image -> class-logit module Grad-CAM explains, or None."""

    def network_input(self, batch: Batch) -> Any:
        """What the network is called with, from a batch."""

    def initialise(self, model: nn.Module, earlier: Mapping[str, nn.Module]) -> None:
        """Start ``model`` from the trained models of the earlier stages its stage names (``Stage.init_from``), by stage name."""


class ImageInput:
    """What a task whose network reads the batch's images alone does with a batch and with earlier models."""

    dp_ready = True  # one image per case: DP-SGD's per-case gradients apply

    def network_input(self, batch: Batch) -> torch.Tensor:
        """The batch's ``image`` tensor."""
        return batch["image"]

    def initialise(self, model: nn.Module, earlier: Mapping[str, nn.Module]) -> None:
        """Nothing to take over: an image task starts from its own initialisation."""
        if earlier:
            raise ValueError(f"this task starts from no earlier model, but {', '.join(earlier)} were given")


class SingleLogit(ImageInput):
    """What a task whose network gives one logit per case (and no lesion map) means: BCE, labels, sigmoid scores."""

    def loss(self) -> nn.Module:
        """Binary cross-entropy on the single logit."""
        return nn.BCEWithLogitsLoss()

    def targets(self, batch: Batch) -> torch.Tensor:
        """Labels as a (B, 1) float tensor."""
        return batch["label"].float().view(-1, 1)

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        """Sigmoid of the logit."""
        return torch.sigmoid(outputs.view(-1))

    def mask_logits(self, outputs: torch.Tensor) -> None:
        """A classifier predicts no mask."""
        return None


@dataclass(frozen=True)
class ClassificationTask(SingleLogit):
    """Binary classification of lymph-node metastasis from one image (or lesion crop) per case."""

    model: str = "small"
    pretrained_weights: str = ""
    lesion_crop: str = "none"
    name: str = "classification"
    needs_masks: bool = False
    has_scores: bool = True

    @classmethod
    def from_config(cls, cfg: RunConfig) -> ClassificationTask:
        """The run config's classifier."""
        return cls(cfg.model, cfg.pretrained_weights, cfg.lesion_crop)

    def build_model(self, cfg: RunConfig) -> nn.Module:
        """Build the run's classifier with a seeded initialisation."""
        torch.manual_seed(cfg.seed)
        return build_classifier(self.model, 1, self.pretrained_weights)

    def input_size(self, cfg: RunConfig) -> int:
        """``image-size``."""
        return cfg.image_size

    def inputs(self, cfg: RunConfig) -> InputSpec:
        """Whole images at ``image-size``, or lesion crops cut from images at the segmenters' ``seg-image-size``."""
        return InputSpec(cfg.image_size) if self.lesion_crop == "none" else InputSpec(cfg.seg_image_size, self.lesion_crop)

    def label(self) -> str:
        """A classifier draws no lesion map."""
        return ""

    def describe(self, cfg: RunConfig) -> dict[str, Any]:
        """The crop settings, when the classifier reads lesion crops."""
        return {} if self.lesion_crop == "none" else {"lesion_crop": self.lesion_crop, "crop_margin": cfg.crop_margin}

    def explained(self, model: nn.Module) -> nn.Module:
        """The classifier itself."""
        return model


@dataclass(frozen=True)
class SegmentationTask(ImageInput):
    """Lesion segmentation (one logit map), trained with Dice + cross-entropy as in seed 000."""

    segmenter: str = "unet"
    name: str = "segmentation"
    needs_masks: bool = True
    has_scores: bool = False

    @classmethod
    def from_config(cls, cfg: RunConfig) -> SegmentationTask:
        """The run config's segmenter."""
        return cls(cfg.segmenter)

    def build_model(self, cfg: RunConfig) -> nn.Module:
        """Build the segmenter with a seeded initialisation."""
        torch.manual_seed(cfg.seed)
        return build_segmenter(self.segmenter, 1)

    def input_size(self, cfg: RunConfig) -> int:
        """``seg-image-size``."""
        return cfg.seg_image_size

    def inputs(self, cfg: RunConfig) -> InputSpec:
        """Whole images (with their masks) at ``seg-image-size``."""
        return InputSpec(cfg.seg_image_size)

    def label(self) -> str:
        """The segmenter's name."""
        return self.segmenter

    def describe(self, cfg: RunConfig) -> dict[str, Any]:
        """The segmenter and its input size."""
        return {"seg_image_size": cfg.seg_image_size, "segmenter": self.segmenter}

    def loss(self) -> nn.Module:
        """MONAI's DiceCE on sigmoid outputs."""
        return DiceCELoss(sigmoid=True)

    def targets(self, batch: Batch) -> torch.Tensor:
        """The lesion masks (B, 1, S, S)."""
        return batch["mask"].float()

    def scores(self, outputs: torch.Tensor) -> None:
        """A segmenter gives no case probability."""
        return None

    def mask_logits(self, outputs: torch.Tensor) -> torch.Tensor:
        """The network's output."""
        return outputs

    def explained(self, model: nn.Module) -> None:
        """Nothing to explain with Grad-CAM."""
        return None


@dataclass(frozen=True)
class EndToEndTask(ImageInput):
    """Seed 002's two-stage model optimised end to end: ``w`` x Dice(mask) + (1 - ``w``) x BCE(label)."""

    segmenter: str = "deeplabv3plus"
    model: str = "small"
    seg_loss_weight: float = 0.5
    name: str = "end-to-end"
    needs_masks: bool = True
    has_scores: bool = True

    @classmethod
    def from_config(cls, cfg: RunConfig) -> EndToEndTask:
        """The run config's two-stage model."""
        return cls(cfg.segmenter, cfg.model, cfg.seg_loss_weight)

    def build_model(self, cfg: RunConfig) -> nn.Module:
        """Segmenter and a two-channel classifier, seeded."""
        torch.manual_seed(cfg.seed)
        return SegmentThenClassify(build_segmenter(self.segmenter, 1), build_classifier(self.model, 2))

    def input_size(self, cfg: RunConfig) -> int:
        """``image-size`` (both stages see the same image)."""
        return cfg.image_size

    def inputs(self, cfg: RunConfig) -> InputSpec:
        """Whole images (with their masks) at ``image-size``."""
        return InputSpec(cfg.image_size)

    def label(self) -> str:
        """The segmenter's name."""
        return self.segmenter

    def describe(self, cfg: RunConfig) -> dict[str, Any]:
        """The segmenter, its input size and the loss weight."""
        return {"seg_image_size": cfg.image_size, "segmenter": self.segmenter, "seg_loss_weight": self.seg_loss_weight}

    def loss(self) -> nn.Module:
        """The weighted Dice + BCE loss."""
        return _DiceBCE(self.seg_loss_weight)

    def targets(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(labels (B, 1), masks (B, 1, S, S))."""
        return batch["label"].float().view(-1, 1), batch["mask"].float()

    def scores(self, outputs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Sigmoid of the class logit."""
        return torch.sigmoid(outputs[0].view(-1))

    def mask_logits(self, outputs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The segmenter's lesion logits."""
        return outputs[1]

    def explained(self, model: nn.Module) -> nn.Module:
        """The class logit of the whole two-stage model."""
        return ClassLogit(model)


class _DiceBCE(nn.Module):
    """``w`` x soft Dice of the lesion map + (1 - ``w``) x BCE of the class logit."""

    def __init__(self, weight: float) -> None:
        super().__init__()
        self.weight = weight
        self.dice = DiceLoss(sigmoid=True)
        self.bce = nn.BCEWithLogitsLoss()

    def forward(self, outputs: tuple[torch.Tensor, torch.Tensor], targets: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The weighted sum over a batch."""
        (logits, mask_logits), (labels, masks) = outputs, targets
        return self.weight * self.dice(mask_logits, masks) + (1 - self.weight) * self.bce(logits, labels)


def build_network(cfg: RunConfig, pretrained: bool = False) -> nn.Module:
    """The run's freshly initialised network in the run's variant (``model-variant = dp-compatible``: Opacus-ready).

    Only the server's initial model (``pretrained``) reads the run config's ``pretrained-weights``
    file; a site's network always takes the weights the message carries, so no site opens a path
    that the run config names.
    """
    cfg = cfg if pretrained else cfg.replace(pretrained_weights="")
    model = task_for(cfg).build_model(cfg)
    return dp_compatible(model) if cfg.model_variant == "dp-compatible" else model
