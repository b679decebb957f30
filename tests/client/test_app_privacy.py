"""What leaves a site: every kind of ClientApp reply holds only model arrays and scalar metrics.

The handshake adds the site's self-description (name, role, counts, fingerprint, version);
errors carry a reason without file paths or case ids.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.app.metadata import Metadata

from client.app import evaluate, query, train
from evaluation.roc_band import ROC_GRID
from evaluation.thresholds import HIST_BINS
from models.run_config import RunConfig
from models.task import task_for
from protocol.messages import MISSING_MODEL, Describe, Evaluate, Instruction, Train, wire_model
from protocol.packing import layout_of, packed_keys, unpack
from tests.conftest import make_site

CFG = RunConfig(image_size=32, local_epochs=1)
HANDSHAKE_KEYS = {
    "site", "role", "fingerprint", "version", "share-case-predictions", "dp",
    *(f"n-{s}-{c}" for s in ("train", "val", "test") for c in ("pos", "neg")),
}


def _incoming(kind: str, content: RecordDict) -> Message:
    """A message as the server would deliver it to the node."""
    meta = Metadata(
        run_id=1, message_id="m1", src_node_id=0, dst_node_id=7, reply_to_message_id="", group_id="1",
        created_at=0.0, ttl=60.0, message_type=kind,
    )
    return Message(metadata=meta, content=content)


def _context(site_yaml: Path) -> Context:
    return Context(run_id=1, node_id=7, node_config={"site-config": str(site_yaml)}, state=RecordDict(), run_config={})


def _message(instruction: Instruction, arrays: ArrayRecord | None = None, held: dict[str, ArrayRecord] | None = None) -> Message:
    """A protocol message as the server builds it, delivered to the node."""
    return _incoming(instruction.kind, RecordDict(instruction.records(arrays, held)))


def _model(reply: Message, like: ArrayRecord) -> ArrayRecord:
    """The model a training reply holds, unpacked as the server does, for a model laid out ``like``."""
    return unpack(reply.content["arrays"], layout_of(like))


def _global_arrays() -> ArrayRecord:
    return ArrayRecord(task_for(CFG).build_model(CFG).state_dict())


def _strings(reply: Message) -> list[str]:
    """Every string value anywhere in a reply (records and error)."""
    out = [str(reply.error.reason)] if reply.has_error() else []
    if not reply.has_error():
        for record in reply.content.values():
            if isinstance(record, (ConfigRecord, MetricRecord)):
                out += [v for v in record.values() if isinstance(v, str)]
                out += [x for v in record.values() if isinstance(v, list) for x in v if isinstance(x, str)]
    return out


def _assert_no_identifiers(reply: Message, root: Path) -> None:
    for text in _strings(reply):
        assert str(root) not in text and "/" not in text, f"a path left the site: {text!r}"
        assert "alpha-0" not in text, f"a case id left the site: {text!r}"


FIXED_LENGTHS = {2, HIST_BINS, len(ROC_GRID)}  # CIs, score histograms, the ROC band's FPR grid


def _assert_scalar_metrics(record: MetricRecord) -> None:
    """Scalars, or lists whose length is fixed by the protocol and never by the number of cases."""
    for key, value in record.items():
        if isinstance(value, list):
            assert all(isinstance(x, (int, float)) for x in value), f"metric {key} holds non-numbers"
            assert len(value) in FIXED_LENGTHS, f"metric {key} has {len(value)} entries: per-case values?"
        else:
            assert isinstance(value, (int, float)), f"metric {key} is not a scalar"


@pytest.mark.parametrize("n_cases", [24, 40])
def test_every_reply_kind_holds_only_arrays_and_scalar_metrics(tmp_path: Path, n_cases: int) -> None:
    site = make_site(tmp_path, "alpha", n=n_cases)
    assert "share_case_predictions" not in site.read_text()  # the default: the site did not opt in
    context = _context(site)

    hello = query(_message(Describe(run=CFG)), context)
    assert not hello.has_error()
    assert set(hello.content.keys()) == {"site"} and set(hello.content["site"].keys()) == HANDSHAKE_KEYS
    assert hello.content["site"]["site"] == "alpha" and hello.content["site"]["n-train-pos"] > 0
    _assert_no_identifiers(hello, tmp_path)

    global_arrays = _global_arrays()
    trained = train(_message(Train(run=CFG, server_round=1), global_arrays), context)
    assert not trained.has_error()
    assert set(trained.content.keys()) == {"arrays", "metrics"}
    assert isinstance(trained.content["arrays"], ArrayRecord) and isinstance(trained.content["metrics"], MetricRecord)
    assert list(trained.content["arrays"].keys()) == list(packed_keys(layout_of(global_arrays)))  # the model, packed
    assert trained.content["metrics"]["num_examples"] == hello.content["site"]["n-train-pos"] + hello.content["site"]["n-train-neg"]
    _assert_scalar_metrics(trained.content["metrics"])
    _assert_no_identifiers(trained, tmp_path)

    for split in ("val", "test"):
        evaluated = evaluate(_message(Evaluate(run=CFG, split=split, threshold=0.4), _model(trained, global_arrays)), context)
        assert set(evaluated.content.keys()) == {"metrics"}
        metrics = evaluated.content["metrics"]
        _assert_scalar_metrics(metrics)
        assert metrics["threshold"] == pytest.approx(0.4)
        assert sum(metrics["hist_pos"]) + sum(metrics["hist_neg"]) == metrics["n"]
        _assert_no_identifiers(evaluated, tmp_path)


def test_segmentation_and_pipeline_replies_hold_only_arrays_and_scalar_metrics(tmp_path: Path) -> None:
    site = make_site(tmp_path, "alpha", n=24, masks=True)
    context = _context(site)
    seg_cfg = CFG.replace(task="segmentation", segmenter="unet", seg_image_size=32, segmenters="unet")
    segmenter = ArrayRecord(task_for(seg_cfg).build_model(seg_cfg).state_dict())
    trained = train(_message(Train(run=seg_cfg, server_round=1), segmenter), context)
    assert set(trained.content.keys()) == {"arrays", "metrics"}
    assert list(trained.content["arrays"].keys()) == list(packed_keys(layout_of(segmenter)))
    digest, wired = wire_model(_model(trained, segmenter))
    assert wired.keys() == trained.content["arrays"].keys()
    refs = (("unet", digest),)
    # The segmenter travels once, as a model for the site to hold ...
    fused = evaluate(
        _message(Evaluate(run=seg_cfg, split="test", candidates=("unet", "fusion-union"), segmenters=refs), held={digest: wired}),
        context,
    )
    assert set(fused.content.keys()) == {"metrics"} and fused.content["metrics"]["fusion-union/seg_n"] > 0
    assert fused.content["metrics"]["unet/seg_n"] == fused.content["metrics"]["fusion-union/seg_n"]
    _assert_scalar_metrics(fused.content["metrics"])
    # ... and later messages refer to it by digest only.
    crops = CFG.replace(segmenters="unet", lesion_crop="predicted", seg_image_size=32)
    classifier = _global_arrays()
    on_crops = train(_message(Train(run=crops, server_round=2, segmenters=refs), classifier), context)
    assert not on_crops.has_error(), on_crops.error
    assert set(on_crops.content.keys()) == {"arrays", "metrics"}  # the segmenter it cropped with is not sent back
    assert list(on_crops.content["arrays"].keys()) == list(packed_keys(layout_of(classifier)))
    for reply in (trained, fused, on_crops):
        _assert_scalar_metrics(next(iter(reply.content.metric_records.values())))
        _assert_no_identifiers(reply, tmp_path)


def test_a_model_the_site_does_not_hold_is_refused_by_name(tmp_path: Path) -> None:
    site = make_site(tmp_path, "alpha", n=12, masks=True)
    crops = CFG.replace(segmenters="unet", lesion_crop="predicted", seg_image_size=32)
    reply = train(_message(Train(run=crops, server_round=1, segmenters=(("unet", "0" * 24),)), _global_arrays()), _context(site))
    assert reply.has_error() and reply.error.code == MISSING_MODEL and "0" * 24 in reply.error.reason
    _assert_no_identifiers(reply, tmp_path)


def test_broken_site_refuses_without_leaking_paths_or_ids(tmp_path: Path) -> None:
    def break_row(rows: list[dict[str, str]]) -> None:
        rows[4]["image"] = "images/missing-scan.png"

    site = make_site(tmp_path, "alpha", n=12, rows=break_row)
    reply = query(_message(Describe(run=CFG)), _context(site))
    assert reply.has_error() and "row 6" in reply.error.reason and "not found" in reply.error.reason
    _assert_no_identifiers(reply, tmp_path)
    assert "missing-scan" not in reply.error.reason


def test_external_site_never_trains(tmp_path: Path) -> None:
    site = make_site(tmp_path, "alpha", role="external", n=10)
    reply = train(_message(Train(run=CFG), _global_arrays()), _context(site))
    assert reply.has_error() and "external" in reply.error.reason


def test_trained_weights_move_and_fedprox_keeps_them_closer(tmp_path: Path) -> None:
    site = make_site(tmp_path, "alpha", n=24)
    start = _global_arrays()
    flat0 = torch.cat([t.float().flatten() for k, t in start.to_torch_state_dict().items() if "running" not in k and "num_batches" not in k])

    def distance(mu: float) -> float:
        out = train(_message(Train(run=CFG.replace(lr=0.05), server_round=1, proximal_mu=mu), start), _context(site))
        state = _model(out, start).to_torch_state_dict()
        flat = torch.cat([t.float().flatten() for k, t in state.items() if "running" not in k and "num_batches" not in k])
        return float((flat - flat0).norm())

    free, anchored = distance(0.0), distance(50.0)
    assert free > 0 and np.isfinite(free)
    assert anchored < free
