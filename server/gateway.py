"""The study's public endpoint: a TLS gateway that passes the Fleet API through and nothing else.

Flower's SuperLink serves its Fleet, Control and Runtime APIs on one port, and without Flower's
account authentication (not part of the open-source distribution) its Control API lets whoever
reaches the port register node keys or submit runs. ``axilla-server`` therefore binds the
SuperLink to loopback and exposes only this gateway: SuperNodes' ``/v1/fleet/`` requests (with
their signed node-authentication headers) are forwarded unchanged; every other path is refused.
"""

from __future__ import annotations

import argparse
import logging
import ssl
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

logger = logging.getLogger("axilla.gateway")

FLEET_PREFIX = "/v1/fleet/"
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers", "transfer-encoding", "upgrade"}
    | {"host", "content-length", "content-encoding"}
)


def is_fleet_path(path: str) -> bool:
    """A (percent-decoded) path under the Fleet API, with no dot segment that could climb out of it."""
    return path.startswith(FLEET_PREFIX) and "\\" not in path and not any(seg in (".", "..") for seg in path.split("/"))


def create_gateway(upstream: str, ca_cert: Path | None, transport: httpx.AsyncBaseTransport | None = None) -> Starlette:
    """An ASGI app forwarding Fleet API requests to ``upstream`` (the SuperLink, verified with ``ca_cert``)."""
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca_cert)) if ca_cert else True
    client: dict[str, httpx.AsyncClient] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client["upstream"] = httpx.AsyncClient(
            base_url=upstream, verify=verify, timeout=httpx.Timeout(None, connect=10.0), transport=transport
        )
        yield
        await client["upstream"].aclose()

    async def forward(request: Request) -> Response:
        path = request.url.path
        if not is_fleet_path(path):
            logger.warning("refused %s %s from %s: only the Fleet API is public", request.method, path, request.client)
            return PlainTextResponse("only the Fleet API is served on this port\n", status_code=403)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            reply = await client["upstream"].request(
                request.method, path, params=request.query_params, content=await request.body(), headers=headers
            )
        except httpx.TransportError as err:
            logger.error("SuperLink unreachable for %s: %s", path, err)
            return PlainTextResponse("the SuperLink is not reachable\n", status_code=503)
        out_headers = {k: v for k, v in reply.headers.items() if k.lower() not in HOP_BY_HOP}
        return Response(reply.content, status_code=reply.status_code, headers=out_headers)

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)], lifespan=lifespan)


def main(argv: list[str] | None = None) -> int:
    """``python -m server.gateway``: serve the gateway (started by ``axilla-server``)."""
    parser = argparse.ArgumentParser(prog="python -m server.gateway", description=__doc__)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the SuperLink, e.g. https://127.0.0.1:9093")
    parser.add_argument("--ca-cert", type=Path, required=True)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        create_gateway(args.upstream, args.ca_cert),
        host=args.host,
        port=args.port,
        ssl_certfile=str(args.cert),
        ssl_keyfile=str(args.key),
        log_level="warning",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
