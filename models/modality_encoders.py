"""One encoder per modality: a case's input of that modality to an embedding, for the multimodal network.

Every encoder takes the whole batch (``client/multimodal_data.py`` builds it) and a (N,) bool mask of
the rows that have the modality, and returns (N, ``dim``) embeddings with zeros in the other rows;
absent rows are never fed to the encoder (a case without pathology has no patch to read).

* ``ultrasound``: the run's ``model`` classifier (a MONAI ResNet) without its head, on ``image``.
* ``pathology``: PLNet or the ViT (``models/pathology_nets.py``) on each real patch of ``pathology``
  (N, P, 3, S, S) uint8 (``pathology_count`` real ones per case), scaled to [-1, 1] as in seed 003,
  pooled over a case's patches by the mean or gated attention MIL.
* ``mammography``: the two-view ResNet-18 (``models/mammo_nets.py``) on ``mammo`` (N, 2, 1, S, S), CC then MLO.
* ``radiomics``: the case's IBSI-style features of both views' mass ROIs (``radiomics``, N x 2F),
  z-scored with the federation's means and SDs, set once before training (``Standardise``).
* ``clinical``: the ``clinical-variables`` of the case (``clinical``, N x V: a continuous value, a
  binary 0/1 or an ordinal rank), z-scored the same way; a missing value becomes 0 after the
  z-scoring, i.e. the federation's mean.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from models.classifiers import build_classifier
from models.radiomics_names import FEATURE_NAMES
from models.pathology_nets import AttentionMIL, MeanPooling, build_pathology_network, pad_patches
from models.run_config import RunConfig

Batch = Mapping[str, torch.Tensor]
RADIOMICS_DIM = 2 * len(FEATURE_NAMES)  # both views' features, CC first


class ModalityEncoder(nn.Module):
    """Embeds the rows that have the modality; zeros elsewhere."""

    dim: int

    def embed(self, batch: Batch, rows: torch.Tensor) -> torch.Tensor:
        """(rows.sum(), dim) embeddings of the given rows."""
        raise NotImplementedError

    def forward(self, batch: Batch, rows: torch.Tensor) -> torch.Tensor:
        """(N, dim) embeddings: the modality's rows embedded, the others zero."""
        n = rows.shape[0]
        out = torch.zeros(n, self.dim, device=rows.device)
        if bool(rows.any()):
            out = out.index_put((rows.nonzero(as_tuple=True)[0],), self.embed(batch, rows).to(out.dtype))
        return out


class UltrasoundEncoder(ModalityEncoder):
    """The ``model`` classifier's body: its pooled features before the head."""

    def __init__(self, model: str) -> None:
        super().__init__()
        net = build_classifier(model, 1)
        head = getattr(net, "fc", None)
        if not isinstance(head, nn.Linear):
            raise ValueError(f"the ultrasound encoder takes a ResNet-family 'model' (small, resnet18, resnet50, resnet101), not '{model}'")
        self.dim = head.in_features
        net.fc = nn.Identity()
        self.net = net

    def embed(self, batch: Batch, rows: torch.Tensor) -> torch.Tensor:
        """Features of the rows' stills."""
        return self.net(batch["image"][rows])


class PathologyEncoder(ModalityEncoder):
    """A patch network and the pooling of a case's real patches into one embedding."""

    def __init__(self, network: str, size: int, width: int, pooling: str) -> None:
        super().__init__()
        self.net = build_pathology_network(network, size, width)
        self.dim = int(self.net.embedding_dim)
        self.pooling: MeanPooling | AttentionMIL = AttentionMIL(self.dim) if pooling == "attention" else MeanPooling()

    def embed(self, batch: Batch, rows: torch.Tensor) -> torch.Tensor:
        """Pooled patch embeddings of the rows' cases."""
        patches, counts = batch["pathology"][rows], batch["pathology_count"][rows].long()
        real = torch.arange(patches.shape[1], device=patches.device)[None, :] < counts[:, None]
        flat = patches[real].float() / 127.5 - 1.0  # [0, 255] -> [-1, 1]: mean 0.5, SD 0.5 on [0, 1] (the study's normalisation)
        embedded, mask = pad_patches(self.net.features(flat), counts.tolist())
        pool = self.pooling.pool if isinstance(self.pooling, AttentionMIL) else self.pooling
        return pool(embedded, mask)


class MammographyEncoder(ModalityEncoder):
    """The two-view ResNet-18's per-view features, concatenated."""

    def __init__(self, branches: str, width: int) -> None:
        super().__init__()
        from models.mammo_nets import build_two_view_network

        self.net = build_two_view_network(branches, width)
        self.dim = int(self.net.feature_dim)

    def embed(self, batch: Batch, rows: torch.Tensor) -> torch.Tensor:
        """Deep features of the rows' CC and MLO views."""
        return self.net.features(batch["mammo"][rows].float())


class Standardise(nn.Module):
    """z = (x - mean) / sd with the federation's means and SDs as buffers (set by the server, averaged unchanged)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("sd", torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised features; a constant feature (SD 0) gives 0, and a NaN (a feature that could not be computed) 0."""
        z = (x - self.mean) / torch.where(self.sd > 0, self.sd, torch.ones_like(self.sd))
        return torch.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0).clamp(-10.0, 10.0)


class FeatureEncoder(ModalityEncoder):
    """A case's feature vector (``key`` in the batch), z-scored with the federation's statistics."""

    def __init__(self, key: str, dim: int) -> None:
        super().__init__()
        self.key, self.dim = key, dim
        self.standardise = Standardise(dim)

    def embed(self, batch: Batch, rows: torch.Tensor) -> torch.Tensor:
        """The rows' z-scored features."""
        return self.standardise(batch[self.key][rows].float())


def build_encoder(modality: str, cfg: RunConfig) -> ModalityEncoder:
    """The encoder of one modality, with the run config's settings."""
    if modality == "ultrasound":
        return UltrasoundEncoder(cfg.model)
    if modality == "pathology":
        return PathologyEncoder(cfg.pathology_model, cfg.pathology_size, cfg.pathology_width, cfg.pathology_pooling)
    if modality == "mammography":
        return MammographyEncoder(cfg.mammo_branches, cfg.mammo_width)
    if modality == "radiomics":
        return FeatureEncoder("radiomics", RADIOMICS_DIM)
    if modality == "clinical":
        return FeatureEncoder("clinical", len(cfg.clinical_variable_list))
    raise ValueError(f"unknown modality '{modality}'")
