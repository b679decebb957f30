"""The gateway's uvicorn server on a real socket: a request that never arrives is cut off, connections are bounded.

These fail loudly when uvicorn changes what server/gateway_protocol.py relies on.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from server.gateway import GatewayLimits, create_gateway, serve_config
from server.gateway_protocol import DeadlineH11Protocol
from tests.server.processes import PORTS, wait_until

LIMITS = GatewayLimits(request_timeout=1.0, max_connections=3)


def _upstream(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b"ok")


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    """The gateway (no TLS, a stand-in SuperLink) served by uvicorn in a thread."""
    port = PORTS.take()[0]
    app = create_gateway("https://superlink.invalid", None, LIMITS, transport=httpx.MockTransport(_upstream))
    server = uvicorn.Server(serve_config(app, "127.0.0.1", port, LIMITS))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 60, "the gateway to serve")
    yield port
    server.should_exit = True
    thread.join(30)


def _closed_by_server(conn: socket.socket, within: float) -> float:
    """Seconds until the server closed ``conn`` (recv returns b''), failing after ``within``."""
    start = time.monotonic()
    conn.settimeout(within)
    assert conn.recv(1024) == b""
    return time.monotonic() - start


def test_the_deadline_protocol_is_what_uvicorn_runs() -> None:
    config = serve_config(create_gateway("https://x.invalid", None, LIMITS), "127.0.0.1", 1, LIMITS)
    config.load()
    assert issubclass(config.http_protocol_class, DeadlineH11Protocol) and config.http_protocol_class.request_timeout == 1.0
    assert config.limit_concurrency == 3


def test_a_connection_whose_request_never_arrives_is_closed_and_a_real_request_is_served(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as silent, socket.create_connection(("127.0.0.1", port)) as slow:
        slow.sendall(b"POST /v1/fleet/PushMessages HTTP/1.1\r\nHost: x\r\n")  # a header line, then nothing
        assert _closed_by_server(silent, within=20) < 20
        assert _closed_by_server(slow, within=20) < 20
    assert httpx.post(f"http://127.0.0.1:{port}/v1/fleet/ok", content=b"x").text == "ok"


def test_connections_beyond_the_bound_are_answered_503(port: int) -> None:
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(LIMITS.max_connections)]
    try:
        wait_until(lambda: _status(port) == 503, 20, "the connection bound to apply")
    finally:
        for conn in held:
            conn.close()
    wait_until(lambda: _status(port) == 200, 20, "the gateway to serve again once the connections are gone")


def _status(port: int) -> int:
    return httpx.post(f"http://127.0.0.1:{port}/v1/fleet/ok", content=b"x", timeout=10).status_code
