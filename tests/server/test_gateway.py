"""The public gateway: Fleet API requests pass through unchanged, nothing else does."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from server.gateway import GatewayLimits, create_gateway


def _upstream(request: httpx.Request) -> httpx.Response:
    """Stands for the SuperLink: echoes what it received."""
    if request.url.path == "/v1/fleet/down":
        raise httpx.ConnectError("refused", request=request)
    if request.url.path == "/v1/fleet/slow":
        raise httpx.ReadTimeout("no answer", request=request)
    if request.url.path == "/v1/fleet/never-forwarded":
        raise AssertionError("an oversized request reached the SuperLink")
    return httpx.Response(
        201, json={"path": request.url.path, "query": str(request.url.query, "ascii"), "body": request.content.decode(), "signature": request.headers.get("x-signature")},
        headers={"x-upstream": "yes"},
    )


LIMITS = GatewayLimits(max_body_bytes=1000, request_timeout=0.5)


def _post(path: str, **kwargs: object) -> httpx.Response:
    """POST to the gateway in front of the stand-in SuperLink (lifespan included)."""
    app = create_gateway("https://superlink.invalid", None, LIMITS, transport=httpx.MockTransport(_upstream))

    async def go() -> httpx.Response:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://gateway") as client:
                return await client.post(path, **kwargs)  # type: ignore[arg-type]

    return asyncio.run(go())


def test_fleet_requests_are_forwarded_with_their_signed_headers_body_and_status() -> None:
    reply = _post("/v1/fleet/PullMessages?x=1", content=b"\x00proto", headers={"X-Signature": "sig"})
    assert reply.status_code == 201 and reply.headers["x-upstream"] == "yes"
    assert reply.json() == {"path": "/v1/fleet/PullMessages", "query": "x=1", "body": "\x00proto", "signature": "sig"}


def test_control_and_runtime_apis_are_refused() -> None:
    climbing = ("/v1/fleet/%2e%2e/control/RegisterNode", "/v1/fleet/%2E/..%2Fcontrol/RegisterNode")
    for path in ("/v1/control/RegisterNode", "/v1/runtime/PullAppInputs", "/", "/v1/fleetX", *climbing):
        assert _post(path, content=b"x").status_code == 403, path


def test_an_unreachable_superlink_is_a_503() -> None:
    assert _post("/v1/fleet/down").status_code == 503


def test_a_body_over_the_cap_is_refused_before_it_reaches_the_superlink() -> None:
    assert _post("/v1/fleet/ok", content=b"x" * 1000).status_code == 201  # at the cap
    declared = _post("/v1/fleet/never-forwarded", content=b"x" * 1001)
    assert declared.status_code == 413 and "limit of 1000 bytes" in declared.text

    async def chunks():  # no Content-Length: the cap holds on what arrives
        for _ in range(5):
            yield b"x" * 300

    assert _post("/v1/fleet/never-forwarded", content=chunks()).status_code == 413


def test_a_body_that_never_completes_is_refused_after_the_request_timeout() -> None:
    """A raw ASGI call: the body's first chunk arrives, the rest never does."""
    app = create_gateway("https://superlink.invalid", None, LIMITS, transport=httpx.MockTransport(_upstream))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "https",
        "path": "/v1/fleet/never-forwarded", "raw_path": b"/v1/fleet/never-forwarded", "query_string": b"", "root_path": "",
        "headers": [(b"content-length", b"100")], "client": ("198.51.100.7", 5000), "server": ("gateway", 443),
    }  # fmt: skip
    sent: list[dict] = []
    stalled = asyncio.Event()

    async def receive() -> dict:
        if not stalled.is_set():
            stalled.set()
            return {"type": "http.request", "body": b"x" * 10, "more_body": True}
        await asyncio.Event().wait()  # the client never sends the rest
        raise AssertionError("unreachable")

    async def send(message: dict) -> None:
        sent.append(message)

    async def go() -> None:
        async with app.router.lifespan_context(app):
            await asyncio.wait_for(app(scope, receive, send), timeout=30)

    asyncio.run(go())
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 408


def test_a_superlink_that_does_not_answer_in_time_is_a_504() -> None:
    assert _post("/v1/fleet/slow").status_code == 504


@pytest.mark.parametrize("field", ["max_body_bytes", "request_timeout", "upstream_timeout", "max_connections"])
def test_limits_that_would_not_limit_are_refused(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        GatewayLimits(**{field: 0})
