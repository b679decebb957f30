"""Grad-CAM heatmaps for single-logit image classifiers, and PNG overlays of a few cases."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from monai.visualize import GradCAM
from torch import nn

SHORTCUT = "downsample"  # name MONAI and torchvision give a residual block's shortcut projection


def target_layer(model: nn.Module) -> str:
    """Name (as in ``model.named_modules()``) of the last ``nn.Conv2d`` of a classifier: Grad-CAM's default layer.

    A convolution on a residual shortcut (a ``downsample`` submodule) is passed over when the model has
    another one: it sees the block's input, not the features the classifier head reads.

    Raises:
        ValueError: if the model has no ``nn.Conv2d``.
    """
    convs = [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no nn.Conv2d layer for Grad-CAM")
    main_path = [name for name in convs if SHORTCUT not in name.split(".")]
    return (main_path or convs)[-1]


def _normalise(maps: np.ndarray) -> np.ndarray:
    """Scale each (H, W) map to [0, 1]; a constant map becomes zeros."""
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    safe_span = np.where(span > 0, span, 1.0)
    return np.where(span > 0, (maps - low) / safe_span, 0.0).astype(np.float32)


@contextmanager
def _inspection(model: nn.Module, layer: nn.Module) -> Iterator[None]:
    """Put the model in eval mode, then restore its mode, parameter gradients and the layer's hooks."""
    training = model.training
    grads = [(param, param.grad) for param in model.parameters()]
    forward_hooks, backward_hooks = set(layer._forward_hooks), set(layer._backward_hooks)
    model.eval()
    try:
        yield
    finally:
        model.train(training)
        for param, grad in grads:
            param.grad = grad
        for hook in set(layer._forward_hooks) - forward_hooks:  # MONAI never removes the hooks it registers
            del layer._forward_hooks[hook]
        for hook in set(layer._backward_hooks) - backward_hooks:
            del layer._backward_hooks[hook]


def grad_cam_maps(model: nn.Module, images: torch.Tensor, layer: str | None = None) -> np.ndarray:
    """Grad-CAM heatmaps (N, H, W) in [0, 1] for the positive-class logit of a single-logit classifier.

    Args:
        model: maps (N, C, H, W) images to (N, 1) logits; left in its previous mode, unchanged.
        images: (N, C, H, W) float images.
        layer: module name to explain; defaults to ``target_layer(model)``.

    Returns:
        float32 heatmaps, each scaled to [0, 1] (all zeros where the map is constant).
    """
    name = layer or target_layer(model)
    modules = dict(model.named_modules())
    if name not in modules:
        raise ValueError(f"{type(model).__name__} has no layer named '{name}'")
    param = next(model.parameters(), None)
    x = images.detach().to(dtype=torch.float32, device=param.device if param is not None else images.device)
    with _inspection(model, modules[name]), torch.enable_grad():
        cam = GradCAM(nn_module=model, target_layers=name, postprocessing=lambda maps: maps)
        maps = cam(x.clone().requires_grad_(True), class_idx=0)
    return _normalise(maps.detach().cpu().numpy()[:, 0].astype(np.float64))


def _order(scores: Sequence[float], labels: Sequence[int]) -> list[int]:
    """Case indices alternating positives (highest score first) and negatives (lowest score first).

    Positives lead; when one class runs out the other continues; ties keep input order.
    """
    positives = sorted((i for i, label in enumerate(labels) if int(label) != 0), key=lambda i: -float(scores[i]))
    negatives = sorted((i for i, label in enumerate(labels) if int(label) == 0), key=lambda i: float(scores[i]))
    order: list[int] = []
    for k in range(max(len(positives), len(negatives))):
        order += positives[k : k + 1] + negatives[k : k + 1]
    return order


def safe_name(name: str) -> str:
    """A file-name-safe form of a case, run or model name: characters other than [A-Za-z0-9_-] become '_'."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name) or "case"


def _figure(image: np.ndarray, heatmap: np.ndarray, label: int, score: float) -> Figure:
    """Two panels side by side: the image in gray, and the image under a Grad-CAM overlay."""
    fig = Figure(figsize=(6, 3), dpi=100)
    FigureCanvasAgg(fig)
    plain, overlay = fig.subplots(1, 2)
    plain.imshow(image, cmap="gray")
    plain.set_title("image", fontsize=9)
    overlay.imshow(image, cmap="gray")
    overlay.imshow(heatmap, cmap="jet", alpha=0.4, vmin=0.0, vmax=1.0)
    overlay.set_title("Grad-CAM", fontsize=9)
    for axes in (plain, overlay):
        axes.axis("off")
    fig.suptitle(f"label {label}   score {score:.2f}", fontsize=10)
    return fig


def write_grad_cams(
    model: nn.Module,
    images: torch.Tensor,
    scores: Sequence[float],
    labels: Sequence[int],
    names: Sequence[str],
    out_dir: Path,
    max_cases: int = 4,
) -> list[Path]:
    """Overlay heatmaps on the first channel of the images for up to ``max_cases`` cases and write one PNG per case to ``out_dir``.

    Cases alternate positives (highest score first) and negatives (lowest score first), so both
    classes show when present. Files are ``{rank:02d}_{name}_label{label}_score{score:.2f}.png``,
    ranked in that order, with the name made file-name safe.

    Args:
        model: single-logit classifier; left in its previous mode.
        images: (N, C, H, W) float images.
        scores: the model's positive-class probability per case.
        labels: the true label (0 or 1) per case.
        names: a case name per case.
        out_dir: folder for the PNGs, created if missing.
        max_cases: most cases to write; 0 or less writes nothing.

    Returns:
        the written paths, in rank order.
    """
    if not len(images) == len(scores) == len(labels) == len(names):
        raise ValueError(
            f"images, scores, labels and names differ in length: {len(images)}, {len(scores)}, {len(labels)}, {len(names)}"
        )
    chosen = _order(scores, labels)[: max(max_cases, 0)]
    if not chosen:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    heatmaps = grad_cam_maps(model, images[chosen])
    pictures = images[chosen, 0].detach().float().cpu().numpy()
    paths = []
    for rank, (index, picture, heatmap) in enumerate(zip(chosen, pictures, heatmaps)):
        label, score = int(labels[index]), float(scores[index])
        path = out_dir / f"{rank:02d}_{safe_name(names[index])}_label{label}_score{score:.2f}.png"
        _figure(picture, heatmap, label, score).savefig(path)
        paths.append(path)
    return paths
