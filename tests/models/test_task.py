"""The task contract: every task builds a seeded model, a loss on its targets, and says what its outputs mean."""

from __future__ import annotations

import pytest
import torch

from models.end_to_end import ClassLogit
from models.fusion import FusedSegmenter
from models.run_config import RunConfig, RunConfigError
from models.task import ClassificationTask, EndToEndTask, SegmentationTask, task_for


def _batch(n: int = 2, size: int = 32) -> dict[str, torch.Tensor]:
    mask = torch.zeros(n, 1, size, size)
    mask[:, :, 8:20, 10:22] = 1
    return {"image": torch.rand(n, 1, size, size), "label": torch.tensor([0, 1][:n]), "mask": mask, "has_mask": torch.ones(n, dtype=torch.bool)}


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_classification_task() -> None:
    cfg = RunConfig(seed=3, image_size=32)
    task = task_for(cfg)
    assert isinstance(task, ClassificationTask) and task.has_scores and not task.needs_masks
    model = task.build_model(cfg)
    assert _same(model, task.build_model(cfg))  # seeded initialisation
    logits = torch.tensor([[-2.0], [3.0]])
    assert torch.allclose(task.scores(logits), torch.sigmoid(logits.view(-1)))
    assert task.mask_logits(logits) is None and task.explained(model) is model
    loss = task.loss()(logits, task.targets(_batch()))
    expected = -(torch.log(1 - torch.sigmoid(torch.tensor(-2.0))) + torch.log(torch.sigmoid(torch.tensor(3.0)))) / 2
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)


def test_segmentation_task_dicece_on_known_masks() -> None:
    cfg = RunConfig(task="segmentation", segmenter="unet", seg_image_size=32)
    task = task_for(cfg)
    assert isinstance(task, SegmentationTask) and task.needs_masks and not task.has_scores and task.input_size(cfg) == 32
    batch = _batch()
    target = task.targets(batch)
    perfect = torch.where(target > 0, 20.0, -20.0)  # confident and right: Dice loss ~0, CE ~0
    wrong = -perfect
    assert float(task.loss()(perfect, target)) < 1e-3
    assert float(task.loss()(wrong, target)) > 1.5  # Dice loss ~1 plus a large CE
    out = task.build_model(cfg)(batch["image"])
    assert tuple(out.shape) == (2, 1, 32, 32) and task.scores(out) is None and task.mask_logits(out) is out


def test_end_to_end_task_weighs_dice_and_bce() -> None:
    cfg = RunConfig(task="end-to-end", segmenter="deeplabv3plus", image_size=32, seg_loss_weight=0.25)
    task = task_for(cfg)
    assert isinstance(task, EndToEndTask) and task.needs_masks and task.has_scores
    model = task.build_model(cfg)
    logits, mask_logits = model(_batch()["image"])
    assert tuple(logits.shape) == (2, 1) and tuple(mask_logits.shape) == (2, 1, 32, 32)
    batch = _batch()
    labels, masks = task.targets(batch)
    perfect_masks = torch.where(masks > 0, 20.0, -20.0)
    class_logits = torch.tensor([[0.0], [0.0]])  # BCE = log 2 exactly
    loss = task.loss()((class_logits, perfect_masks), (labels, masks))
    assert float(loss) == pytest.approx(0.75 * float(torch.log(torch.tensor(2.0))), abs=1e-3)
    assert tuple(ClassLogit(model)(batch["image"]).shape) == (2, 1)
    # the classification loss reaches the segmenter: both stages are trained together
    model.zero_grad()
    task.loss()(model(batch["image"]), task.targets(batch)).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.segmenter.parameters())


def test_fusion_rules() -> None:
    class Const(torch.nn.Module):
        def __init__(self, p: float) -> None:
            super().__init__()
            self.logit = float(torch.logit(torch.tensor(p)))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full_like(x, self.logit)

    x = torch.zeros(1, 1, 4, 4)
    members = [Const(0.2), Const(0.3), Const(0.9)]
    mean = torch.sigmoid(FusedSegmenter(members, "mean")(x))
    union = torch.sigmoid(FusedSegmenter(members, "union")(x))
    assert torch.allclose(mean, torch.full_like(x, 0.4667), atol=1e-3)  # mean < 0.5: background
    assert torch.allclose(union, torch.full_like(x, 0.9), atol=1e-4)  # one member says lesion: lesion
    with pytest.raises(ValueError, match="unknown fusion"):
        FusedSegmenter(members, "vote")


def test_pipeline_config_checks() -> None:
    cfg = RunConfig(pipeline="automatic", segmenters="unet, deeplabv3", num_rounds=3)
    assert cfg.segmenter_list == ("unet", "deeplabv3")
    with pytest.raises(RunConfigError, match="segmenter 'segnet'"):
        RunConfig(segmenters="unet,segnet")
    with pytest.raises(RunConfigError, match="needs task = 'classification'"):
        RunConfig(pipeline="automatic", task="segmentation")
    with pytest.raises(RunConfigError, match="seg-loss-weight"):
        RunConfig(seg_loss_weight=1.5)


def test_video_task_reads_clips_and_gives_one_probability_per_clip() -> None:
    from models.task import build_network
    from models.video_task import VideoTask

    cfg = RunConfig(task="video", video_model="tin", clip_frames=4, video_width=4, image_size=24, seed=2)
    task = task_for(cfg)
    assert isinstance(task, VideoTask) and task.has_scores and not task.needs_masks and task.explained(torch.nn.Identity()) is None
    assert (task.inputs(cfg).frames, task.inputs(cfg).size, task.inputs(cfg).crop) == (4, 24, "none")
    assert task.describe(cfg) == {"video_model": "tin", "clip_frames": 4, "video_width": 4}
    model = build_network(cfg)
    assert _same(model, build_network(cfg))  # seeded initialisation
    clips = {"image": torch.rand(2, 1, 4, 24, 24), "label": torch.tensor([0, 1])}
    out = model(clips["image"])
    assert out.shape == (2, 1) and task.scores(out).shape == (2,) and task.mask_logits(out) is None
    assert float(task.loss()(out, task.targets(clips))) > 0
    with pytest.raises(RunConfigError, match="'video-model' = 'c3d'"):
        RunConfig(task="video", video_model="c3d")
