"""Feature-level fusion of per-modality embeddings (seed 003: ultrasound + pathology) into one metastasis logit per case.

Every block takes ``features``, a list of M (N, D_m) tensors (widths may differ, M >= 1), and an
optional ``present`` mask (N, M) bool (``None``: every modality present), and returns (N, 1) logits
(the sigmoid is the loss's ``BCEWithLogitsLoss``). Every case needs at least one present modality.
First, every block replaces an absent modality's rows by zeros with ``torch.where`` (so even NaN or
inf features of an absent modality cannot leak); then, per block:

* ``concat``: z = [x_1, ..., x_M] (absent ones as zeros), logit = Linear(sum D_m -> 1)(z).
  Absent: its zero block adds nothing; the head's bias stays.
* ``weighted``: p_m = Linear_m(x_m) to a common ``width``; learned scalars w_1..w_M; over the
  present modalities P of a case, a_m = exp(w_m) / sum_{k in P} exp(w_k) (a_m = 0 when m is absent),
  h = sum_m a_m p_m, logit = Linear(width -> 1)(h). Absent: weight 0, the rest renormalised.
* ``attention``: tokens t_m = Linear_m(x_m) of a common ``width``, a shared score s_m = Linear(width -> 1)(t_m),
  a_m = softmax of s over the case's present tokens (absent scores set to -inf, weight 0),
  h = sum_m a_m t_m, logit = Linear(width -> 1)(h). Absent: weight 0, the rest renormalised.
* ``voting``: l_m = Linear_m(D_m -> 1)(x_m), logit = mean of l_m over the case's present modalities
  (soft voting in logit space, i.e. the mean log-odds, not the mean probability). Absent: left out of the mean.
* ``multilayer`` (the paper, section 2.4.4): BatchNorm1d per modality, concatenation,
  Linear(sum D_m -> 256), ReLU, BatchNorm1d(256), Squeeze-and-Excitation on the 256 features
  (Hu et al., CVPR 2018; a vector has no spatial extent, so the squeeze is the identity:
  g = sigmoid(FC(16 -> 256)(ReLU(FC(256 -> 16)(h)))), reduction r = 16, both FCs with bias; h * g),
  Linear(256 -> 1); no dropout. Absent: the modality's normalised features are zeroed before the
  concatenation, and its BatchNorm sees only the batch's present rows (training statistics and
  running-statistics updates), so absent features change no case's output; in training a modality
  therefore needs at least two present rows in the batch (BatchNorm's own one-sample limit).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from models.run_config import FUSION_BLOCKS  # the paper's order (kept torch-free there)

HIDDEN = 256  # the multilayer block's dense width
SE_REDUCTION = 16  # the Squeeze-and-Excitation bottleneck is HIDDEN / SE_REDUCTION wide
WIDTH = 256  # the common width of the weighted and attention blocks' projections


def presence(features: Sequence[torch.Tensor], present: torch.Tensor | None, dims: Sequence[int]) -> torch.Tensor:
    """The (N, M) bool presence mask of ``features`` (all True for ``None``), after checking shapes and one present modality per case."""
    if len(features) != len(dims):
        raise ValueError(f"{len(features)} modalities given, the block has {len(dims)}")
    n = features[0].shape[0]
    for m, (x, d) in enumerate(zip(features, dims)):
        if x.dim() != 2 or x.shape != (n, d):
            raise ValueError(f"modality {m} has shape {tuple(x.shape)}, expected ({n}, {d})")
    if present is None:
        return torch.ones(n, len(dims), dtype=torch.bool, device=features[0].device)
    if present.dtype != torch.bool or present.shape != (n, len(dims)):
        raise ValueError(f"the presence mask must be a ({n}, {len(dims)}) bool tensor, got {tuple(present.shape)} {present.dtype}")
    if not bool(present.any(1).all()):
        raise ValueError("every case needs at least one present modality")
    return present


def zero_absent(features: Sequence[torch.Tensor], present: torch.Tensor) -> list[torch.Tensor]:
    """``features`` with every absent modality's rows replaced by zeros (``torch.where``, so NaN cannot leak)."""
    return [torch.where(present[:, m : m + 1], x, torch.zeros_like(x)) for m, x in enumerate(features)]


def masked_softmax(scores: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Softmax of (N, M) ``scores`` over each case's present modalities; absent ones get weight 0."""
    return torch.softmax(scores.masked_fill(~present, float("-inf")), dim=1)


def _check_dims(dims: Sequence[int]) -> list[int]:
    """``dims`` as a list, refused when empty or holding a width below 1."""
    if not dims or any(d < 1 for d in dims):
        raise ValueError(f"modality widths {list(dims)}: need at least one, each at least 1")
    return list(dims)


class ConcatFusion(nn.Module):
    """Concatenation of the modalities (absent ones as zeros), then one Linear to a logit."""

    def __init__(self, dims: Sequence[int]) -> None:
        super().__init__()
        self.dims = _check_dims(dims)
        self.head = nn.Linear(sum(self.dims), 1)

    def forward(self, features: Sequence[torch.Tensor], present: torch.Tensor | None = None) -> torch.Tensor:
        """M (N, D_m) features and an (N, M) mask to (N, 1) logits."""
        mask = presence(features, present, self.dims)
        return self.head(torch.cat(zero_absent(features, mask), dim=1))


class WeightedFusion(nn.Module):
    """Per-modality Linear projections to ``width``, mixed by learned softmax weights renormalised over the present modalities, then a Linear head."""

    def __init__(self, dims: Sequence[int], width: int = WIDTH) -> None:
        super().__init__()
        self.dims = _check_dims(dims)
        self.projections = nn.ModuleList(nn.Linear(d, width) for d in self.dims)
        self.weights = nn.Parameter(torch.zeros(len(self.dims)))  # equal weights at the start
        self.head = nn.Linear(width, 1)

    def forward(self, features: Sequence[torch.Tensor], present: torch.Tensor | None = None) -> torch.Tensor:
        """M (N, D_m) features and an (N, M) mask to (N, 1) logits."""
        mask = presence(features, present, self.dims)
        tokens = torch.stack([p(x) for p, x in zip(self.projections, zero_absent(features, mask))], dim=1)
        alpha = masked_softmax(self.weights.expand_as(mask), mask)
        return self.head((alpha[..., None] * tokens).sum(1))


class AttentionFusion(nn.Module):
    """Per-modality Linear tokens of ``width``, a shared Linear score per token, softmax over the present tokens, weighted sum, Linear head."""

    def __init__(self, dims: Sequence[int], width: int = WIDTH) -> None:
        super().__init__()
        self.dims = _check_dims(dims)
        self.projections = nn.ModuleList(nn.Linear(d, width) for d in self.dims)
        self.score = nn.Linear(width, 1)
        self.head = nn.Linear(width, 1)

    def forward(self, features: Sequence[torch.Tensor], present: torch.Tensor | None = None) -> torch.Tensor:
        """M (N, D_m) features and an (N, M) mask to (N, 1) logits."""
        mask = presence(features, present, self.dims)
        tokens = torch.stack([p(x) for p, x in zip(self.projections, zero_absent(features, mask))], dim=1)
        alpha = masked_softmax(self.score(tokens).squeeze(-1), mask)
        return self.head((alpha[..., None] * tokens).sum(1))


class VotingFusion(nn.Module):
    """A Linear logit head per modality; the case's logit is the mean of its present modalities' logits (soft voting in logit space)."""

    def __init__(self, dims: Sequence[int]) -> None:
        super().__init__()
        self.dims = _check_dims(dims)
        self.heads = nn.ModuleList(nn.Linear(d, 1) for d in self.dims)

    def votes(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Each modality's (N, M) logits, absent or not."""
        return torch.cat([h(x) for h, x in zip(self.heads, features)], dim=1)

    def forward(self, features: Sequence[torch.Tensor], present: torch.Tensor | None = None) -> torch.Tensor:
        """M (N, D_m) features and an (N, M) mask to (N, 1) logits."""
        mask = presence(features, present, self.dims)
        votes = self.votes(zero_absent(features, mask))
        kept = torch.where(mask, votes, torch.zeros_like(votes))
        return kept.sum(1, keepdim=True) / mask.sum(1, keepdim=True).to(votes.dtype)


class SqueezeExcitation(nn.Module):
    """Squeeze-and-Excitation of (N, C) features: g = sigmoid(FC(C/r -> C)(ReLU(FC(C -> C/r)(x)))), returns x * g."""

    def __init__(self, channels: int, reduction: int = SE_REDUCTION) -> None:
        super().__init__()
        if channels % reduction:
            raise ValueError(f"{channels} channels are not divisible by the reduction {reduction}")
        self.fc1 = nn.Linear(channels, channels // reduction)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(channels // reduction, channels)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reweight the channels of (N, C) ``x``."""
        return x * self.gate(self.fc2(self.act(self.fc1(x))))


class MultilayerFusion(nn.Module):
    """The paper's multilayer fusion: BatchNorm1d per modality, concat, Linear(256), ReLU, BatchNorm1d(256), SE (r = 16), Linear(1)."""

    def __init__(self, dims: Sequence[int], hidden: int = HIDDEN, reduction: int = SE_REDUCTION) -> None:
        super().__init__()
        self.dims = _check_dims(dims)
        self.norms = nn.ModuleList(nn.BatchNorm1d(d) for d in self.dims)
        self.dense = nn.Linear(sum(self.dims), hidden)
        self.act = nn.ReLU()
        self.norm = nn.BatchNorm1d(hidden)
        self.se = SqueezeExcitation(hidden, reduction)
        self.head = nn.Linear(hidden, 1)

    def normalised(self, features: Sequence[torch.Tensor], mask: torch.Tensor) -> list[torch.Tensor]:
        """Each modality through its BatchNorm over the present rows only, zeros in the absent rows."""
        out = []
        for m, (norm, x) in enumerate(zip(self.norms, zero_absent(features, mask))):
            rows = mask[:, m]
            if bool(rows.all()):
                out.append(norm(x))
            else:
                out.append(torch.zeros_like(x).index_put((rows,), norm(x[rows])) if bool(rows.any()) else torch.zeros_like(x))
        return out

    def forward(self, features: Sequence[torch.Tensor], present: torch.Tensor | None = None) -> torch.Tensor:
        """M (N, D_m) features and an (N, M) mask to (N, 1) logits."""
        mask = presence(features, present, self.dims)
        h = self.norm(self.act(self.dense(torch.cat(self.normalised(features, mask), dim=1))))
        return self.head(self.se(h))


def build_fusion(name: str, dims: Sequence[int]) -> nn.Module:
    """One of ``concat``, ``weighted``, ``attention``, ``voting``, ``multilayer`` over modalities of widths ``dims``."""
    if name == "concat":
        return ConcatFusion(dims)
    if name == "weighted":
        return WeightedFusion(dims)
    if name == "attention":
        return AttentionFusion(dims)
    if name == "voting":
        return VotingFusion(dims)
    if name == "multilayer":
        return MultilayerFusion(dims)
    raise ValueError(f"fusion '{name}' is not one of {', '.join(FUSION_BLOCKS)}")
