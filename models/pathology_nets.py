"""Pathology-branch networks of seed study 003: PLNet, a ViT (MONAI), and pooling of a case's patches.

The study (section 2.4.2) feeds 224 x 224 RGB patches, normalised to mean 0.5 and SD 0.5, to a
ViT with 16 x 16 patches and to "PLNet", "a lightweight CNN architecture optimized for pathology
images, featuring four convolutional blocks with progressive filter expansion and global pooling",
with "Batch Normalization layers ... incorporated during feature extraction". PLNet is a name, not
a published architecture; ``PLNet`` below is our reading of that sentence.

* ``plnet``: ``PLNet``, four Conv3x3-BN-ReLU-MaxPool2 blocks, global average pooling, dropout 0.5, linear head.
* ``vit``: ``PathologyViT``, MONAI's ``ViT`` (2D, class token) returning logits only.
* ``MeanPooling`` and ``AttentionMIL`` pool a case's patches, given as a padded (N, K, D) tensor and a
  (N, K) mask of real patches; ``pad_patches`` and ``aggregate_patches`` build that from a flat batch.

MONAI's transformer blocks need ``einops`` (``pip install einops``); nothing else here does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets import ViT
from torch import nn

WIDTHS = (32, 64, 128, 256)  # PLNet's "progressive filter expansion": doubling per block
DROPOUT = 0.5  # the study's dropout before the fully connected layer (stated for ULNet, section 2.4.1)
PATCH_SIZE = 16  # the study's ViT patches
# CPU-sized ViT preset (ViT-Ti-like). ViT-B/16 for GPUs: hidden 768, depth 12, heads 12, MLP 3072.
VIT_HIDDEN, VIT_DEPTH, VIT_HEADS, VIT_MLP = 192, 4, 3, 768
MIL_ATTENTION_DIM = 128  # Ilse et al.'s attention width L
PATHOLOGY_NETWORKS = ("plnet", "vit")


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """One PLNet block: 3x3 convolution (padding 1, no bias), BatchNorm, ReLU, 2x2 max pooling."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class PLNet(nn.Module):
    """Our reading of the study's PLNet: a four-block CNN mapping (N, C, H, W) images to (N, num_classes) logits.

    Layers, for ``widths=(32, 64, 128, 256)`` and a 224 x 224 input::

        block 1: Conv2d(C, 32, 3, pad 1) -> BatchNorm2d(32) -> ReLU -> MaxPool2d(2)    224 -> 112
        block 2: Conv2d(32, 64, 3, pad 1) -> BatchNorm2d(64) -> ReLU -> MaxPool2d(2)   112 -> 56
        block 3: Conv2d(64, 128, 3, pad 1) -> BatchNorm2d(128) -> ReLU -> MaxPool2d(2)  56 -> 28
        block 4: Conv2d(128, 256, 3, pad 1) -> BatchNorm2d(256) -> ReLU -> MaxPool2d(2) 28 -> 14
        AdaptiveAvgPool2d(1) -> flatten                                   embedding (N, 256)
        Dropout(0.5) -> Linear(256, num_classes)                          logits

    Inputs need at least 16 pixels a side (four halvings).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 1, widths: Sequence[int] = WIDTHS, dropout: float = DROPOUT) -> None:
        super().__init__()
        if len(widths) != 4 or min(widths) < 1:
            raise ValueError(f"PLNet takes four positive block widths, not {tuple(widths)}")
        channels = [in_channels, *widths]
        self.blocks = nn.Sequential(*(conv_block(a, b) for a, b in zip(channels[:-1], channels[1:])))
        self.pool = nn.AdaptiveAvgPool2d(1)
        # the study applies dropout 0.5 before the fully connected layer (said of ULNet's classifier, section 2.4.1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(widths[-1], num_classes)
        self.embedding_dim = widths[-1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The globally pooled embedding, (N, widths[-1])."""
        return torch.flatten(self.pool(self.blocks(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes)."""
        return self.head(self.dropout(self.features(x)))


class PathologyViT(nn.Module):
    """MONAI's 2D ViT with a class token, returning (N, num_classes) logits instead of MONAI's (logits, hidden states) tuple."""

    def __init__(self, vit: ViT) -> None:
        super().__init__()
        if not hasattr(vit, "classification_head"):
            raise ValueError("the ViT must be built with classification=True")
        self.vit = vit
        self.embedding_dim = vit.norm.normalized_shape[0]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The normalised class-token embedding, (N, hidden_size): MONAI's ViT.forward without the head."""
        tokens = self.vit.patch_embedding(x)
        cls_token = self.vit.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat((cls_token, tokens), dim=1)
        for block in self.vit.blocks:
            tokens = block(tokens)
        return self.vit.norm(tokens)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes)."""
        return self.vit.classification_head(self.features(x))


def pathology_vit(
    image_size: int = 224,
    in_channels: int = 3,
    num_classes: int = 1,
    patch_size: int = PATCH_SIZE,
    hidden_size: int = VIT_HIDDEN,
    depth: int = VIT_DEPTH,
    heads: int = VIT_HEADS,
    mlp_dim: int = VIT_MLP,
    dropout: float = 0.0,
) -> PathologyViT:
    """MONAI's ViT on (N, C, image_size, image_size) images; defaults are a CPU preset (ViT-B/16: 768, 12, 12, 3072)."""
    import einops  # noqa: F401  (MONAI's transformer blocks need it: a missing one fails here, by name)

    if image_size % patch_size:
        raise ValueError(f"an image size of {image_size} is not a whole number of {patch_size}-pixel patches")
    vit = ViT(
        in_channels=in_channels,
        img_size=image_size,
        patch_size=patch_size,
        hidden_size=hidden_size,
        mlp_dim=mlp_dim,
        num_layers=depth,
        num_heads=heads,
        classification=True,
        num_classes=num_classes,
        dropout_rate=dropout,
        spatial_dims=2,
        post_activation=None,  # MONAI's default "Tanh" would squash the logits into (-1, 1)
    )
    return PathologyViT(vit)


def _check_mask(x: torch.Tensor, mask: torch.Tensor) -> None:
    """Raise a ValueError unless x is (N, K, D), mask a (N, K) bool tensor, and every case has a real patch."""
    if x.dim() != 3 or mask.shape != x.shape[:2] or mask.dtype != torch.bool:
        raise ValueError(f"patches {tuple(x.shape)} need a bool mask of shape {tuple(x.shape[:2])}, not {mask.dtype} {tuple(mask.shape)}")
    if not bool(mask.any(dim=1).all()):
        raise ValueError("every case needs at least one real patch")


def _zero_padding(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x with the padded rows set to zero, so their values (even inf or NaN) cannot leak into a sum."""
    return x.masked_fill(~mask.unsqueeze(-1), 0.0)


class MeanPooling(nn.Module):
    """A case's value as the mean over its real patches: (N, K, D) and (N, K) mask to (N, D); on patch logits, the mean logit."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean of the real rows of each case."""
        _check_mask(x, mask)
        counts = mask.sum(dim=1, keepdim=True).to(x.dtype)
        return _zero_padding(x, mask).sum(dim=1) / counts


class AttentionMIL(nn.Module):
    """Gated attention-based MIL pooling (Ilse, Tomczak, Welling, ICML 2018) with a linear head: (N, K, D) patch embeddings to (N, num_classes) logits.

    a_k = softmax_k(w^T (tanh(V h_k) * sigmoid(U h_k))) over a case's real patches, z = sum_k a_k h_k, logits = head(z).
    """

    def __init__(self, in_features: int, num_classes: int = 1, attention_dim: int = MIL_ATTENTION_DIM) -> None:
        super().__init__()
        self.attention_v = nn.Linear(in_features, attention_dim)
        self.attention_u = nn.Linear(in_features, attention_dim)
        self.attention_w = nn.Linear(attention_dim, 1)
        self.head = nn.Linear(in_features, num_classes)

    def attention(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Attention weights (N, K): softmax over each case's real patches, zero on padding."""
        _check_mask(x, mask)
        h = _zero_padding(x, mask)
        gate = torch.tanh(self.attention_v(h)) * torch.sigmoid(self.attention_u(h))
        scores = self.attention_w(gate).squeeze(-1).masked_fill(~mask, float("-inf"))
        return torch.softmax(scores, dim=1)

    def pool(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The case embedding z = sum_k a_k h_k, (N, D)."""
        weights = self.attention(x, mask)
        return torch.einsum("nk,nkd->nd", weights, _zero_padding(x, mask))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Case logits (N, num_classes)."""
        return self.head(self.pool(x, mask))


def pad_patches(values: torch.Tensor, counts: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a flat (sum(counts), D) patch batch, case by case, into a zero-padded (N, K, D) tensor and its (N, K) mask of real patches."""
    if min(counts, default=0) < 1 or sum(counts) != values.shape[0]:
        raise ValueError(f"patch counts {list(counts)} do not split {values.shape[0]} patches into non-empty cases")
    width = max(counts)
    padded = values.new_zeros((len(counts), width, *values.shape[1:]))
    mask = torch.zeros((len(counts), width), dtype=torch.bool, device=values.device)
    for case, chunk in enumerate(torch.split(values, list(counts))):
        padded[case, : len(chunk)] = chunk
        mask[case, : len(chunk)] = True
    return padded, mask


def aggregate_patches(values: torch.Tensor, counts: Sequence[int], rule: MeanPooling | AttentionMIL) -> torch.Tensor:
    """Pool a flat (sum(counts), D) batch of patch logits or embeddings into (N, D) case values with a pooling module."""
    return rule(*pad_patches(values, counts))


def build_pathology_network(name: str, image_size: int, width: int = 32, in_channels: int = 3, num_classes: int = 1) -> nn.Module:
    """A named pathology network on (N, C, image_size, image_size) images: ``plnet`` (block widths width x (1, 2, 4, 8)) or ``vit`` (CPU preset, 16-pixel patches)."""
    if name == "plnet":
        if image_size < 16:
            raise ValueError(f"PLNet halves the image four times; {image_size} pixels is too small")
        return PLNet(in_channels, num_classes, widths=(width, 2 * width, 4 * width, 8 * width))
    if name == "vit":
        return pathology_vit(image_size, in_channels, num_classes)
    raise ValueError(f"unknown pathology network '{name}' (known: {', '.join(PATHOLOGY_NETWORKS)})")
