"""The stage plan: a run as a list of typed stages that the federation, resume, baselines and report all read.

A single-task run has one stage. The automatic pipeline (seed 000) trains each of ``segmenters``
in turn, evaluates them and their fusions together once the last one is trained, then trains
the classifier on lesion crops cut by the fused segmenters. The cine pipeline (seed 001) trains the
static classifier on key frames, then each video network on clips, each compared with the static
one. With ``cv-folds`` every stage is trained once per fold. Rounds are numbered across stages
(``num-rounds`` each), so a resumed run skips the stages whose last round is checkpointed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from models.run_config import FUSION_RULES, RunConfig, RunConfigError

FINAL = "final"


@dataclass(frozen=True)
class Stage:
    """One trained model of the run.

    ``crop_with`` names the earlier stages whose models (fused by ``seg-fusion``) cut this stage's
    inputs; ``candidates``, when set, are evaluated together after this stage (earlier stages'
    models, this one and ``fusion-<rule>`` of them), and ``evaluate_alone`` says whether this
    stage's own model gets the final evaluation with an operating point.
    """

    name: str
    cfg: RunConfig
    offset: int
    crop_with: tuple[str, ...] = ()
    candidates: tuple[str, ...] = ()
    evaluate_alone: bool = True
    compare_with: tuple[str, ...] = ()  # stages whose final models this one's is compared with at every test site (DeLong, NRI, IDI)
    row: str = ""  # the report's name of this stage's model within a run's model ('': the run's model itself)
    fold: int = 0  # cross-validation: the fold this copy of the stage trains on (its cfg's ``cv-fold``); 0 outside
    init_from: tuple[str, ...] = ()  # earlier stages whose trained models this one's starts from (the task's ``initialise``)

    @property
    def end(self) -> int:
        """The stage's last round (numbered across stages)."""
        return self.offset + self.cfg.num_rounds

    @property
    def checkpoint(self) -> str:
        """The stage's final checkpoint name: its own name, or ``final`` for a single-task run; a fold's adds ``-fold<k>``."""
        return f"{self.name or 'model'}-fold{self.fold}" if self.fold else self.name or FINAL


@dataclass(frozen=True)
class Plan:
    """The run's stages in training order, and with cross-validation the stages each fold copies (``bases``).

    Under ``cv-folds`` = K the plan trains every stage once per fold (fold k's copies see fold k's
    cases as validation); each base stage evaluated alone then takes the fold whose model scores the
    highest pooled validation AUC, which alone is tested. Stages are named by their base in every fold.
    """

    cfg: RunConfig
    stages: tuple[Stage, ...]
    bases: tuple[Stage, ...] = ()

    def __post_init__(self) -> None:
        if not self.bases:
            object.__setattr__(self, "bases", self.stages)

    @property
    def folds(self) -> int:
        """Cross-validation folds (0: none)."""
        return max(s.fold for s in self.stages)

    @property
    def total_rounds(self) -> int:
        """Rounds over all stages."""
        return self.stages[-1].end

    @property
    def last(self) -> Stage:
        """The base stage whose model is the run's final model."""
        return self.bases[-1]

    def stage(self, name: str) -> Stage:
        """The base stage called ``name``; ``KeyError`` names the plan's stages."""
        for stage in self.bases:
            if stage.name == name:
                return stage
        raise KeyError(f"no stage '{name}' in the plan ({', '.join(s.name for s in self.bases)})")

    def fold_stage(self, name: str, fold: int) -> Stage:
        """Fold ``fold``'s copy of the base stage ``name`` (the stage itself without cross-validation)."""
        return next(s for s in self.stages if s.name == name and s.fold == fold)

    def describe(self) -> dict[str, Any]:
        """The run-level settings the report shows (the tasks add their own)."""
        out: dict[str, Any] = {}
        if self.cfg.pipeline == "automatic":
            out |= {"pipeline": "automatic", "segmenters": list(self.cfg.segmenter_list), "seg_fusion": self.cfg.seg_fusion}
            out["seg_image_size"] = self.cfg.seg_image_size
        if self.cfg.pipeline == "cine":
            out |= {"pipeline": "cine", "static_model": self.cfg.model, "video_models": list(self.cfg.video_model_list)}
        if self.cfg.pipeline == "fusion":
            out |= {"pipeline": "fusion", "fusion_strategies": list(self.cfg.fusion_strategy_list), "fusion_training": self.cfg.fusion_training}
        if self.cfg.cv_folds:
            out["cv_folds"] = self.cfg.cv_folds
        if self.cfg.threshold_rule in ("sensitivity", "specificity"):
            out["threshold_target"] = self.cfg.threshold_target
        return out


def segmenter_config(cfg: RunConfig, name: str) -> RunConfig:
    """The run config of the pipeline stage that trains segmenter ``name``."""
    return cfg.replace(task="segmentation", segmenter=name, lesion_crop="none", pipeline="single")


def static_config(cfg: RunConfig) -> RunConfig:
    """The run config of the cine pipeline's static model: the ``model`` classifier on each case's key frame."""
    return cfg.replace(task="classification", pipeline="single")


def stage_config(cfg: RunConfig, name: str) -> RunConfig:
    """The run config of base stage ``name`` of the plan that a stage's run config ``cfg`` belongs to (a site's view of the plan)."""
    return plan_for(cfg.replace(cv_fold=0)).stage(name).cfg


def plan_for(cfg: RunConfig) -> Plan:
    """The stages of a run config: its base stages, once per fold under ``cv-folds``."""
    base = _base_plan(cfg.replace(cv_fold=0))
    if cfg.cv_folds < 2:
        return base
    span = base.total_rounds
    stages = tuple(
        replace(s, cfg=s.cfg.replace(cv_fold=k), offset=(k - 1) * span + s.offset, fold=k, candidates=(), evaluate_alone=False, compare_with=())
        for k in range(1, cfg.cv_folds + 1)
        for s in base.stages
    )  # fmt: skip
    return Plan(cfg, stages, base.stages)


def _base_plan(cfg: RunConfig) -> Plan:
    """The stages of a run config, without cross-validation."""
    if cfg.pipeline == "cine":
        return _cine_plan(cfg)
    if cfg.pipeline == "fusion":
        return _fusion_plan(cfg)
    if cfg.pipeline != "automatic":
        if cfg.task == "fusion" and "radiomics" in cfg.modality_list and cfg.mammo_roi == "predicted":
            raise RunConfigError("run config 'mammo-roi' = 'predicted' cuts the radiomics ROIs with a mass segmenter the fusion pipeline trains first: it needs pipeline = 'fusion'")
        return Plan(cfg, (Stage("", cfg, 0),))
    names = cfg.segmenter_list
    stages = [
        Stage(
            name, segmenter_config(cfg, name), i * cfg.num_rounds,
            candidates=(*names, *(f"fusion-{rule}" for rule in FUSION_RULES)) if i == len(names) - 1 else (), evaluate_alone=False,
        )
        for i, name in enumerate(names)
    ]  # fmt: skip
    classifier = cfg.replace(lesion_crop="predicted", pipeline="single")
    stages.append(Stage("classifier", classifier, len(names) * cfg.num_rounds, crop_with=names))
    return Plan(cfg, tuple(stages))


def _cine_plan(cfg: RunConfig) -> Plan:
    """Seed 001: the static classifier on the key frames, then each of ``video-models`` on clips, each compared with the static one.

    The video stages keep ``pipeline = cine`` in their run configs, so a site can rebuild the plan
    from a message and find the static model's config (``stage_config``).
    """
    static = Stage("static", static_config(cfg), 0, row="static")
    videos = [
        Stage(name, cfg.replace(video_model=name), (i + 1) * cfg.num_rounds, compare_with=("static",), row=name)
        for i, name in enumerate(cfg.video_model_list)
    ]
    return Plan(cfg, (static, *videos))


def modality_config(cfg: RunConfig, modality: str) -> RunConfig:
    """The run config of the fusion pipeline's model of one modality: its encoder and a linear head."""
    return cfg.replace(modalities=modality, fusion="concat", fusion_training="end-to-end", pipeline="single")


def _fusion_plan(cfg: RunConfig) -> Plan:
    """Seeds 003/004: a model per modality, then a fusion model per block, each compared with every single-modality model.

    Under ``mammo-roi = predicted`` with radiomics among the modalities, a mass segmenter (named by
    ``segmenter``) is trained first on the mammography views, and cuts the ROIs of every stage reading radiomics.
    The fusion stages keep ``pipeline = fusion`` in their run configs, so a site can rebuild the plan
    from a message and find the single-modality models' configs (``stage_config``). Each starts its
    encoders from the single-modality models unless ``fusion-training = scratch``.
    """
    modalities, rounds = cfg.modality_list, cfg.num_rounds
    first: list[Stage] = []
    crop: tuple[str, ...] = ()
    if cfg.mammo_roi == "predicted" and "radiomics" in modalities:  # the mass segmenter first: its masks cut the radiomics ROIs
        first.append(Stage(cfg.segmenter, cfg.replace(task="mass-segmentation", pipeline="single"), 0, row=f"mass-{cfg.segmenter}"))
        crop = (cfg.segmenter,)
    singles = [Stage(m, modality_config(cfg, m), (len(first) + i) * rounds, row=m, crop_with=crop if m == "radiomics" else ()) for i, m in enumerate(modalities)]
    start = () if cfg.fusion_training == "scratch" else modalities
    fusions = [
        Stage(
            f"fusion-{block}", cfg.replace(fusion=block), (len(first) + len(modalities) + i) * rounds, crop_with=crop, compare_with=modalities,
            row=f"fusion-{block}", init_from=start,
        )
        for i, block in enumerate(cfg.fusion_strategy_list)
    ]  # fmt: skip
    return Plan(cfg, (*first, *singles, *fusions))
