"""The public gateway: Fleet API requests pass through unchanged, nothing else does."""

from __future__ import annotations

import asyncio

import httpx

from server.gateway import create_gateway


def _upstream(request: httpx.Request) -> httpx.Response:
    """Stands for the SuperLink: echoes what it received."""
    if request.url.path == "/v1/fleet/down":
        raise httpx.ConnectError("refused", request=request)
    return httpx.Response(
        201, json={"path": request.url.path, "query": str(request.url.query, "ascii"), "body": request.content.decode(), "signature": request.headers.get("x-signature")},
        headers={"x-upstream": "yes"},
    )


def _post(path: str, **kwargs: object) -> httpx.Response:
    """POST to the gateway in front of the stand-in SuperLink (lifespan included)."""
    app = create_gateway("https://superlink.invalid", None, transport=httpx.MockTransport(_upstream))

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
