"""The stage plan: what a run trains, in which order, and how each stage is evaluated."""

from __future__ import annotations

import pytest

from models.run_config import RunConfig, RunConfigError
from models.stages import plan_for
from models.task_registry import register_task, task_names


def test_a_single_task_run_is_one_stage_checkpointed_as_final() -> None:
    plan = plan_for(RunConfig(num_rounds=4, threshold_rule="specificity", threshold_target=0.9))
    (stage,) = plan.stages
    assert (stage.name, stage.checkpoint, stage.offset, stage.end, stage.evaluate_alone) == ("", "final", 0, 4, True)
    assert plan.total_rounds == 4 and plan.describe() == {"threshold_target": 0.9}


def test_the_automatic_pipeline_trains_each_segmenter_then_the_classifier_on_their_crops() -> None:
    plan = plan_for(RunConfig(pipeline="automatic", segmenters="unet, deeplabv3", num_rounds=3, seg_image_size=48))
    assert [(s.name, s.cfg.task, s.cfg.segmenter, s.offset, s.end) for s in plan.stages] == [
        ("unet", "segmentation", "unet", 0, 3), ("deeplabv3", "segmentation", "deeplabv3", 3, 6), ("classifier", "classification", "unet", 6, 9),
    ]
    unet, deeplab, classifier = plan.stages
    assert not unet.evaluate_alone and not unet.candidates  # evaluated together once the last segmenter is trained
    assert deeplab.candidates == ("unet", "deeplabv3", "fusion-mean", "fusion-union") and not deeplab.evaluate_alone
    assert classifier.crop_with == ("unet", "deeplabv3") and classifier.cfg.lesion_crop == "predicted" and classifier.evaluate_alone
    assert plan.total_rounds == 9 and plan.last is classifier
    assert plan.describe() == {"pipeline": "automatic", "segmenters": ["unet", "deeplabv3"], "seg_fusion": "union", "seg_image_size": 48}


def test_a_registered_task_is_accepted_by_name_and_an_unknown_one_is_refused() -> None:
    with pytest.raises(RunConfigError, match="'task' = 'radiomics'"):
        RunConfig(task="radiomics")
    register_task("stage-plan-probe", lambda cfg: None)  # type: ignore[arg-type, return-value]
    assert "stage-plan-probe" in task_names() and RunConfig(task="stage-plan-probe").task == "stage-plan-probe"
    with pytest.raises(ValueError, match="built in"):
        register_task("classification", lambda cfg: None)  # type: ignore[arg-type, return-value]
