"""Multimodal tasks (seeds 003 and 004): one encoder per modality, fused into one metastasis logit per case.

``task = fusion`` reads the run config's ``modalities`` and fuses their embeddings with the ``fusion``
block (``models/fusion_blocks.py``); ``task = pathology`` and ``task = mammography`` are the same
network on one modality (the encoder and a linear head). A case lacking a modality (a site without
pathology, a row without both mammography views) is fed with that modality masked out
(``present``), so a site trains and is evaluated on what it has; a case with none of the task's
modalities is not among the task's cases at all (``client/multimodal_data.py``).

In the fusion pipeline (``models/stages.py``) each modality's model is trained first; a fusion
model then starts its encoders from them (``fusion-training = end-to-end`` trains them on,
``frozen`` keeps them fixed and trains only the fusion block, ``scratch`` starts from random weights).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from models.fusion_blocks import build_fusion
from models.modality_encoders import ModalityEncoder, Standardise, build_encoder
from models.run_config import RunConfig
from models.task import Batch, InputSpec, ModalInputs, SegmentationTask, SingleLogit


class MultimodalNet(nn.Module):
    """Encoders by modality and a fusion block: a batch dict to (N, 1) logits.

    ``frozen`` encoders keep their weights and their BatchNorm statistics (evaluation mode even while the block trains).
    """

    def __init__(self, encoders: Mapping[str, ModalityEncoder], block: str, frozen: bool = False) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(dict(encoders))
        self.fusion = build_fusion(block, [e.dim for e in self.encoders.values()])
        self.frozen = frozen
        if frozen:
            self.encoders.requires_grad_(False)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities, in the order of the batch's ``present`` columns."""
        return tuple(self.encoders)

    def train(self, mode: bool = True) -> MultimodalNet:
        """Training mode for the block (and the encoders unless frozen)."""
        super().train(mode)
        if self.frozen:
            self.encoders.eval()
        return self

    def forward(self, batch: Batch) -> torch.Tensor:
        """(N, 1) logits from each present modality's embedding."""
        present = batch["present"].bool()
        features = [encoder(batch, present[:, m]) for m, encoder in enumerate(self.encoders.values())]
        return self.fusion(features, present)

    def standardisers(self) -> dict[str, Standardise]:
        """The feature standardisers whose means and SDs the federation sets, by state-dict prefix."""
        return {name: module for name, module in self.named_modules() if isinstance(module, Standardise)}


@dataclass(frozen=True)
class MultimodalTask(SingleLogit):
    """Metastasis from one or more modalities of a case, fused by ``block`` (a single modality: encoder and linear head)."""

    modalities: tuple[str, ...] = ("ultrasound", "pathology")
    block: str = "multilayer"
    training: str = "end-to-end"
    name: str = "fusion"
    needs_masks: bool = False
    has_scores: bool = True
    dp_ready: bool = False  # boolean row selection per modality: no per-case vmap gradients (client/dp_training.py)

    @classmethod
    def from_config(cls, cfg: RunConfig) -> MultimodalTask:
        """``task = fusion``: the run config's modalities and block."""
        return cls(cfg.modality_list, cfg.fusion, cfg.fusion_training)

    def build_model(self, cfg: RunConfig) -> nn.Module:
        """The encoders (in ``modalities`` order) and the block, seeded."""
        torch.manual_seed(cfg.seed)
        encoders = {m: build_encoder(m, cfg) for m in self.modalities}
        return MultimodalNet(encoders, self.block if len(self.modalities) > 1 else "concat", self.training == "frozen")

    def input_size(self, cfg: RunConfig) -> int:
        """``image-size``: the ultrasound still's side."""
        return cfg.image_size

    def inputs(self, cfg: RunConfig) -> InputSpec:
        """Each case's stills and its other modalities' inputs."""
        clinical = cfg.clinical_variable_list if "clinical" in self.modalities else ()
        modal = ModalInputs(
            self.modalities, cfg.pathology_size, cfg.pathology_patches, cfg.stain_normalisation, cfg.stain_augmentation, cfg.mammo_size, clinical,
        )  # fmt: skip
        return InputSpec(cfg.image_size, modal=modal)

    def label(self) -> str:
        """A classifier draws no lesion map."""
        return ""

    def describe(self, cfg: RunConfig) -> dict[str, Any]:
        """The modalities, the block and each modality's settings."""
        out: dict[str, Any] = {"modalities": list(self.modalities)}
        if len(self.modalities) > 1:
            out |= {"fusion": self.block, "fusion_training": self.training}
        if "pathology" in self.modalities:
            out |= {
                "pathology_model": cfg.pathology_model, "pathology_size": cfg.pathology_size, "pathology_patches": cfg.pathology_patches,
                "pathology_pooling": cfg.pathology_pooling, "stain_normalisation": cfg.stain_normalisation, "stain_augmentation": cfg.stain_augmentation,
            }  # fmt: skip
        if "clinical" in self.modalities:
            out["clinical_variables"] = list(cfg.clinical_variable_list)
        if "mammography" in self.modalities or "radiomics" in self.modalities:
            out |= {"mammo_size": cfg.mammo_size, "mammo_branches": cfg.mammo_branches, "mammo_width": cfg.mammo_width}
        return out

    def explained(self, model: nn.Module) -> None:
        """No Grad-CAM overlay for a multimodal model."""
        return None

    def network_input(self, batch: Batch) -> Batch:
        """The whole batch: every modality's tensors and ``present``."""
        return batch

    def initialise(self, model: nn.Module, earlier: Mapping[str, nn.Module]) -> None:
        """Take each modality's encoder from the earlier single-modality model of that name (the fusion pipeline's stages)."""
        if self.training == "scratch":
            return
        assert isinstance(model, MultimodalNet)
        for modality, source in earlier.items():
            if not isinstance(source, MultimodalNet) or modality not in model.encoders or modality not in source.encoders:
                raise ValueError(f"no '{modality}' encoder to take over from the earlier model '{modality}'")
            model.encoders[modality].load_state_dict(source.encoders[modality].state_dict(), strict=True)


def pathology_task(cfg: RunConfig) -> MultimodalTask:
    """``task = pathology``: the pathology network on a case's patches, pooled, with a linear head."""
    return MultimodalTask(("pathology",), "concat", name="pathology")


def mammography_task(cfg: RunConfig) -> MultimodalTask:
    """``task = mammography``: the two-view ResNet-18 on a case's CC and MLO views, with a linear head."""
    return MultimodalTask(("mammography",), "concat", name="mammography")


@dataclass(frozen=True)
class MassSegmentationTask(SegmentationTask):
    """The mass in each mammography view (CC and MLO as images of their own), by the run's ``segmenter``, trained with Dice + cross-entropy.

    The seed's Mask R-CNN needs torchvision; a MONAI segmenter takes its place. Its masks cut the
    radiomics ROIs under ``mammo-roi = predicted``.
    """

    name: str = "mass-segmentation"

    def input_size(self, cfg: RunConfig) -> int:
        """``mammo-size``."""
        return cfg.mammo_size

    def inputs(self, cfg: RunConfig) -> InputSpec:
        """Both views of every case with both, each with its mass mask, at ``mammo-size``."""
        return InputSpec(cfg.mammo_size, modal=ModalInputs(("mammography",), mammo_size=cfg.mammo_size), views=True)

    def describe(self, cfg: RunConfig) -> dict[str, Any]:
        """The segmenter and the views' size."""
        return {"mass_segmenter": self.segmenter, "mammo_size": cfg.mammo_size}
