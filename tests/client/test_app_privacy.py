"""What leaves a site: every kind of ClientApp reply holds only model arrays and scalar metrics.

The handshake adds the site's self-description (name, role, counts, fingerprint, version);
errors carry a reason without file paths or case ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.app.metadata import Metadata

from client.app import evaluate, query, train
from evaluation.roc_band import ROC_GRID
from evaluation.thresholds import HIST_BINS
from models.run_config import RunConfig
from models.task import task_for
from tests.conftest import make_site

CFG = RunConfig(image_size=32, local_epochs=1)
HANDSHAKE_KEYS = {
    "site", "role", "fingerprint", "version", "share-case-predictions",
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


def _config(**extra: Any) -> ConfigRecord:
    return ConfigRecord(CFG.to_mapping() | extra)


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

    hello = query(_incoming(MessageType.QUERY, RecordDict({"config": _config()})), context)
    assert not hello.has_error()
    assert set(hello.content.keys()) == {"site"} and set(hello.content["site"].keys()) == HANDSHAKE_KEYS
    assert hello.content["site"]["site"] == "alpha" and hello.content["site"]["n-train-pos"] > 0
    _assert_no_identifiers(hello, tmp_path)

    global_arrays = _global_arrays()
    trained = train(
        _incoming(MessageType.TRAIN, RecordDict({"arrays": global_arrays, "config": _config(**{"server-round": 1})})), context
    )
    assert not trained.has_error()
    assert set(trained.content.keys()) == {"arrays", "metrics"}
    assert isinstance(trained.content["arrays"], ArrayRecord) and isinstance(trained.content["metrics"], MetricRecord)
    assert list(trained.content["arrays"].keys()) == list(global_arrays.keys())
    assert trained.content["metrics"]["num-examples"] == hello.content["site"]["n-train-pos"] + hello.content["site"]["n-train-neg"]
    _assert_scalar_metrics(trained.content["metrics"])
    _assert_no_identifiers(trained, tmp_path)

    for split in ("val", "test"):
        evaluated = evaluate(
            _incoming(MessageType.EVALUATE, RecordDict({"arrays": trained.content["arrays"], "config": _config(split=split, threshold=0.4)})),
            context,
        )
        assert set(evaluated.content.keys()) == {"metrics"}
        metrics = evaluated.content["metrics"]
        _assert_scalar_metrics(metrics)
        assert metrics["threshold"] == pytest.approx(0.4)
        assert sum(metrics["hist-pos"]) + sum(metrics["hist-neg"]) == metrics["n"]
        _assert_no_identifiers(evaluated, tmp_path)


def test_segmentation_and_pipeline_replies_hold_only_arrays_and_scalar_metrics(tmp_path: Path) -> None:
    site = make_site(tmp_path, "alpha", n=24, masks=True)
    context = _context(site)
    seg_cfg = CFG.replace(task="segmentation", segmenter="unet", seg_image_size=32)
    segmenter = ArrayRecord(task_for(seg_cfg).build_model(seg_cfg).state_dict())
    trained = train(_incoming(MessageType.TRAIN, RecordDict({"arrays": segmenter, "config": ConfigRecord(seg_cfg.to_mapping() | {"server-round": 1})})), context)
    assert set(trained.content.keys()) == {"arrays", "metrics"}
    assert list(trained.content["arrays"].keys()) == list(segmenter.keys())
    fused = evaluate(
        _incoming(MessageType.EVALUATE, RecordDict({"seg:unet": trained.content["arrays"], "config": ConfigRecord(
            CFG.replace(segmenters="unet", task="segmentation", seg_image_size=32).to_mapping() | {"split": "test", "candidates": "unet,fusion-union"})})),
        context,
    )
    assert set(fused.content.keys()) == {"metrics"} and fused.content["metrics"]["fusion-union/seg-n"] > 0
    assert fused.content["metrics"]["unet/seg-n"] == fused.content["metrics"]["fusion-union/seg-n"]
    _assert_scalar_metrics(fused.content["metrics"])
    crops = CFG.replace(segmenters="unet", lesion_crop="predicted", seg_image_size=32)
    classifier = _global_arrays()
    content = RecordDict({"arrays": classifier, "seg:unet": trained.content["arrays"], "config": ConfigRecord(crops.to_mapping() | {"server-round": 2})})
    on_crops = train(_incoming(MessageType.TRAIN, content), context)
    assert set(on_crops.content.keys()) == {"arrays", "metrics"}  # the segmenter it cropped with is not sent back
    assert list(on_crops.content["arrays"].keys()) == list(classifier.keys())
    for reply in (trained, fused, on_crops):
        _assert_scalar_metrics(next(iter(reply.content.metric_records.values())))
        _assert_no_identifiers(reply, tmp_path)


def test_broken_site_refuses_without_leaking_paths_or_ids(tmp_path: Path) -> None:
    def break_row(rows: list[dict[str, str]]) -> None:
        rows[4]["image"] = "images/missing-scan.png"

    site = make_site(tmp_path, "alpha", n=12, rows=break_row)
    reply = query(_incoming(MessageType.QUERY, RecordDict({"config": _config()})), _context(site))
    assert reply.has_error() and "row 6" in reply.error.reason and "not found" in reply.error.reason
    _assert_no_identifiers(reply, tmp_path)
    assert "missing-scan" not in reply.error.reason


def test_external_site_never_trains(tmp_path: Path) -> None:
    site = make_site(tmp_path, "alpha", role="external", n=10)
    reply = train(_incoming(MessageType.TRAIN, RecordDict({"arrays": _global_arrays(), "config": _config()})), _context(site))
    assert reply.has_error() and "external" in reply.error.reason


def test_trained_weights_move_and_fedprox_keeps_them_closer(tmp_path: Path) -> None:
    site = make_site(tmp_path, "alpha", n=24)
    start = _global_arrays()
    flat0 = torch.cat([t.float().flatten() for k, t in start.to_torch_state_dict().items() if "running" not in k and "num_batches" not in k])

    def distance(mu: float) -> float:
        config = _config(**{"server-round": 1, "proximal-mu": mu, "lr": 0.05})
        out = train(_incoming(MessageType.TRAIN, RecordDict({"arrays": start, "config": config})), _context(site))
        state = out.content["arrays"].to_torch_state_dict()
        flat = torch.cat([t.float().flatten() for k, t in state.items() if "running" not in k and "num_batches" not in k])
        return float((flat - flat0).norm())

    free, anchored = distance(0.0), distance(50.0)
    assert free > 0 and np.isfinite(free)
    assert anchored < free
