"""Flower ClientApp: a thin layer wiring messages to the plain site functions."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from client.data import SiteData, load_site_data, site_path_for_partition
from client.errors import SiteDataError
from client.privacy_guard import privacy_guard
from client.site import describe_site, evaluate_candidates, evaluate_split, model_for, stage_data, train_round
from client.site_config import SiteConfig, load_site_config
from models.fusion import SEGMENTER_PREFIX
from models.run_config import RunConfig

logger = logging.getLogger("axilla.client")

SITE_DATA_ERROR = 4001  # Error.code of a reply from a site whose config or data is unusable


def site_config_path(context: Context, run_mapping: dict[str, Any]) -> Path:
    """The node's site config: ``site-config`` in the node config, else the simulated partition's site."""
    if "site-config" in context.node_config:
        return Path(str(context.node_config["site-config"]))
    if "partition-id" in context.node_config:
        return site_path_for_partition(Path(str(run_mapping["sim-sites-dir"])), int(context.node_config["partition-id"]))
    raise SiteDataError("node config has no 'site-config' key", "node config has no 'site-config' key")


def site_of(message: Message, context: Context) -> SiteConfig | None:
    """This node's site config, or None when it cannot be read (the reply then says why)."""
    try:
        run = dict(message.content["config"]) if "config" in message.content else {}
        return load_site_config(site_config_path(context, run))
    except (SiteDataError, KeyError, ValueError):
        return None


app = ClientApp(mods=[privacy_guard(site_of)])


def split_config(config: ConfigRecord) -> tuple[RunConfig, dict[str, Any]]:
    """Separate the run config the server forwards from the per-message keys (round, split, ...)."""
    known = set(RunConfig().to_mapping())
    run = {k: v for k, v in config.items() if k in known}
    extras = {k: v for k, v in config.items() if k not in known}
    return RunConfig.from_mapping(run), extras


def segmenter_states(message: Message) -> dict[str, dict[str, Any]]:
    """The segmenters a message carries, by name (empty when it carries none)."""
    return {
        name[len(SEGMENTER_PREFIX):]: record.to_torch_state_dict()
        for name, record in message.content.array_records.items()
        if name.startswith(SEGMENTER_PREFIX)
    }


def _open(message: Message, context: Context, stage: bool = True) -> tuple[SiteData, RunConfig, dict[str, Any]]:
    """Parse the message config and load this node's site: the task's inputs, or (``stage=False``) its images."""
    cfg, extras = split_config(message.content["config"])
    config = load_site_config(site_config_path(context, cfg.to_mapping()))
    data = stage_data(config, cfg, segmenter_states(message)) if stage else load_site_data(config, cfg.image_size)
    return data, cfg, extras


def _refuse(message: Message, err: SiteDataError) -> Message:
    """Log the full problem locally; send only its path-free form to the server."""
    logger.error("site data error: %s", err)
    return Message(Error(code=SITE_DATA_ERROR, reason=err.public), reply_to=message)


@app.query()
def query(message: Message, context: Context) -> Message:
    """Handshake: describe this site."""
    try:
        data, _, _ = _open(message, context, stage=False)
    except SiteDataError as err:
        return _refuse(message, err)
    return Message(RecordDict({"site": ConfigRecord(describe_site(data))}), reply_to=message)


@app.train()
def train(message: Message, context: Context) -> Message:
    """Train the received global model on this site's training split."""
    try:
        data, cfg, extras = _open(message, context)
    except SiteDataError as err:
        return _refuse(message, err)
    if not data.config.trains:
        return _refuse(message, SiteDataError("this site is external and never trains"))
    state = message.content["arrays"].to_torch_state_dict()
    # Only FedProx puts "proximal-mu" in a training message; the run config's value never rides along.
    proximal_mu = float(message.content["config"].get("proximal-mu", 0.0))
    try:
        new_state, metrics = train_round(
            data, state, cfg, int(extras.get("server-round", 0)), proximal_mu, int(extras.get("stage-offset", 0))
        )
    except SiteDataError as err:
        return _refuse(message, err)
    return Message(
        RecordDict({"arrays": ArrayRecord(new_state), "metrics": MetricRecord(metrics)}), reply_to=message
    )


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    """Evaluate the received model on the requested split at the requested threshold."""
    try:
        data, cfg, extras = _open(message, context)
        split = str(extras.get("split", "val"))
        if extras.get("candidates"):  # the pipeline's segmenters and fusions, all in one message
            labels = str(extras["candidates"]).split(",")
            metrics = evaluate_candidates(data, cfg, segmenter_states(message), labels, split)
            return Message(RecordDict({"metrics": MetricRecord(metrics)}), reply_to=message)
        model = model_for(cfg, message.content["arrays"].to_torch_state_dict())
    except SiteDataError as err:
        return _refuse(message, err)
    metrics = evaluate_split(data, model, cfg, split, float(extras.get("threshold", 0.5)), str(extras.get("grad-cam", "")))
    return Message(RecordDict({"metrics": MetricRecord(metrics)}), reply_to=message)
