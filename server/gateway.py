"""The study's public endpoint: a TLS gateway that passes the Fleet API through and nothing else.

Flower's SuperLink serves its Fleet, Control and Runtime APIs on one port, and without Flower's
account authentication (not part of the open-source distribution) its Control API lets whoever
reaches the port register node keys or submit runs. ``axilla-server`` therefore binds the
SuperLink to loopback and exposes only this gateway: SuperNodes' ``/v1/fleet/`` requests (with
their signed node-authentication headers) are forwarded unchanged; every other path is refused.

It holds under abuse (``GatewayLimits``): a request body over the cap (sized by ``axilla-server``
to the run's largest message) is refused with 413 before it is read; a request whose headers or
body do not arrive within ``request_timeout`` is refused (408) or its connection closed; the
SuperLink gets connect and read timeouts (504 when it does not answer); at most
``max_connections`` connections are served at once (503 beyond). ``docs/deployment.md`` gives the
same protections as an nginx configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import ssl
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from server.gateway_protocol import deadline_protocol

logger = logging.getLogger("axilla.gateway")

FLEET_PREFIX = "/v1/fleet/"
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers", "transfer-encoding", "upgrade"}
    | {"host", "content-length", "content-encoding"}
)


MIB = 2**20


@dataclass(frozen=True)
class GatewayLimits:
    """What one client may ask of the gateway."""

    max_body_bytes: int = 64 * MIB  # axilla-server sizes it to the run's largest message
    request_timeout: float = 60.0  # a request's headers, and then its body, must arrive within this many seconds
    upstream_connect_timeout: float = 10.0
    upstream_timeout: float = 300.0  # the SuperLink's read and write timeout per request
    max_connections: int = 256  # connections served at once; more are answered 503

    def __post_init__(self) -> None:
        """Refuse limits that would not limit."""
        for name in ("max_body_bytes", "request_timeout", "upstream_connect_timeout", "upstream_timeout", "max_connections"):
            if not getattr(self, name) > 0:
                raise ValueError(f"gateway limit '{name}' must be > 0, got {getattr(self, name)}")


class _BodyTooLarge(Exception):
    """The request body is over the cap."""


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, or _BodyTooLarge as soon as it (declared or received) passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise _BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def is_fleet_path(path: str) -> bool:
    """A (percent-decoded) path under the Fleet API, with no dot segment that could climb out of it."""
    return path.startswith(FLEET_PREFIX) and "\\" not in path and not any(seg in (".", "..") for seg in path.split("/"))


def create_gateway(
    upstream: str, ca_cert: Path | None, limits: GatewayLimits = GatewayLimits(), transport: httpx.AsyncBaseTransport | None = None
) -> Starlette:
    """An ASGI app forwarding Fleet API requests to ``upstream`` (the SuperLink, verified with ``ca_cert``) within ``limits``."""
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca_cert)) if ca_cert else True
    client: dict[str, httpx.AsyncClient] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client["upstream"] = httpx.AsyncClient(
            base_url=upstream,
            verify=verify,
            timeout=httpx.Timeout(limits.upstream_timeout, connect=limits.upstream_connect_timeout),
            limits=httpx.Limits(max_connections=limits.max_connections),
            transport=transport,
        )
        yield
        await client["upstream"].aclose()

    async def forward(request: Request) -> Response:
        path = request.url.path
        if not is_fleet_path(path):
            logger.warning("refused %s %s from %s: only the Fleet API is public", request.method, path, request.client)
            return PlainTextResponse("only the Fleet API is served on this port\n", status_code=403)
        try:
            body = await asyncio.wait_for(_read_body(request, limits.max_body_bytes), limits.request_timeout)
        except _BodyTooLarge:
            logger.warning("refused %s %s from %s: body over %d bytes", request.method, path, request.client, limits.max_body_bytes)
            return PlainTextResponse(f"request body over the gateway's limit of {limits.max_body_bytes} bytes\n", status_code=413)
        except TimeoutError:
            logger.warning("refused %s %s from %s: body not received within %.0f s", request.method, path, request.client, limits.request_timeout)
            return PlainTextResponse(f"request body not received within {limits.request_timeout:.0f} s\n", status_code=408)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            reply = await client["upstream"].request(request.method, path, params=request.query_params, content=body, headers=headers)
        except httpx.TimeoutException as err:
            logger.error("SuperLink did not answer %s in time: %r", path, err)
            return PlainTextResponse("the SuperLink did not answer in time\n", status_code=504)
        except httpx.TransportError as err:
            logger.error("SuperLink unreachable for %s: %s", path, err)
            return PlainTextResponse("the SuperLink is not reachable\n", status_code=503)
        out_headers = {k: v for k, v in reply.headers.items() if k.lower() not in HOP_BY_HOP}
        return Response(reply.content, status_code=reply.status_code, headers=out_headers)

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)], lifespan=lifespan)


def serve_config(app: Starlette, host: str, port: int, limits: GatewayLimits, cert: Path | None = None, key: Path | None = None) -> uvicorn.Config:
    """uvicorn's settings for the gateway: its connection bound and the request deadline (TLS when ``cert`` is given)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        ssl_certfile=str(cert) if cert else None,
        ssl_keyfile=str(key) if key else None,
        http=deadline_protocol(limits.request_timeout),
        limit_concurrency=limits.max_connections,
        log_level="warning",
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m server.gateway``: serve the gateway (started by ``axilla-server``)."""
    defaults = GatewayLimits()
    parser = argparse.ArgumentParser(prog="python -m server.gateway", description=__doc__)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the SuperLink, e.g. https://127.0.0.1:9093")
    parser.add_argument("--ca-cert", type=Path, required=True)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--max-body-bytes", type=int, default=defaults.max_body_bytes)
    parser.add_argument("--request-timeout", type=float, default=defaults.request_timeout)
    parser.add_argument("--upstream-timeout", type=float, default=defaults.upstream_timeout)
    parser.add_argument("--max-connections", type=int, default=defaults.max_connections)
    args = parser.parse_args(argv)
    try:
        limits = GatewayLimits(args.max_body_bytes, args.request_timeout, defaults.upstream_connect_timeout, args.upstream_timeout, args.max_connections)
    except ValueError as err:
        parser.error(str(err))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_gateway(args.upstream, args.ca_cert, limits)
    logger.info(
        "gateway on %s:%d: body cap %d bytes, request timeout %.0f s, SuperLink timeout %.0f s, at most %d connections",
        args.host, args.port, limits.max_body_bytes, limits.request_timeout, limits.upstream_timeout, limits.max_connections,
    )  # fmt: skip
    uvicorn.Server(serve_config(app, args.host, args.port, limits, args.cert, args.key)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
