"""The typed protocol: every message and reply survives its record form, and malformed content is named."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from models.run_config import RunConfig
from protocol.messages import (
    ARRAYS, CONFIG, RUN, Describe, Evaluate, EvaluateReply, ProtocolError, SiteDescription, Train, TrainReply,
    array_digest, model_record_name, models_in,
)  # fmt: skip
from protocol.metrics import METRIC_LENGTHS, candidate_metric, split_candidate_metric

RUN_CFG = RunConfig(task="segmentation", segmenter="deeplabv3", image_size=48, num_rounds=3, seed=7)


def _model(value: float = 0.0) -> ArrayRecord:
    return ArrayRecord({"w": Array(np.full((2, 3), value, np.float32)), "n": Array(np.array(4, np.int64))})


@pytest.mark.parametrize(
    "message",
    [
        Describe(run=RUN_CFG),
        Train(run=RUN_CFG, server_round=5, stage_offset=3, proximal_mu=0.1, segmenters=(("unet", "ab12"), ("deeplabv3", "cd34"))),
        Evaluate(run=RUN_CFG, server_round=6, split="test", threshold=0.37, grad_cam="federated", candidates=("unet", "fusion-mean")),
        Train(run=RUN_CFG, server_round=2, personal=True),
        Evaluate(run=RUN_CFG, split="test", personalise=True),
    ],
)
def test_every_message_survives_its_record_form(message: Describe | Train | Evaluate) -> None:
    content = RecordDict(message.records(_model(), {"ab12": _model(1.0)}))
    assert type(message).from_content(content) == message
    assert set(content) == {RUN, CONFIG, ARRAYS, model_record_name("ab12")}
    assert set(models_in(content)) == {"ab12"} and dict(content[RUN]) == RUN_CFG.to_mapping()


def test_flowers_own_keys_are_read_from_the_config_record() -> None:
    content = RecordDict(Train(run=RUN_CFG).records(_model()))
    content[CONFIG]["server-round"], content[CONFIG]["proximal-mu"] = 9, 0.5  # what Flower's FedProx writes
    parsed = Train.from_content(content)
    assert (parsed.server_round, parsed.proximal_mu) == (9, 0.5)


def test_a_message_without_its_run_config_is_named() -> None:
    with pytest.raises(ProtocolError, match="'run' record"):
        Evaluate.from_content(RecordDict({CONFIG: ConfigRecord({"split": "val"})}))


def test_replies_survive_their_record_form() -> None:
    described = SiteDescription("a", "train", "f00d", "0.1.0", False, {"train": {0: 3, 1: 2}, "val": {0: 1, 1: 1}, "test": {0: 0, 1: 4}})
    content = described.to_content()
    assert SiteDescription.from_content(content) == described and set(content["site"]) == SiteDescription.KEYS
    metrics = {"num_examples": 5, "auc": 0.8, "auc_ci": [0.6, 0.9]}
    assert EvaluateReply.from_content(EvaluateReply(metrics).to_content()).metrics == metrics
    trained = TrainReply(_model(2.0), {"num_examples": 5, "train_loss": 0.3, "steps": 2}).to_content()
    assert set(trained) == {ARRAYS, "metrics"} and EvaluateReply.from_content(trained).metrics["steps"] == 2


def test_a_model_digest_names_its_content() -> None:
    assert array_digest(_model(1.0)) == array_digest(_model(1.0)) != array_digest(_model(2.0))
    renamed = ArrayRecord({"v": Array(np.full((2, 3), 1.0, np.float32)), "n": Array(np.array(4, np.int64))})
    assert array_digest(renamed) != array_digest(_model(1.0))


def test_metric_names_have_one_style_and_candidates_round_trip() -> None:
    assert all(name == name.lower() and "-" not in name for name in METRIC_LENGTHS)
    key = candidate_metric("fusion-union", "seg_dice")
    assert split_candidate_metric(key) == ("fusion-union", "seg_dice") and split_candidate_metric("auc") == ("", "auc")


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", "", "x" * 65, "a\\b"])
def test_a_handshake_naming_a_site_that_could_name_another_folder_is_refused(name: str) -> None:
    content = SiteDescription("ok", "train", "f", "v", False, {}).to_content()
    content.config_records["site"]["site"] = name
    with pytest.raises(ProtocolError, match="not a valid site name"):
        SiteDescription.from_content(content)
    assert SiteDescription.from_content(SiteDescription("hospital_a-2.b", "train", "f", "v", False, {}).to_content()).site == "hospital_a-2.b"


def test_a_personalising_evaluation_lets_the_personal_prefixes_through_and_no_other_does() -> None:
    asked = RecordDict(Evaluate(split="test", personalise=True, compare=(("static", "d1"),)).records())
    assert set(Evaluate.candidates_in(asked)) == {"vs:static", "personal", "vs:global"}
    assert set(Evaluate.candidates_in(RecordDict(Evaluate(split="test").records()))) == set()
