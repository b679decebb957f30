"""A site's work for each kind of message, as one plain function of the message content (no Flower app).

The ClientApp calls it in its own process, or a long-lived site worker calls it (``client/worker.py``)
so that torch, MONAI and the site's data are loaded once. Torch is imported only for training and
evaluation: the handshake reads the manifest and never decodes an image.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from typing import Any

from flwr.app import RecordDict

from client.errors import SiteDataError
from client.model_store import MissingModelError, ModelStore
from client.node_site import LocalSite, node_site
from client.version import axilla_version
from protocol.messages import (
    ARRAYS, EVALUATE, MISSING_MODEL, QUERY, SITE_DATA_ERROR, TRAIN,
    Evaluate, EvaluateReply, Instruction, ProtocolError, SiteDescription, Train, TrainReply, models_in,
)  # fmt: skip
from protocol.clinical import CLINICAL, SCHEMA, ClinicalQuery, schema_json
from protocol.registry import INSTRUCTIONS
from protocol.packing import Layout, PackingError, layout_of, pack, unpack
from models.run_config import RunConfig

__all__ = ["MissingModelError", "ProtocolError", "SiteDataError", "crop_digest", "refusal", "run_work"]


def run_work(kind: str, content: RecordDict, node_config: Mapping[str, Any]) -> RecordDict:
    """Answer one message: its reply's content.

    Raises ``SiteDataError`` (unusable config or data), ``MissingModelError`` (a referred model is
    not held here) or ``ProtocolError`` (a malformed message); the ClientApp turns each into an
    error reply that holds no path.
    """
    if kind not in INSTRUCTIONS:
        raise ProtocolError(f"no work for a '{kind}' message")
    instruction = INSTRUCTIONS[kind].from_content(content)
    site = node_site(node_config, instruction.run.to_mapping())
    if kind == QUERY:
        return describe(site).to_content()
    store = ModelStore(site.output_dir)
    for digest, record in models_in(content).items():
        store.put(digest, record)
    if kind == TRAIN:
        assert isinstance(instruction, Train)
        return _train(site, instruction, content, store)
    if kind == CLINICAL:
        assert isinstance(instruction, ClinicalQuery)
        return _clinical(site, instruction, store)
    assert kind == EVALUATE and isinstance(instruction, Evaluate)
    return _evaluate(site, instruction, content, store)


def refusal(err: BaseException) -> tuple[int, str] | None:
    """The error reply (code, path-free reason) for a refusal ``run_work`` raises on purpose; None for any other error."""
    if isinstance(err, SiteDataError):
        return SITE_DATA_ERROR, err.public
    if isinstance(err, MissingModelError):
        return MISSING_MODEL, str(err)  # names only the model's digest
    if isinstance(err, ProtocolError):
        return SITE_DATA_ERROR, f"malformed message: {err}"
    return None


def describe(site: LocalSite) -> SiteDescription:
    """The handshake answer, from the manifest alone (``site_index``): no image is decoded."""
    from client.site_index import site_index

    indexes = [site_index(config) for config in site.members]
    counts = {split: {label: sum(i.counts.get(split, {}).get(label, 0) for i in indexes) for label in (0, 1)} for split in ("train", "val", "test")}
    fingerprint = indexes[0].fingerprint if len(indexes) == 1 else hashlib.sha256("".join(i.fingerprint for i in indexes).encode()).hexdigest()[:16]
    config = site.config
    dp = any(member.privacy.dp.enabled for member in site.members)
    return SiteDescription(site.name, config.role, fingerprint, axilla_version(), config.privacy.share_case_predictions, counts, dp)


def crop_digest(refs: tuple[tuple[str, str], ...]) -> str:
    """A digest of a set of (name, model digest) segmenters: which crops they cut (the crop cache's key)."""
    return hashlib.sha256(",".join(f"{n}={d}" for n, d in sorted(refs)).encode()).hexdigest()[:16] if refs else ""


@functools.lru_cache(maxsize=16)
def model_layout(cfg: RunConfig) -> Layout:
    """The layout (tensor names, dtypes, shapes) of the run's model, built on the meta device (no weights)."""
    import torch

    from models.task import build_network

    with torch.device("meta"):
        return layout_of(build_network(cfg).state_dict())


def unpacked(record: Any, cfg: RunConfig, what: str) -> dict[str, Any]:
    """A packed model record as a state dict for the model of ``cfg``; ``ProtocolError`` if it does not fit."""
    try:
        return unpack(record, model_layout(cfg)).to_torch_state_dict()
    except PackingError as err:
        raise ProtocolError(f"{what}: {err}") from None


def segmenter_states(instruction: Instruction, store: ModelStore) -> tuple[dict[str, Any], str]:
    """The segmenters a message refers to, as state dicts by name, and the digest of the set."""
    from models.stages import segmenter_config

    run = instruction.run
    states = {name: unpacked(store.get(digest), segmenter_config(run, name), f"held model {digest}") for name, digest in instruction.segmenters}
    return states, crop_digest(instruction.segmenters)


def _model_state(content: RecordDict, kind: str, cfg: RunConfig) -> dict[str, Any]:
    """The state dict of the message's model."""
    if ARRAYS not in content.array_records:
        raise ProtocolError(f"a {kind} message must carry the '{ARRAYS}' record")
    return unpacked(content.array_records[ARRAYS], cfg, f"the '{ARRAYS}' record")


def _train(site: LocalSite, message: Train, content: RecordDict, store: ModelStore) -> RecordDict:
    """Train the received model on the node's training split."""
    from flwr.app import ArrayRecord

    from client.site import node_data, train_round

    if not site.config.trains:
        raise SiteDataError.public_fact("this site is external and never trains")
    states, digest = segmenter_states(message, store)
    data = node_data(site, message.run, states, digest)
    state = _site_state(site, message, content, TRAIN)
    fedbn = message.run.strategy == "fedbn"
    control = None
    if message.run.strategy == "scaffold":
        from client.scaffold import SiteControl

        control = SiteControl.of(site.output_dir, message, content)
    new_state, metrics = train_round(
        data, state, message.run, message.server_round, message.proximal_mu, message.stage_offset, message.total_rounds, message.model,
        correction=control.correction() if control is not None else None,
    )  # fmt: skip
    if message.personal and message.run.personalise == "ditto" and not data.config.privacy.dp.enabled:
        _ditto(data, message, state)
    if message.run.central_dp == "client-clipping":  # central DP: the update leaves this site clipped
        import torch

        from strategies.central_dp import clip_update

        received = {k: v.numpy() for k, v in state.items()}
        clipped = clip_update({k: v.numpy() for k, v in new_state.items()}, received, message.run.central_dp_clipping_norm)
        new_state = {k: torch.from_numpy(v) for k, v in clipped.items()}
    if fedbn:  # the normalisation entries stay here
        from client.fedbn import keep_norms

        new_state = keep_norms(new_state, site.output_dir, message, message.model)
    change = None
    if control is not None:  # SCAFFOLD: c_i kept here, its change sent
        change = control.update(state, new_state, int(metrics["steps"]), message.run.round_lr(message.server_round - message.stage_offset))
    return TrainReply(pack(ArrayRecord(new_state)), metrics, change).to_content()


def _evaluate(site: LocalSite, message: Evaluate, content: RecordDict, store: ModelStore) -> RecordDict:
    """Evaluate the received model (or each segmentation candidate) on one split (under FedBN, with the site's own normalisation state if it trained the model)."""
    from client.site import evaluate_candidates, evaluate_split, model_for, node_data

    states, digest = segmenter_states(message, store)
    data = node_data(site, message.run, states, digest)
    if message.candidates:
        metrics = evaluate_candidates(data, message.run, states, list(message.candidates), message.split)
    elif message.moments:
        from client.feature_moments import feature_moments

        if message.split != "train" or not site.config.trains:
            raise ProtocolError("feature sums are asked of a training site's training split only")
        model = model_for(message.run, _model_state(content, EVALUATE, message.run))  # the stage's initial model, before any training
        try:
            metrics = feature_moments(data, model, message.run, {name: int(width) for name, width in message.moments})
        except ValueError as err:
            raise ProtocolError(str(err)) from None
    else:
        model = model_for(message.run, _site_state(site, message, content, EVALUATE))
        metrics = evaluate_split(data, model, message.run, message.split, message.threshold, message.grad_cam)
        if message.compare:
            metrics.update(_comparisons(site, message, data, model, store))
        if message.personalise and message.split == "test" and site.config.trains:
            metrics.update(_personalised(data, message, model))
    return EvaluateReply(metrics).to_content()


def _ditto(data: Any, message: Train, global_state: dict[str, Any]) -> None:
    """Ditto: update this site's personal model (from the global one at first) against the arriving global model, and store it here."""
    from client.personal import ditto_update
    from client.personal_store import PersonalStore
    from client.site import site_salt, model_for

    cfg, store = message.run, PersonalStore(data.config.output_dir)
    held = store.load(cfg, message.stage_offset, model_layout(cfg))
    personal = model_for(cfg, held if held is not None else global_state)
    seed = cfg.seed * 100_003 + message.server_round * 1009 + site_salt(data.config.site) + 1
    state = ditto_update(data, personal, global_state, cfg, message.server_round - message.stage_offset, seed)
    store.save(cfg, message.stage_offset, model_layout(cfg), state)


def _personalised(data: Any, message: Evaluate, global_model: Any) -> dict[str, float]:
    """The personalised model's test metrics (``personal/<metric>``) and its paired comparison with the global one (``vs:global/<statistic>``).

    Fine-tuned here (epochs chosen on validation) or Ditto's stored model; none at a DP site (it would spend
    privacy budget), without training or validation cases to fine-tune with, or where no personal model is held.
    The model itself stays here.
    """
    from client.personal import finetune
    from client.personal_store import PersonalStore
    from client.site import site_salt, compare_models, evaluate_split, model_for
    from protocol.messages import PERSONAL, PERSONAL_VS, comparison_prefix
    from protocol.metrics import COMPARISON_METRICS, candidate_metric

    cfg = message.run
    if data.config.privacy.dp.enabled:
        return {}
    extra: dict[str, float] = {}
    if cfg.personalise == "finetune":
        if not (len(data.splits["train"]) and len(data.splits["val"])):  # nothing to fine-tune on, or to choose the epochs with
            return {}
        personal, epochs, _ = finetune(data, global_model, cfg, cfg.seed * 100_003 + site_salt(data.config.site) + 7)
        extra["epochs"] = epochs
    else:
        held = PersonalStore(data.config.output_dir).load(cfg, message.stage_offset, model_layout(cfg))
        if held is None:
            return {}
        personal = model_for(cfg, held)
    metrics = evaluate_split(data, personal, cfg, "test", message.threshold) | extra
    out = {candidate_metric(PERSONAL, key): value for key, value in metrics.items()}
    rows = compare_models({"": (data, personal, cfg), PERSONAL_VS: (data, global_model, cfg)}, "test", reference="")
    out.update({candidate_metric(comparison_prefix(PERSONAL_VS), key): float(row[key]) for row in rows for key in COMPARISON_METRICS if key in row})
    return out


def _site_state(site: LocalSite, message: Train | Evaluate, content: RecordDict, kind: str) -> dict[str, Any]:
    """The state dict of the model a message carries; under FedBN, with the site's kept normalisation entries (if any)."""
    state = _model_state(content, kind, message.run)
    if message.run.strategy != "fedbn":
        return state
    from client.fedbn import with_local_norms

    return with_local_norms(state, site.output_dir, message, message.model, training=kind == TRAIN)


def _comparisons(site: LocalSite, message: Evaluate, data: Any, model: Any, store: ModelStore) -> dict[str, float]:
    """The evaluated model's paired comparisons with each held model the message names, as ``vs:<stage>/<statistic>`` metrics.

    Each compared model is an earlier stage of the same plan (``models.stages.stage_config``), run on
    the inputs it reads at this site; only DeLong, NRI and IDI statistics leave the site.
    """
    from client.site import compare_models, model_for, node_data
    from models.stages import stage_config
    from protocol.messages import comparison_prefix
    from protocol.metrics import COMPARISON_METRICS, candidate_metric

    inputs = {"": (data, model, message.run)}
    states, crops = segmenter_states(message, store)  # the compared models read inputs cut by the same segmenters
    for name, digest in message.compare:
        try:
            cfg = stage_config(message.run, name)
        except KeyError as err:
            raise ProtocolError(f"the comparison names {err}") from None
        inputs[name] = (node_data(site, cfg, states, crops), model_for(cfg, unpacked(store.get(digest), cfg, f"held model {digest}")), cfg)
    return {
        candidate_metric(comparison_prefix(row["model_b"]), key): float(row[key])
        for row in compare_models(inputs, message.split, reference="")
        for key in COMPARISON_METRICS
        if key in row
    }


def _clinical(site: LocalSite, query: ClinicalQuery, store: ModelStore) -> RecordDict:
    """Answer a clinical job: the site's schema, or sums over its cases (``client/clinical_work.py``)."""
    from flwr.app import ConfigRecord, MetricRecord

    from client.clinical_work import clinical_metrics, schema
    from protocol.messages import METRICS

    if query.job == "schema":
        return RecordDict({SCHEMA: ConfigRecord({"variables": schema_json(schema(site.config))})})
    return RecordDict({METRICS: MetricRecord(clinical_metrics(site, query, store))})
