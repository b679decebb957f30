"""The privacy guard: replies breaking the policy are withheld, and every reply is logged at the site."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.app.metadata import Metadata

from client.app import app as client_app
from client.privacy_guard import audit_path, privacy_guard
from client.site_config import load_site_config
from models.run_config import RunConfig
from protocol.messages import POLICY_VIOLATION, SITE_FAILED, Describe, Evaluate, array_digest, model_record_name
from tests.conftest import make_site


def _incoming(kind: str, content: RecordDict) -> Message:
    meta = Metadata(
        run_id=1, message_id="m1", src_node_id=0, dst_node_id=7, reply_to_message_id="", group_id="1",
        created_at=0.0, ttl=60.0, message_type=kind,
    )
    return Message(metadata=meta, content=content)


def _model() -> ArrayRecord:
    return ArrayRecord({"w": Array(np.zeros((3, 2), np.float32)), "n": Array(np.zeros((), np.int64))})


def _guarded(
    site_yaml: Path, kind: str, reply_content: RecordDict, attached: dict[str, ArrayRecord] | None = None, config: ConfigRecord | None = None
) -> tuple[Message, list[dict]]:
    """Pass one message (the global model, plus ``attached`` records and its ``config``) through the guard around a handler answering ``reply_content``."""
    site = load_site_config(site_yaml)
    incoming = _incoming(kind, RecordDict({"arrays": _model(), **(attached or {}), "config": config or ConfigRecord({})}))
    context = Context(run_id=1, node_id=7, node_config={"site-config": str(site_yaml)}, state=RecordDict(), run_config={})
    reply = privacy_guard(lambda m, c: site)(incoming, context, lambda m, c: Message(reply_content, reply_to=m))
    log = [json.loads(l) for l in audit_path(site.output_dir).read_text().splitlines()]
    return reply, log


def test_a_model_update_and_scalar_metrics_leave_and_are_logged_without_values(tmp_path: Path) -> None:
    site = make_site(tmp_path, "a", n=6)
    arrays = ArrayRecord({"w": Array(np.ones((3, 2), np.float32)), "n": Array(np.ones((), np.int64))})
    reply, log = _guarded(site, MessageType.TRAIN, RecordDict({"arrays": arrays, "metrics": MetricRecord({"loss": 0.5, "auc_ci": [0.4, 0.9]})}))
    assert not reply.has_error()
    assert log[0]["blocked"] == [] and log[0]["records"]["arrays"]["arrays"]["w"] == ["float32", [3, 2]]
    assert log[0]["records"]["metrics"]["values"] == {"loss": 0.5, "auc_ci": [0.4, 0.9]}


def test_metrics_outside_the_protocol_are_withheld(tmp_path: Path) -> None:
    site = make_site(tmp_path, "a", n=6)
    for metrics, rule in (
        ({"case_id_hash": 0.5}, "metric 'case_id_hash' is not part of the protocol"),
        ({"auc_ci": [0.1, 0.2, 0.3]}, "not the protocol's 2"),
        ({"auc": [0.5, 0.6]}, "metric 'auc' is a list"),
        ({"hist_pos": 3.0}, "metric 'hist_pos' must be a list"),
        ({"unasked/seg_dice": 0.9}, "metric 'unasked/seg_dice' is not part of the protocol"),
        ({"vs:static/delong_p": 0.3}, "metric 'vs:static/delong_p' is not part of the protocol"),  # a comparison the message did not ask for
    ):
        reply, log = _guarded(site, MessageType.EVALUATE, RecordDict({"metrics": MetricRecord(metrics)}))
        assert reply.has_error() and rule in reply.error.reason, (metrics, reply.error.reason)
        assert log[-1]["blocked"]


def test_a_comparison_leaves_only_as_the_statistics_its_message_asked_for(tmp_path: Path) -> None:
    site = make_site(tmp_path, "a", n=6)
    asked = Evaluate(compare=(("static", "d1g3st"),)).config()
    reply, _ = _guarded(site, MessageType.EVALUATE, RecordDict({"metrics": MetricRecord({"auc": 0.7, "vs:static/delong_p": 0.3, "vs:static/idi": 0.01})}), config=asked)
    assert not reply.has_error()
    for metrics, rule in (
        ({"vs:tin/delong_p": 0.3}, "metric 'vs:tin/delong_p' is not part of the protocol"),
        ({"vs:static/case_scores": [0.1, 0.9]}, "per-case"),
    ):
        reply, log = _guarded(site, MessageType.EVALUATE, RecordDict({"metrics": MetricRecord(metrics)}), config=asked)
        assert reply.has_error() and rule in reply.error.reason, (metrics, reply.error.reason)


def test_feature_sums_leave_only_for_the_standardisers_asked_and_at_their_width(tmp_path: Path) -> None:
    site = make_site(tmp_path, "a", n=6)
    asked = Evaluate(split="train", moments=(("encoders.radiomics.standardise", "3"),)).config()
    prefix = "moments:encoders.radiomics.standardise"
    sums = {f"{prefix}/moment_n": [6, 6, 5], f"{prefix}/moment_sum": [1.0, 2.0, 3.0], f"{prefix}/moment_sumsq": [4.0, 5.0, 6.0], "num_examples": 6}
    reply, _ = _guarded(site, MessageType.EVALUATE, RecordDict({"metrics": MetricRecord(sums)}), config=asked)
    assert not reply.has_error()
    for metrics, config, rule in (
        ({f"{prefix}/moment_sum": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]}, asked, "must be a list of the 3 features"),  # as long as the cases: refused
        ({f"{prefix}/moment_sum": [1.0, 2.0, 3.0]}, Evaluate(split="train").config(), "not part of the protocol"),  # not asked
        ({"moments:encoders.other/moment_sum": [1.0, 2.0, 3.0]}, asked, "not part of the protocol"),
        ({"moment_sum": [1.0, 2.0, 3.0]}, asked, "must be a list of the ? features"),
    ):
        reply, _ = _guarded(site, MessageType.EVALUATE, RecordDict({"metrics": MetricRecord(metrics)}), config=config)
        assert reply.has_error() and rule in reply.error.reason, (metrics, reply.error.reason)


def test_segmenters_sent_along_never_go_back(tmp_path: Path) -> None:
    site = make_site(tmp_path, "a", n=6)
    segmenter = ArrayRecord({"conv": Array(np.zeros((4, 1, 3, 3), np.float32))})
    update = ArrayRecord({"w": Array(np.ones((3, 2), np.float32)), "n": Array(np.ones((), np.int64))})
    held = {model_record_name(array_digest(segmenter)): segmenter}
    reply, _ = _guarded(site, MessageType.TRAIN, RecordDict({"arrays": update}), held)
    assert not reply.has_error()  # the classifier's update, checked against the global classifier
    reply, log = _guarded(site, MessageType.TRAIN, RecordDict({"arrays": segmenter}), held)
    assert reply.has_error() and "differ in keys, shapes or dtypes from the global model" in reply.error.reason
    reply, log = _guarded(site, MessageType.TRAIN, RecordDict({"arrays": update, **held}), held)
    assert reply.has_error() and f"'{next(iter(held))}': a ArrayRecord may not leave the site" in reply.error.reason
    assert log[-1]["blocked"]


def test_per_case_scores_are_withheld_unless_the_site_opts_in(tmp_path: Path) -> None:
    per_case = RecordDict({"metrics": MetricRecord({"case_scores": [0.1, 0.7, 0.3, 0.9, 0.2]})})
    reply, log = _guarded(make_site(tmp_path, "a", n=6), MessageType.EVALUATE, per_case)
    assert reply.has_error() and reply.error.code == POLICY_VIOLATION
    assert "metric 'case_scores' is a list of 5 values" in reply.error.reason and log[0]["blocked"]
    opted_in = make_site(tmp_path, "b", n=6, extra_yaml="privacy:\n  share_case_predictions: true\n")
    reply, log = _guarded(opted_in, MessageType.EVALUATE, per_case)
    assert not reply.has_error() and log[0]["blocked"] == []


def test_arrays_outside_training_or_unlike_the_global_model_are_withheld(tmp_path: Path) -> None:
    site = make_site(tmp_path, "a", n=6)
    reply, _ = _guarded(site, MessageType.EVALUATE, RecordDict({"arrays": _model()}))
    assert reply.has_error() and "model arrays in the reply to a evaluate message" in reply.error.reason
    extra = ArrayRecord({"w": Array(np.ones((3, 2), np.float32)), "n": Array(np.ones((), np.int64)), "x": Array(np.ones(4, np.float32))})
    reply, _ = _guarded(site, MessageType.TRAIN, RecordDict({"arrays": extra}))
    assert reply.has_error() and "differ in keys, shapes or dtypes" in reply.error.reason


def test_handshake_strings_with_paths_or_unknown_keys_are_withheld(tmp_path: Path) -> None:
    site = make_site(tmp_path, "a", n=6)
    reply, _ = _guarded(site, MessageType.QUERY, RecordDict({"site": ConfigRecord({"site": "a", "manifest": "/data/a.csv"})}))
    assert reply.has_error() and "handshake key 'manifest'" in reply.error.reason
    reply, _ = _guarded(site, MessageType.QUERY, RecordDict({"site": ConfigRecord({"site": "/data/a"})}))
    assert reply.has_error() and "handshake 'site' contains a path" in reply.error.reason


def test_the_client_app_logs_its_real_replies(tmp_path: Path) -> None:
    site_yaml = make_site(tmp_path, "a", n=8)
    context = Context(run_id=1, node_id=7, node_config={"site-config": str(site_yaml)}, state=RecordDict(), run_config={})
    reply = client_app(_incoming(MessageType.QUERY, RecordDict(Describe(run=RunConfig(image_size=32)).records())), context)
    assert not reply.has_error()
    log = [json.loads(l) for l in audit_path(load_site_config(site_yaml).output_dir).read_text().splitlines()]
    assert log[-1]["kind"] == "query" and log[-1]["records"]["site"]["values"]["site"] == "a"


def test_an_exception_in_the_handler_leaves_only_its_class_name_and_is_audited(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    site_yaml = make_site(tmp_path, "a", n=6)
    site = load_site_config(site_yaml)
    secret = f"cannot read {tmp_path}/images/patient-0042.png for case MRN-0042"

    def failing(message: Message, context: Context) -> Message:
        raise OSError(secret)

    incoming = _incoming(MessageType.TRAIN, RecordDict({"arrays": _model(), "config": ConfigRecord({})}))
    context = Context(run_id=1, node_id=7, node_config={"site-config": str(site_yaml)}, state=RecordDict(), run_config={})
    with caplog.at_level("ERROR", logger="axilla.client"):
        reply = privacy_guard(lambda m, c: site)(incoming, context, failing)
    assert reply.has_error() and reply.error.code == SITE_FAILED
    assert reply.error.reason == "the site failed on this message (OSError); its log has the details"
    assert "MRN-0042" not in reply.error.reason and "/" not in reply.error.reason
    assert secret in caplog.text  # in full at the site
    (entry,) = [json.loads(l) for l in audit_path(site.output_dir).read_text().splitlines()]
    assert entry["error"]["code"] == SITE_FAILED and "MRN" not in json.dumps(entry)


def test_a_site_data_error_without_a_public_form_sends_only_a_fixed_sentence() -> None:
    from client.errors import UNSPECIFIED, SiteDataError
    from client.work import refusal

    private = SiteDataError("cannot open /data/hospital/MRN-0042.png")
    assert private.public == UNSPECIFIED and refusal(private) == (4001, UNSPECIFIED)
    fact = SiteDataError.public_fact("this site is external and never trains")
    assert refusal(fact) == (4001, "this site is external and never trains")


def test_a_clinical_reply_may_hold_only_the_aggregates_its_request_fixes() -> None:
    from client.privacy_guard import policy_violations
    from protocol.clinical import CLINICAL, ClinicalQuery, Design, Spec, Variable

    design = Design((Variable("age", "continuous", ()), Variable("her2", "binary", ("0", "1"))))
    query = ClinicalQuery(job="moments", split="train", spec=Spec(design=design).to_json())
    incoming = _incoming(CLINICAL, RecordDict(query.records()))
    sums = {f"g{g}/{k}": v for g in (0, 1) for k, v in (("n", 12), ("sum", [12.0, 600.0, 3.0]), ("cross", [1.0] * 9))}
    assert policy_violations(incoming, Message(RecordDict({"metrics": MetricRecord(sums)}), reply_to=incoming)) == []
    ages = [float(a) for a in range(40, 52)]  # one value per case: never part of a clinical reply
    extra = Message(RecordDict({"metrics": MetricRecord(sums | {"g0/ages": ages})}), reply_to=incoming)
    assert policy_violations(incoming, extra) == ["clinical metric 'g0/ages' is not part of the moments job's reply"]
    longer = Message(RecordDict({"metrics": MetricRecord(sums | {"g1/sum": ages})}), reply_to=incoming)
    assert policy_violations(incoming, longer) == ["clinical metric 'g1/sum' must be a list of 3 numbers"]
    schema = Message(RecordDict({"metrics": MetricRecord(sums), "schema": ConfigRecord({"variables": "[]", "rows": "1,2"})}), reply_to=incoming)
    assert policy_violations(incoming, schema) == ["schema keys ['rows', 'variables'] are not part of the protocol"]


def test_a_clinical_reply_with_image_feature_sums_of_another_width_than_the_request_names_is_withheld() -> None:
    from client.privacy_guard import policy_violations
    from protocol.clinical import CLINICAL, ClinicalQuery, Design, FeatureBlock, Spec, Variable

    block = FeatureBlock("radiomics", ("radiomics_cc_firstorder_mean", "radiomics_mlo_firstorder_mean"))
    design = Design((Variable("age", "continuous", ()),), signature=True, features=(block,))  # intercept, age, dl_signature, 2 features
    query = ClinicalQuery(job="moments", split="train", spec=Spec(design=design).to_json())
    incoming = _incoming(CLINICAL, RecordDict(query.records()))
    sums = {f"g{g}/{k}": v for g in (0, 1) for k, v in (("n", 12), ("sum", [12.0] * 5), ("cross", [1.0] * 25))}
    assert policy_violations(incoming, Message(RecordDict({"metrics": MetricRecord(sums)}), reply_to=incoming)) == []
    wider = sums | {"g0/sum": [12.0] * 6, "g0/cross": [1.0] * 36}  # a third feature the request did not name
    violations = policy_violations(incoming, Message(RecordDict({"metrics": MetricRecord(wider)}), reply_to=incoming))
    assert violations == ["clinical metric 'g0/sum' must be a list of 5 numbers", "clinical metric 'g0/cross' must be a list of 25 numbers"]
    per_case = sums | {"g1/radiomics_cc_firstorder_mean": [0.1] * 12}  # one value per case: never part of a reply
    assert policy_violations(incoming, Message(RecordDict({"metrics": MetricRecord(per_case)}), reply_to=incoming)) == [
        "clinical metric 'g1/radiomics_cc_firstorder_mean' is not part of the moments job's reply"
    ]


def test_personalised_metrics_leave_only_when_the_message_asked_and_never_as_arrays(tmp_path: Path) -> None:
    site = make_site(tmp_path, "a", n=6)
    personal = {"auc": 0.7, "personal/auc": 0.8, "personal/auc_ci": [0.6, 0.9], "personal/epochs": 2, "vs:global/delong_p": 0.3}
    asked = Evaluate(split="test", personalise=True).config()
    reply, _ = _guarded(site, MessageType.EVALUATE, RecordDict({"metrics": MetricRecord(personal)}), config=asked)
    assert not reply.has_error()
    reply, _ = _guarded(site, MessageType.EVALUATE, RecordDict({"metrics": MetricRecord(personal)}), config=Evaluate(split="test").config())
    assert reply.has_error() and "metric 'personal/auc' is not part of the protocol" in reply.error.reason
    assert "metric 'vs:global/delong_p' is not part of the protocol" in reply.error.reason
    tuned = ArrayRecord({"w": Array(np.ones((3, 2), np.float32)), "n": Array(np.ones((), np.int64))})  # the personalised model, shaped like the global one
    reply, log = _guarded(site, MessageType.EVALUATE, RecordDict({"personal": tuned, "metrics": MetricRecord(personal)}), config=asked)
    assert reply.has_error() and "'personal': model arrays in the reply to a evaluate message" in reply.error.reason
    assert log[-1]["blocked"]
