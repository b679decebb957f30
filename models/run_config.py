"""The run configuration: flat kebab-case scalars parsed once into a typed dataclass."""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from models.task_registry import task_names

Scalar = bool | int | float | str
SEGMENTER_NAMES = ("unet", "unetpp", "deeplabv3", "deeplabv3plus")  # models/segmenters.py (kept torch-free here)
FUSION_RULES = ("mean", "union")
VIDEO_NETWORK_NAMES = ("resnet3d", "r2plus1d", "tsm", "tin")  # models/video_nets.py (kept torch-free here)
MODALITIES = ("ultrasound", "pathology", "mammography", "radiomics", "clinical")  # models/modality_encoders.py: what a multimodal network reads
FUSION_BLOCKS = ("concat", "weighted", "attention", "voting", "multilayer")  # models/fusion_blocks.py (kept torch-free here)
STRATEGIES = ("fedavg", "fedprox", "fedbn", "scaffold", "fedavgm", "fedadam", "fedyogi", "fedadagrad", "fedmedian", "fedtrimmedavg", "krum", "multikrum")  # strategies/site_aware.py, strategies/named.py


class RunConfigError(ValueError):
    """A run config key is unknown or has a value of the wrong type."""


@dataclass(frozen=True)
class RunConfig:
    """Experiment settings shared by the server, every site and the baselines."""

    task: str = "classification"
    endpoint: str = "axillary lymph-node metastasis"  # what label 1 vs 0 means, as the report names it
    endpoint_positive: str = "metastasis"
    endpoint_negative: str = "no metastasis"
    model: str = "small"
    image_size: int = 96
    pipeline: str = "single"
    segmenter: str = "unet"
    segmenters: str = "unet,unetpp,deeplabv3"
    seg_image_size: int = 96
    seg_fusion: str = "union"
    lesion_crop: str = "none"
    crop_margin: int = 4
    seg_loss_weight: float = 0.5
    grad_cam_cases: int = 4
    pretrained_weights: str = ""
    model_variant: str = "auto"
    dp_batch_size: int = 256  # expected cases per DP-SGD step at a DP site (Poisson rate: this / training cases, at most 1)
    strategy: str = "fedavg"
    central_dp: str = "off"  # off | server-clipping | client-clipping (strategies/central_dp.py)
    central_dp_noise_multiplier: float = 1.0
    central_dp_clipping_norm: float = 1.0
    central_dp_delta: float = 1e-5
    central_dp_max_epsilon: float = 0.0  # 0: no cap; else a schedule that would pass it is refused before training
    proximal_mu: float = 0.01
    server_lr: float = 0.0  # fedavgm, fedadam, fedyogi, fedadagrad: the server's step size (0: Flower's default for the strategy)
    server_momentum: float = 0.0  # fedavgm
    server_beta1: float = 0.9  # fedadam, fedyogi
    server_beta2: float = 0.99  # fedadam, fedyogi
    server_tau: float = 0.001  # fedadam, fedyogi, fedadagrad: the adaptivity floor
    trim_beta: float = 0.2  # fedtrimmedavg: the fraction cut from each end
    num_malicious_sites: int = 0  # krum, multikrum: f
    multikrum_keep: int = 0  # multikrum: updates averaged (0: all but num-malicious-sites)
    personalise: str = "none"  # none | finetune | ditto: each training site's personalised model, tested next to the global one (never sent)
    personalise_epochs: str = "1,2,4"  # finetune: candidate epoch counts, chosen per site on its validation split
    ditto_lambda: float = 0.1  # ditto: weight of (lambda/2)||v - w||^2 tying the personal model v to the global model w
    scaffold_server_lr: float = 1.0  # SCAFFOLD's global step size eta_g (strategies/scaffold.py)
    max_update_norm_ratio: float = 10.0
    num_rounds: int = 8
    local_epochs: int = 2
    optimizer: str = "adam"
    lr: float = 0.001
    lr_schedule: str = "cosine"
    weight_decay: float = 0.0001
    seed: int = 0
    min_train_sites: int = 2
    validate_every: int = 1
    expected_sites: int = 0
    round_timeout: float = 3600.0
    threshold_rule: str = "youden"
    threshold_target: float = 0.0
    runs_dir: str = "runs"
    run_id: str = ""
    resume_from: str = ""
    sim_sites_dir: str = "phantom/demo"
    enrolment: str = ""  # set by axilla-server: the study's node id -> enrolled site and role (server/enrolment.py)
    baselines: bool = True
    clinical: str = "off"  # off | combined (seed 000: signature + clinical nomogram) | fusion (seed 004: selection, single, pre- and post-fusion)
    clinical_variables: str = ""  # comma list of clinical columns to model ('': every column every training site types)
    clinical_screen_p: float = 0.05  # univariable p below which a variable enters the multivariable step (1: all)
    clinical_max_vif: float = 10.0  # variables above it are dropped, highest first, before backward selection (combined)
    clinical_prune_r: float = 0.75  # |Pearson r| above which the less significant of two features is dropped (fusion)
    clinical_folds: int = 5  # site-stratified folds choosing the LASSO penalty (fusion)
    clinical_features: str = ""  # comma list of the final image model's modalities whose embeddings are candidate variables (fusion)
    readers: str = ""  # comma list of manifest columns holding radiologists' binary calls or ordinal scores (BI-RADS)
    video_model: str = "tin"  # task = video: the clip network (models/video_nets.py)
    video_models: str = "tin,r2plus1d,resnet3d"  # pipeline = cine: the clip networks trained after the static key-frame model
    clip_frames: int = 16  # T: frames per clip, one from each of T equal segments of the loop (client/cine.py)
    video_width: int = 64  # planes of the video networks' first ResNet stage (64: the standard ResNet-18; 8-16 on a CPU)
    cv_folds: int = 0  # federated k-fold cross-validation: folds of each site's non-test cases (0: none; seed 001 used 5)
    cv_fold: int = 0  # set by the stage plan: the fold a stage trains (its validation cases), 0 outside cross-validation
    modalities: str = "ultrasound,pathology"  # task = fusion: the modalities the network reads (MODALITIES), in this order; clinical: ``clinical-variables``
    fusion: str = "multilayer"  # task = fusion: the block fusing the modalities' embeddings (models/fusion_blocks.py)
    fusion_strategies: str = "concat,weighted,attention,voting,multilayer"  # pipeline = fusion: a fusion model per block, after one model per modality
    fusion_training: str = "end-to-end"  # pipeline = fusion: end-to-end | frozen (encoders from the single-modality models, trained on or kept) | scratch
    pathology_model: str = "plnet"  # plnet | vit (models/pathology_nets.py)
    pathology_width: int = 16  # PLNet's first block width (32 in the study's reading; 8-16 on a CPU)
    pathology_size: int = 64  # side of the H&E patches the pathology network reads
    pathology_patches: int = 4  # at most this many patches per case (tissue-richest first), pooled by ``pathology-pooling``
    pathology_pooling: str = "mean"  # mean | attention (gated attention MIL)
    stain_normalisation: str = "none"  # none | macenko | reinhard, applied at each site before tiling (client/stain.py)
    stain_augmentation: bool = True  # HED stain jitter (Tellez et al.) of training patches
    mammo_size: int = 64  # side of each mammography view after the breast-region crop
    mammo_branches: str = "shared"  # shared | separate ResNet-18 branches for the CC and MLO views
    mammo_width: int = 8  # planes of the two-view ResNet-18's first stage (64: the standard ResNet-18)
    mammo_roi: str = "mask"  # radiomics' mass ROI: mask (the manifest's mass masks, a reference) | predicted (a federated ``segmenter`` on the views)

    def __post_init__(self) -> None:
        """Check values that have a closed set of choices or a range."""
        choices = {
            "strategy": STRATEGIES,
            "optimizer": ("adam", "sgd"),
            "lr-schedule": ("cosine", "constant"),
            "threshold-rule": ("youden", "accuracy", "sensitivity", "specificity"),
            "task": task_names(),
            "pipeline": ("single", "automatic", "cine", "fusion"),
            "video-model": VIDEO_NETWORK_NAMES,
            "seg-fusion": FUSION_RULES,
            "lesion-crop": ("none", "mask", "predicted"),
            "model-variant": ("auto", "standard", "dp-compatible"),
            "central-dp": ("off", "server-clipping", "client-clipping"),
            "clinical": ("off", "combined", "fusion"),
            "fusion": FUSION_BLOCKS,
            "fusion-training": ("end-to-end", "frozen", "scratch"),
            "pathology-model": ("plnet", "vit"),
            "pathology-pooling": ("mean", "attention"),
            "stain-normalisation": ("none", "macenko", "reinhard"),
            "mammo-branches": ("shared", "separate"),
            "mammo-roi": ("mask", "predicted"),
            "personalise": ("none", "finetune", "ditto"),
        }
        for key, allowed in choices.items():
            value = getattr(self, key.replace("-", "_"))
            if value not in allowed:
                raise RunConfigError(f"run config '{key}' = {value!r}: expected one of {', '.join(allowed)}")
        for key in ("image_size", "seg_image_size", "num_rounds", "local_epochs", "min_train_sites", "dp_batch_size", "clip_frames", "video_width",
                    "pathology_width", "pathology_patches", "mammo_width"):
            if getattr(self, key) < 1:
                raise RunConfigError(f"run config '{_kebab(key)}' must be >= 1, got {getattr(self, key)}")
        if self.validate_every < 0:
            raise RunConfigError(f"run config 'validate-every' must be >= 0, got {self.validate_every}")
        if self.lr <= 0 or self.proximal_mu < 0:
            raise RunConfigError("run config 'lr' must be > 0 and 'proximal-mu' >= 0")
        self._check_strategy()
        if self.crop_margin < 0 or self.grad_cam_cases < 0:
            raise RunConfigError("run config 'crop-margin' and 'grad-cam-cases' must be >= 0")
        if not (self.central_dp_noise_multiplier > 0 and self.central_dp_clipping_norm > 0 and 0 < self.central_dp_delta < 1):
            raise RunConfigError("run config 'central-dp-noise-multiplier' and 'central-dp-clipping-norm' must be > 0, 'central-dp-delta' in (0, 1)")
        if self.central_dp_max_epsilon < 0:
            raise RunConfigError(f"run config 'central-dp-max-epsilon' must be >= 0 (0: no cap), got {self.central_dp_max_epsilon}")
        if not (0 < self.clinical_screen_p <= 1 and self.clinical_max_vif > 1 and 0 < self.clinical_prune_r <= 1 and self.clinical_folds >= 2):
            raise RunConfigError(
                "run config 'clinical-screen-p' must lie in (0, 1], 'clinical-max-vif' be > 1, 'clinical-prune-r' lie in (0, 1] and 'clinical-folds' be >= 2"
            )
        self._check_clinical_features()
        self._check_strategy()
        if not 0.0 <= self.seg_loss_weight <= 1.0:
            raise RunConfigError(f"run config 'seg-loss-weight' must lie in [0, 1], got {self.seg_loss_weight}")
        for name in (self.segmenter, *self.segmenter_list):
            if name not in SEGMENTER_NAMES:
                raise RunConfigError(f"run config segmenter '{name}': expected one of {', '.join(SEGMENTER_NAMES)}")
        for name in self.video_model_list:
            if name not in VIDEO_NETWORK_NAMES:
                raise RunConfigError(f"run config 'video-models' entry '{name}': expected one of {', '.join(VIDEO_NETWORK_NAMES)}")
        if self.cv_folds == 1 or self.cv_folds < 0 or not 0 <= self.cv_fold <= self.cv_folds:
            raise RunConfigError(f"run config 'cv-folds' must be 0 (no cross-validation) or >= 2, got {self.cv_folds}; 'cv-fold' is set by the stage plan")
        if self.pipeline == "cine" and (self.task != "video" or not self.video_model_list):
            raise RunConfigError("run config 'pipeline' = 'cine' trains a static key-frame classifier, then each of 'video-models': it needs task = 'video' and at least one video model")
        if self.pipeline == "automatic" and self.task != "classification":
            raise RunConfigError("run config 'pipeline' = 'automatic' trains segmenters, then a classifier: it needs task = 'classification'")
        self._check_multimodal()
        self._check_personalisation()
        if self.lesion_crop == "predicted" and not self.segmenter_list:
            raise RunConfigError("run config 'lesion-crop' = 'predicted' needs 'segmenters' to crop with")

    def _check_strategy(self) -> None:
        """The strategies' hyper-parameters; central DP only with a mean aggregator; SCAFFOLD corrects plain SGD steps."""
        if self.server_lr < 0 or self.server_tau <= 0:
            raise RunConfigError(f"run config 'server-lr' must be >= 0 (0: the strategy's default) and 'server-tau' > 0, got {self.server_lr} and {self.server_tau}")
        for key in ("server_momentum", "server_beta1", "server_beta2"):
            if not 0 <= getattr(self, key) < 1:
                raise RunConfigError(f"run config '{_kebab(key)}' must lie in [0, 1), got {getattr(self, key)}")
        if not 0 <= self.trim_beta < 0.5:
            raise RunConfigError(f"run config 'trim-beta' must lie in [0, 0.5) (the fraction cut from each end), got {self.trim_beta}")
        if self.num_malicious_sites < 0 or self.multikrum_keep < 0:
            raise RunConfigError(
                f"run config 'num-malicious-sites' and 'multikrum-keep' must be >= 0, got {self.num_malicious_sites} and {self.multikrum_keep}"
            )
        if self.central_dp != "off" and self.strategy not in ("fedavg", "fedprox"):
            raise RunConfigError(
                f"run config 'central-dp' = {self.central_dp!r} needs strategy = fedavg or fedprox: DP-FedAvg's noise and epsilon are calibrated "
                f"to a plain mean of clipped updates, which strategy = {self.strategy!r} does not take"
            )
        if self.scaffold_server_lr <= 0:
            raise RunConfigError(f"run config 'scaffold-server-lr' must be > 0, got {self.scaffold_server_lr}")
        if self.strategy == "scaffold" and self.optimizer != "sgd":
            raise RunConfigError(
                f"run config 'strategy' = 'scaffold' needs optimizer = 'sgd', not {self.optimizer!r}: its control variates "
                "(c_i+ = c_i - c + (x - y_i) / (K lr)) correct plain SGD steps, and Adam's per-parameter scaling breaks that identity"
            )

    def _check_multimodal(self) -> None:
        """The modalities, fusion blocks and input sizes of the multimodal tasks (models/multimodal_task.py)."""
        for name in self.modality_list:
            if name not in MODALITIES:
                raise RunConfigError(f"run config 'modalities' entry '{name}': expected one of {', '.join(MODALITIES)}")
        if len(set(self.modality_list)) != len(self.modality_list):
            raise RunConfigError(f"run config 'modalities' = {self.modalities!r} names a modality twice")
        for name in self.fusion_strategy_list:
            if name not in FUSION_BLOCKS:
                raise RunConfigError(f"run config 'fusion-strategies' entry '{name}': expected one of {', '.join(FUSION_BLOCKS)}")
        if "clinical" in self.modality_list and not self.clinical_variable_list:
            raise RunConfigError("run config 'modalities' includes 'clinical': name its variables in 'clinical-variables' (continuous, binary or ordinal columns), the same at every site")
        if self.task == "fusion" and not self.modality_list:
            raise RunConfigError("run config 'task' = 'fusion' needs at least one of 'modalities'")
        if self.pipeline == "fusion" and (self.task != "fusion" or len(self.modality_list) < 2 or not self.fusion_strategy_list):
            raise RunConfigError(
                "run config 'pipeline' = 'fusion' trains one model per modality, then one per 'fusion-strategies' block: "
                "it needs task = 'fusion', at least two 'modalities' and one fusion strategy"
            )
        if self.pathology_size < 16 or self.mammo_size < 32:
            raise RunConfigError(f"run config 'pathology-size' must be >= 16 and 'mammo-size' >= 32, got {self.pathology_size} and {self.mammo_size}")
        if self.pathology_model == "vit" and self.pathology_size % 16:
            raise RunConfigError(f"run config 'pathology-model' = 'vit' reads 16-pixel patches: 'pathology-size' = {self.pathology_size} is not a multiple of 16")

    def _check_personalisation(self) -> None:
        """``personalise-epochs``: positive integers (fine-tuning's candidates); ``ditto-lambda`` >= 0."""
        try:
            epochs = self.personalise_epoch_list
        except ValueError:
            raise RunConfigError(f"run config 'personalise-epochs' = {self.personalise_epochs!r}: expected a comma list of whole numbers, e.g. '1,2,4'") from None
        if self.personalise == "finetune" and (not epochs or min(epochs) < 1):
            raise RunConfigError(f"run config 'personalise-epochs' = {self.personalise_epochs!r}: fine-tuning needs at least one epoch count, each >= 1")
        if self.personalise != "none" and self.cv_folds:
            raise RunConfigError(f"run config 'personalise' = {self.personalise!r} personalises the run's final model: it needs cv-folds = 0 (each fold's model is chosen afterwards)")
        if self.ditto_lambda < 0:
            raise RunConfigError(f"run config 'ditto-lambda' must be >= 0, got {self.ditto_lambda}")

    def _check_clinical_features(self) -> None:
        """``clinical-features``: known modalities, each once, for the fusion selection (the plan checks the final model has them)."""
        for name in self.clinical_feature_list:
            if name not in MODALITIES:
                raise RunConfigError(f"run config 'clinical-features' entry '{name}': expected one of {', '.join(MODALITIES)}")
        if len(set(self.clinical_feature_list)) != len(self.clinical_feature_list):
            raise RunConfigError(f"run config 'clinical-features' = {self.clinical_features!r} names a modality twice")
        if self.clinical_feature_list and self.clinical != "fusion":
            raise RunConfigError(
                f"run config 'clinical-features' = {self.clinical_features!r} adds image features to the clinical = 'fusion' selection: "
                f"it needs clinical = 'fusion', not {self.clinical!r}"
            )

    @property
    def modality_list(self) -> tuple[str, ...]:
        """The ``modalities`` key as names (a multimodal network's inputs, in this order)."""
        return _names(self.modalities)

    @property
    def fusion_strategy_list(self) -> tuple[str, ...]:
        """The ``fusion-strategies`` key as block names (the fusion pipeline's fusion models, trained in this order)."""
        return _names(self.fusion_strategies)

    @property
    def segmenter_list(self) -> tuple[str, ...]:
        """The ``segmenters`` key as names (the automatic pipeline's constituents, fused in this order)."""
        return _names(self.segmenters)

    @property
    def video_model_list(self) -> tuple[str, ...]:
        """The ``video-models`` key as names (the cine pipeline's clip networks, trained in this order)."""
        return _names(self.video_models)

    @property
    def clinical_variable_list(self) -> tuple[str, ...]:
        """The ``clinical-variables`` key as column names (empty: every column every training site types)."""
        return _names(self.clinical_variables)

    @property
    def clinical_feature_list(self) -> tuple[str, ...]:
        """The ``clinical-features`` key as modality names (their embeddings become candidate variables, in this order)."""
        return _names(self.clinical_features)

    @property
    def personalise_epoch_list(self) -> tuple[int, ...]:
        """The ``personalise-epochs`` key as sorted distinct epoch counts (ValueError if one is not a whole number)."""
        return tuple(sorted({int(n) for n in _names(self.personalise_epochs)}))

    @property
    def reader_list(self) -> tuple[str, ...]:
        """The ``readers`` key as column names."""
        return _names(self.readers)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RunConfig:
        """Parse flat kebab-case keys (Flower's run config), rejecting unknown keys and wrong types."""
        known = {_kebab(f.name): f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            if key not in known:
                raise RunConfigError(f"unknown run config key '{key}' (known: {', '.join(sorted(known))})")
            kwargs[known[key].name] = _coerce(key, value, type(getattr(cls(), known[key].name)))
        return cls(**kwargs)

    def to_mapping(self) -> dict[str, Scalar]:
        """Return the flat kebab-case form (what Flower's run config and ConfigRecords carry)."""
        return {_kebab(k): v for k, v in dataclasses.asdict(self).items()}

    def round_lr(self, server_round: int) -> float:
        """The learning rate of a round: constant, or cosine-annealed over the rounds to 5% of ``lr``."""
        if self.lr_schedule == "constant" or self.num_rounds == 1:
            return self.lr
        progress = (min(max(server_round, 1), self.num_rounds) - 1) / (self.num_rounds - 1)
        return self.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))

    def replace(self, **changes: Any) -> RunConfig:
        """Return a copy with some fields changed (snake_case names)."""
        return dataclasses.replace(self, **changes)


def load_run_config_file(path: Path) -> dict[str, Scalar]:
    """Read a TOML override file of flat kebab-case keys."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise RunConfigError(f"run config file {path} not found") from err
    except tomllib.TOMLDecodeError as err:
        raise RunConfigError(f"run config file {path}: {err}") from err
    for key, value in data.items():
        if isinstance(value, (dict, list)):
            raise RunConfigError(f"run config file {path}: key '{key}' must be a scalar")
    return data


def parse_assignments(items: list[str]) -> dict[str, Scalar]:
    """Parse ``key=value`` strings, reading values as TOML scalars (bare words as strings)."""
    out: dict[str, Scalar] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise RunConfigError(f"expected key=value, got {item!r}")
        try:
            out[key.strip()] = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = raw.strip()
    return out


def _names(text: str) -> tuple[str, ...]:
    """A comma-separated key's names."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _kebab(name: str) -> str:
    """Turn a snake_case field name into its kebab-case key."""
    return name.replace("_", "-")


def _coerce(key: str, value: Any, kind: type) -> Scalar:
    """Convert a value to the field's type, or fail naming the key."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is str:
        return str(value)
    raise RunConfigError(f"run config '{key}' = {value!r}: expected {kind.__name__}")
