"""Run config: parsed once, typed, in step with pyproject.toml's Flower App defaults."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from models.run_config import STRATEGIES, RunConfig, RunConfigError, load_run_config_file, parse_assignments

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_match_the_flower_app_config() -> None:
    app = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert app == RunConfig().to_mapping()


def test_parse_rejects_unknown_keys_and_wrong_types() -> None:
    cfg = RunConfig.from_mapping({"num-rounds": 3, "lr": 1, "strategy": "fedprox", "baselines": "false"})
    assert cfg.num_rounds == 3 and cfg.lr == 1.0 and cfg.strategy == "fedprox" and cfg.baselines is False
    with pytest.raises(RunConfigError, match="unknown run config key 'num-round'"):
        RunConfig.from_mapping({"num-round": 3})
    with pytest.raises(RunConfigError, match="'num-rounds'"):
        RunConfig.from_mapping({"num-rounds": "three"})
    with pytest.raises(RunConfigError, match="'strategy'"):
        RunConfig.from_mapping({"strategy": "fedsgd"})
    with pytest.raises(RunConfigError, match="'local-epochs'"):
        RunConfig.from_mapping({"local-epochs": 0})


def test_override_files_and_assignments(tmp_path: Path) -> None:
    (tmp_path / "x.toml").write_text('num-rounds = 4\nmodel = "resnet18"\n')
    assert load_run_config_file(tmp_path / "x.toml") == {"num-rounds": 4, "model": "resnet18"}
    (tmp_path / "bad.toml").write_text("[nested]\na = 1\n")
    with pytest.raises(RunConfigError, match="scalar"):
        load_run_config_file(tmp_path / "bad.toml")
    assert parse_assignments(["lr=0.01", "model=resnet50", "baselines=false"]) == {
        "lr": 0.01, "model": "resnet50", "baselines": False,
    }
    with pytest.raises(RunConfigError):
        parse_assignments(["no-equals"])


def test_cosine_round_learning_rate() -> None:
    cfg = RunConfig(lr=0.01, num_rounds=5)
    rates = [cfg.round_lr(r) for r in range(1, 6)]
    assert rates[0] == pytest.approx(0.01) and rates[-1] == pytest.approx(0.0005)
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert RunConfig(lr=0.01, lr_schedule="constant").round_lr(3) == 0.01


def test_clinical_features_name_known_modalities_once_for_the_fusion_selection() -> None:
    cfg = RunConfig.from_mapping({"clinical": "fusion", "clinical-features": "mammography, radiomics"})
    assert cfg.clinical_feature_list == ("mammography", "radiomics")
    with pytest.raises(RunConfigError, match="'clinical-features' entry 'genomics'"):
        RunConfig(clinical="fusion", clinical_features="radiomics,genomics")
    with pytest.raises(RunConfigError, match="'clinical-features'.*twice"):
        RunConfig(clinical="fusion", clinical_features="radiomics,radiomics")
    with pytest.raises(RunConfigError, match="'clinical-features'.*needs clinical = 'fusion', not 'combined'"):
        RunConfig(clinical="combined", clinical_features="radiomics")


def test_personalisation_keys_are_checked_with_messages_naming_them() -> None:
    cfg = RunConfig.from_mapping({"personalise": "finetune", "personalise-epochs": "4, 1,2,2", "ditto-lambda": 0.5})
    assert (cfg.personalise, cfg.personalise_epoch_list, cfg.ditto_lambda) == ("finetune", (1, 2, 4), 0.5)
    for values, message in (
        ({"personalise": "fedper"}, "'personalise' = 'fedper': expected one of none, finetune, ditto"),
        ({"personalise": "finetune", "personalise-epochs": "1,two"}, "'personalise-epochs' = '1,two': expected a comma list of whole numbers"),
        ({"personalise": "finetune", "personalise-epochs": "0,2"}, "each >= 1"),
        ({"personalise": "finetune", "personalise-epochs": ""}, "at least one epoch count"),
        ({"personalise": "ditto", "cv-folds": 5}, "it needs cv-folds = 0"),
        ({"ditto-lambda": -1.0}, "'ditto-lambda' must be >= 0"),
    ):
        with pytest.raises(RunConfigError, match=message):
            RunConfig.from_mapping(values)
    assert RunConfig.from_mapping({"personalise-epochs": ""}).personalise == "none"  # the epochs matter only to fine-tuning


@pytest.mark.parametrize("path", sorted((ROOT / "experiments").rglob("*.toml")), ids=lambda p: str(p.relative_to(ROOT / "experiments")))
def test_every_experiment_preset_is_a_valid_run_config(path: Path) -> None:
    RunConfig.from_mapping(load_run_config_file(path))


def test_every_strategy_has_a_preset_valid_over_the_hetero_base() -> None:
    folder = ROOT / "experiments" / "strategies"
    base = load_run_config_file(ROOT / "experiments" / "hetero_compare.toml")
    configs = {path.stem: RunConfig.from_mapping(base | load_run_config_file(path)) for path in folder.glob("*.toml")}
    assert {cfg.strategy for cfg in configs.values()} == set(STRATEGIES)
    assert configs["scaffold"].optimizer == "sgd" and configs["fedavg_finetune"].personalise == "finetune" and configs["fedavg_ditto"].personalise == "ditto"
    assert all(name == cfg.strategy for name, cfg in configs.items() if cfg.personalise == "none")  # one file per strategy, named after it
