"""uvicorn's HTTP/1.1 protocol with a request deadline: the one place the gateway reaches into uvicorn.

uvicorn bounds the wait between two requests of a kept-alive connection (``timeout_keep_alive``)
but not the wait for a request's headers: a client that connects and sends nothing, or a header
line a byte at a time, holds a connection (and a slot of ``limit_concurrency``) forever. The
protocol below closes a connection whose next request's headers have not arrived within the
deadline, counted from the connection (after TLS, which asyncio bounds at 60 s) and from the end
of each response. It subclasses ``uvicorn.protocols.http.h11_impl.H11Protocol`` (passed as
uvicorn's documented ``http`` setting) and relies on its ``cycle`` (the request being served),
``transport``, ``loop`` and ``on_response_complete``; tests/server/test_gateway_protocol.py checks
them on a real socket, so a uvicorn that changes them fails there.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger("axilla.gateway")


class DeadlineH11Protocol(H11Protocol):
    """Closes a connection whose next request does not start within ``request_timeout`` seconds."""

    request_timeout: float = 60.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the deadline for the first request."""
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        """Start the deadline for the next request."""
        super().on_response_complete()
        self._arm()

    def _arm(self) -> None:
        self.loop.call_later(self.request_timeout, self._expire, self.cycle)

    def _expire(self, cycle: object) -> None:
        """Close the connection if no request has started since the deadline was set."""
        if self.cycle is cycle and not self.transport.is_closing():
            logger.warning("closed a connection from %s: no request within %.0f s", self.client, self.request_timeout)
            self.transport.close()


def deadline_protocol(request_timeout: float) -> type[DeadlineH11Protocol]:
    """The protocol class with this deadline (uvicorn instantiates it once per connection)."""
    return type("DeadlineH11Protocol", (DeadlineH11Protocol,), {"request_timeout": request_timeout})
