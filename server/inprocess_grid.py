"""A grid whose nodes are the real ClientApp in this process: the simulation's baselines run the federation on it.

``local:<site>`` is a federation in which only that site trains; ``pooled`` adds one node that
holds the training sites' pooled data (node config ``pooled-sites``). Every message goes through
the same ClientApp (privacy guard included) as in deployment; only the transport differs.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp

from server.flower_compat import set_server_task_identity


class InProcessGrid:
    """Delivers each message to the ClientApp of its node, in this process (the Grid calls axilla uses)."""

    def __init__(self, node_configs: Iterable[Mapping[str, Any]] = (), app: ClientApp | None = None, first_node: int = 100) -> None:
        set_server_task_identity()
        if app is None:
            from client.app import app as client_app

            app = client_app
        self.app = app
        self.contexts: dict[int, Context] = {}
        self._ids = itertools.count(first_node)
        self._replies: dict[str, Message] = {}
        self._message_ids = itertools.count(1)
        for node_config in node_configs:
            self.add_node(node_config)

    def add_node(self, node_config: Mapping[str, Any]) -> int:
        """Connect a node with this node config; return its id."""
        node = next(self._ids)
        self.contexts[node] = Context(run_id=1, node_id=node, node_config=dict(node_config), state=RecordDict(), run_config={})
        return node

    def get_node_ids(self) -> list[int]:
        """The connected nodes."""
        return list(self.contexts)

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str, ttl: float | None = None) -> Message:
        """A message to one node."""
        return Message(content, dst_node_id=dst_node_id, message_type=message_type, group_id=group_id, ttl=ttl)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        """Deliver messages (each node answers at once); return their ids."""
        ids = []
        for message in messages:
            message_id = f"in-process-{next(self._message_ids)}"
            self._replies[message_id] = self.app(message, self.contexts[message.metadata.dst_node_id])
            ids.append(message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        """The replies to delivered messages."""
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        """Deliver messages and return every reply."""
        return self.pull_messages(self.push_messages(messages))
