"""The two-view mammography classifier: CC and MLO views through MONAI ResNet-18 branches, their features joined, one logit.

* Branch: MONAI's 2D ResNet-18 (basic blocks, 2-2-2-2), one input channel, stage planes
  (w, 2w, 4w, 8w) (w = 64: the standard ResNet-18), the standard 7 x 7 stride-2 stem, built with
  ``feed_forward=False`` so that it returns its globally pooled 8w features.
* ``branches="shared"``: one ResNet sees both views (a batch of 2N images);
  ``"separate"``: a ResNet per view, ``backbones[0]`` for CC and ``backbones[1]`` for MLO.
* Input (N, 2, 1, S, S), view 0 CC and view 1 MLO; ``features`` gives (N, 2 * 8w), CC's first;
  ``forward`` gives (N, 1) logits, a Linear layer over those features.

Initialisation is MONAI's and PyTorch's; seeding is the caller's (``torch.manual_seed``).
"""

from __future__ import annotations

import torch
from monai.networks.nets import ResNet
from torch import nn

BRANCH_MODES = ("shared", "separate")
VIEWS = ("CC", "MLO")
WIDTH = 64  # the standard ResNet-18's first stage


def view_backbone(width: int) -> ResNet:
    """MONAI's 2D one-channel ResNet-18 of stage planes (w, 2w, 4w, 8w) that returns its pooled 8w features."""
    return ResNet(
        block="basic", layers=[2, 2, 2, 2], block_inplanes=[width, 2 * width, 4 * width, 8 * width], spatial_dims=2,
        n_input_channels=1, conv1_t_size=7, conv1_t_stride=2, feed_forward=False,
    )  # fmt: skip


class TwoViewNet(nn.Module):
    """CC and MLO views through shared or separate ResNet-18 branches; concatenated features -> Linear -> one logit."""

    def __init__(self, branches: str = "shared", width: int = WIDTH) -> None:
        super().__init__()
        if branches not in BRANCH_MODES:
            raise ValueError(f"unknown branches {branches!r}; known: {', '.join(BRANCH_MODES)}")
        if width < 1:
            raise ValueError(f"a width of {width}; it must be at least 1")
        self.branches = branches
        self.view_dim = 8 * width
        self.feature_dim = len(VIEWS) * self.view_dim
        self.backbones = nn.ModuleList(view_backbone(width) for _ in range(1 if branches == "shared" else len(VIEWS)))
        self.head = nn.Linear(self.feature_dim, 1)

    def features(self, views: torch.Tensor) -> torch.Tensor:
        """(N, 2 * 8w) deep features of (N, 2, 1, S, S) views: CC's 8w, then MLO's."""
        if views.ndim != 5 or views.shape[1] != len(VIEWS) or views.shape[2] != 1:
            raise ValueError(f"expected views of shape (N, 2, 1, S, S) (CC, MLO), got {tuple(views.shape)}")
        n = views.shape[0]
        if self.branches == "shared":
            return self.backbones[0](views.flatten(0, 1)).reshape(n, self.feature_dim)  # rows case0-CC, case0-MLO, ...
        return torch.cat([backbone(views[:, i]) for i, backbone in enumerate(self.backbones)], dim=1)

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        """(N, 1) logits of (N, 2, 1, S, S) views."""
        return self.head(self.features(views))


def build_two_view_network(branches: str, width: int = WIDTH) -> TwoViewNet:
    """A TwoViewNet; an unknown ``branches`` fails naming the known ones."""
    return TwoViewNet(branches, width)
