"""Flower ClientApp: a thin layer handing each message to the site's work function.

The work runs in this process (``client.work.run_work``; torch is imported only for training
and evaluation), or, when the node config names a ``site-worker`` socket, in the site's
long-lived worker process, which keeps torch, MONAI and the site's data loaded between messages.
The privacy guard checks every reply on its way out, wherever it was made.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp

from client.errors import SiteDataError
from client.node_site import node_site
from client.privacy_guard import privacy_guard
from client.site_config import SiteConfig
from client.work import refusal, run_work
from client.worker_link import WorkerError, WorkerUnavailable, forward
from protocol.messages import RUN

SITE_WORKER = "site-worker"  # node config: the site worker's socket (axilla-client sets it)

logger = logging.getLogger("axilla.client")


def site_of(message: Message, context: Context) -> SiteConfig | None:
    """This node's site config (its output_dir and privacy settings), or None when it cannot be read."""
    try:
        run = dict(message.content.config_records.get(RUN, {})) if message.has_content() else {}
        return node_site(context.node_config, run).config
    except (SiteDataError, KeyError, ValueError):
        return None


app = ClientApp(mods=[privacy_guard(site_of)])


def _time_left(message: Message) -> float:
    """Seconds until the message's TTL runs out (at least a minute): how long the site worker may take."""
    meta = message.metadata
    return max(60.0, meta.created_at + meta.ttl - time.time())


def _work(message: Message, context: Context) -> RecordDict:
    """The reply's content, made by the site worker when one is configured and reachable, else here."""
    kind, node_config = message.metadata.message_type, dict(context.node_config)
    if SITE_WORKER in node_config:
        try:
            return forward(Path(str(node_config[SITE_WORKER])), kind, message.content, node_config, _time_left(message))
        except WorkerUnavailable as err:
            logger.warning("site worker unavailable (%s); doing this %s message in this process", err, kind)
    return run_work(kind, message.content, node_config)


def handle(message: Message, context: Context) -> Message:
    """Do the work a message asks for; every refusal becomes an error reply without paths (logged here in full)."""
    try:
        return Message(_work(message, context), reply_to=message)
    except WorkerError as err:  # the worker's refusal or failure: its reason is already path-free
        return Message(Error(code=err.code, reason=err.reason), reply_to=message)
    except (SiteDataError, LookupError, ValueError) as err:
        refused = refusal(err)
        if refused is None:
            raise
        logger.error("site refused a %s message: %s", message.metadata.message_type, err)
        return Message(Error(code=refused[0], reason=refused[1]), reply_to=message)


@app.query()
def query(message: Message, context: Context) -> Message:
    """Handshake: describe this site."""
    return handle(message, context)


@app.query("clinical")
def clinical(message: Message, context: Context) -> Message:
    """A clinical-model job: sums over this site's cases (schema, Table 1, moments, Newton statistics, evaluation)."""
    return handle(message, context)


@app.train()
def train(message: Message, context: Context) -> Message:
    """Train the received global model on this site's training split."""
    return handle(message, context)


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    """Evaluate the received model on the requested split at the requested threshold."""
    return handle(message, context)

