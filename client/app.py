"""Flower ClientApp: a thin layer handing each message to the site's work function.

The work runs in this process (``client.work.run_work``; torch is imported only for training
and evaluation), or, when the node config names a ``site-worker`` socket, in the site's
long-lived worker process, which keeps torch, MONAI and the site's data loaded between messages.
The privacy guard checks every reply on its way out, wherever it was made.
"""

from __future__ import annotations

import logging

from flwr.app import Context, Error, Message
from flwr.clientapp import ClientApp

from client.errors import SiteDataError
from client.model_store import MissingModelError
from client.node_site import node_site
from client.privacy_guard import privacy_guard
from client.site_config import SiteConfig
from client.work import run_work
from protocol.messages import MISSING_MODEL, RUN, SITE_DATA_ERROR, ProtocolError

logger = logging.getLogger("axilla.client")


def site_of(message: Message, context: Context) -> SiteConfig | None:
    """This node's site config (its output_dir and privacy settings), or None when it cannot be read."""
    try:
        run = dict(message.content.config_records.get(RUN, {})) if message.has_content() else {}
        return node_site(context.node_config, run).config
    except (SiteDataError, KeyError, ValueError):
        return None


app = ClientApp(mods=[privacy_guard(site_of)])


def _refuse(message: Message, code: int, private: str, public: str) -> Message:
    """Log the full problem locally; send only its path-free form to the server."""
    logger.error("site refused a %s message: %s", message.metadata.message_type, private)
    return Message(Error(code=code, reason=public), reply_to=message)


def handle(message: Message, context: Context) -> Message:
    """Do the work a message asks for; every refusal becomes an error reply without paths."""
    try:
        content = run_work(message.metadata.message_type, message.content, dict(context.node_config))
    except SiteDataError as err:
        return _refuse(message, SITE_DATA_ERROR, str(err), err.public)
    except MissingModelError as err:
        return _refuse(message, MISSING_MODEL, str(err), str(err))
    except ProtocolError as err:
        return _refuse(message, SITE_DATA_ERROR, str(err), f"malformed message: {err}")
    return Message(content, reply_to=message)


@app.query()
def query(message: Message, context: Context) -> Message:
    """Handshake: describe this site."""
    return handle(message, context)


@app.train()
def train(message: Message, context: Context) -> Message:
    """Train the received global model on this site's training split."""
    return handle(message, context)


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    """Evaluate the received model on the requested split at the requested threshold."""
    return handle(message, context)

