"""The stage plan: what a run trains, in which order, and how each stage is evaluated."""

from __future__ import annotations

import pytest

from models.run_config import RunConfig, RunConfigError
from models.stages import plan_for, stage_config
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


def test_the_cine_pipeline_trains_the_static_model_then_each_video_model_compared_with_it() -> None:
    cfg = RunConfig(task="video", pipeline="cine", video_models="tin, resnet3d", model="resnet50", num_rounds=2)
    plan = plan_for(cfg)
    assert [(s.name, s.cfg.task, s.cfg.model, s.cfg.video_model, s.offset, s.row, s.compare_with) for s in plan.stages] == [
        ("static", "classification", "resnet50", "tin", 0, "static", ()),
        ("tin", "video", "resnet50", "tin", 2, "tin", ("static",)),
        ("resnet3d", "video", "resnet50", "resnet3d", 4, "resnet3d", ("static",)),
    ]
    assert all(s.evaluate_alone for s in plan.stages) and plan.last.name == "resnet3d" and plan.total_rounds == 6
    assert stage_config(plan.stage("tin").cfg, "static") == plan.stage("static").cfg  # a site finds the static model's config from a video message
    assert plan.describe() == {"pipeline": "cine", "static_model": "resnet50", "video_models": ["tin", "resnet3d"]}
    with pytest.raises(RunConfigError, match="needs task = 'video'"):
        RunConfig(pipeline="cine")
    with pytest.raises(RunConfigError, match="'video-models' entry 'c3d'"):
        RunConfig(task="video", pipeline="cine", video_models="tin,c3d")


def test_cross_validation_trains_every_stage_once_per_fold_and_keeps_the_base_stages() -> None:
    cfg = RunConfig(pipeline="automatic", segmenters="unet", num_rounds=2, cv_folds=3)
    plan = plan_for(cfg)
    assert [(s.name, s.fold, s.cfg.cv_fold, s.offset, s.checkpoint) for s in plan.stages] == [
        (name, k, k, 4 * (k - 1) + offset, f"{name}-fold{k}") for k in (1, 2, 3) for name, offset in (("unet", 0), ("classifier", 2))
    ]
    assert all(not s.evaluate_alone and not s.candidates for s in plan.stages)  # only the chosen fold is evaluated and tested
    assert [(s.name, s.fold, s.checkpoint, s.evaluate_alone) for s in plan.bases] == [("unet", 0, "unet", False), ("classifier", 0, "classifier", True)]
    assert plan.folds == 3 and plan.total_rounds == 12 and plan.last.name == "classifier" and plan.fold_stage("classifier", 2).offset == 6
    assert plan.stage("unet").candidates == ("unet", "fusion-mean", "fusion-union") and plan.describe()["cv_folds"] == 3
    single = plan_for(RunConfig(num_rounds=1, cv_folds=2))
    assert [s.checkpoint for s in single.stages] == ["model-fold1", "model-fold2"] and single.last.checkpoint == "final"
    for bad in ({"cv_folds": 1}, {"cv_folds": 2, "cv_fold": 3}):
        with pytest.raises(RunConfigError, match="cv-folds"):
            RunConfig(**bad)  # type: ignore[arg-type]
