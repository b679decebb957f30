"""The site worker's wire format and the ClientApp's side of the link: ``forward`` a message, ``ping``.

Imports only the standard library and flwr (no torch, no MONAI), so the per-message ClientApp
process that Flower starts stays thin and only forwards its message to the long-lived worker.

Wire format: one frame per request and one per reply, over a Unix stream socket::

    frame  = MAGIC (4 bytes, b"AXW1") | header length (u32, big-endian) | body length (u64, big-endian)
             | header (UTF-8 JSON) | body (raw bytes)

The request header is ``{"op": "ping"}`` or ``{"op": "work", "kind": "query" | "train" | "evaluate",
"node_config": {...}, "records": RECORDS}``; the reply header is ``{"ok": true, "records": RECORDS}``,
``{"ok": true, "pong": {...}}`` or ``{"ok": false, "code": int, "reason": str}``. ``RECORDS`` lists
a RecordDict's records in order, each ``{"name", "type": "arrays" | "config" | "metrics", "items"}``:
for arrays, ``items`` is ``[{"key", "dtype", "shape", "stype", "offset", "length"}]`` and each
Array's serialized bytes (``Array.data``, verbatim) lie at ``offset`` in the body; for config and
metrics, ``items`` is ``[[key, value], ...]`` with JSON values (bytes as ``{"bytes": base64}``).
Nothing is pickled: decoding a frame cannot execute code.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import struct
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from client.private_socket import MAX_UNIX_PATH, fits_unix_path
from protocol.messages import WORKER_FAILED, WORKER_TIMEOUT
from protocol.registry import INSTRUCTIONS

logger = logging.getLogger("axilla.client")

MAGIC = b"AXW1"
PREFIX = struct.Struct(">4sIQ")  # magic, header length, body length
MAX_HEADER = 256 * 1024**2  # config and metric values (per-case lists included) ride in the header
MAX_BODY = 16 * 1024**3  # model arrays
CONNECT_TIMEOUT = 5.0
KINDS = tuple(INSTRUCTIONS)  # every message kind a site answers (protocol/registry.py)



class WireError(ValueError):
    """A frame that does not follow the wire format."""


class WorkerUnavailable(ConnectionError):
    """The site worker is not there, refused the connection, or went away mid-request."""


class WorkerError(Exception):
    """The site worker answered with an error: ``code`` and a path-free ``reason`` safe to send to the server."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"site worker error {code}: {reason}")
        self.code = code
        self.reason = reason


class WorkerTimeout(WorkerError):
    """The site worker took the request but did not answer in time (it may still be working on it)."""


def default_socket_path(output_dir: Path) -> Path:
    """Where a site's worker listens unless told otherwise: ``<output_dir>/run/worker.sock``."""
    return Path(output_dir).resolve() / "run" / "worker.sock"


def socket_path_for(output_dir: Path) -> Path:
    """The default socket path, or (when it is too long for AF_UNIX) one in a new private 0700 temp folder."""
    path = default_socket_path(output_dir)
    if fits_unix_path(path):
        return path
    short = Path(tempfile.mkdtemp(prefix="axilla-worker-")) / "worker.sock"
    logger.warning("socket path %s is longer than %d bytes (the AF_UNIX limit); using %s instead", path, MAX_UNIX_PATH, short)
    return short


# --- records <-> frames -----------------------------------------------------------------------


def _encode_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, list):
        return [_encode_value(v) for v in value]
    return value


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) != {"bytes"} or not isinstance(value["bytes"], str):
            raise WireError("a config value is an object other than {'bytes': ...}")
        return base64.b64decode(value["bytes"], validate=True)
    if isinstance(value, list):
        return [_decode_value(v) for v in value]
    return value


def encode_records(content: RecordDict) -> tuple[list[dict[str, Any]], list[bytes]]:
    """The JSON description of ``content`` and the array buffers that form the body, in order."""
    records: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    offset = 0
    for name, record in content.items():
        if isinstance(record, ArrayRecord):
            items = []
            for key, array in record.items():
                items.append({"key": key, "dtype": array.dtype, "shape": list(array.shape), "stype": array.stype, "offset": offset, "length": len(array.data)})
                chunks.append(array.data)
                offset += len(array.data)
            records.append({"name": name, "type": "arrays", "items": items})
        elif isinstance(record, (ConfigRecord, MetricRecord)):
            kind = "config" if isinstance(record, ConfigRecord) else "metrics"
            records.append({"name": name, "type": kind, "items": [[k, _encode_value(v)] for k, v in record.items()]})
        else:
            raise TypeError(f"record '{name}' is a {type(record).__name__}, not an Array-, Config- or MetricRecord")
    return records, chunks


def _decode_arrays(items: list[dict[str, Any]], body: memoryview) -> ArrayRecord:
    arrays: dict[str, Array] = {}
    for item in items:
        start, length = int(item["offset"]), int(item["length"])
        if start < 0 or length < 0 or start + length > len(body):
            raise WireError(f"array '{item['key']}' lies outside the frame's body")
        shape = tuple(int(n) for n in item["shape"])
        arrays[str(item["key"])] = Array(dtype=str(item["dtype"]), shape=shape, stype=str(item["stype"]), data=bytes(body[start : start + length]))
    return ArrayRecord(arrays)


def decode_records(records: list[dict[str, Any]], body: memoryview) -> RecordDict:
    """Rebuild a RecordDict from its JSON description and the frame's body."""
    content = RecordDict()
    try:
        for record in records:
            name, kind, items = str(record["name"]), record["type"], record["items"]
            if kind == "arrays":
                content[name] = _decode_arrays(items, body)
            elif kind == "config":
                content[name] = ConfigRecord({str(k): _decode_value(v) for k, v in items})
            elif kind == "metrics":
                content[name] = MetricRecord({str(k): v for k, v in items})
            else:
                raise WireError(f"record '{name}' has unknown type {kind!r}")
    except WireError:
        raise
    except (KeyError, TypeError, ValueError) as err:
        raise WireError(f"malformed records: {type(err).__name__}: {err}") from err
    return content


# --- frames on a socket -----------------------------------------------------------------------


def send_frame(sock: socket.socket, header: dict[str, Any], chunks: Sequence[bytes] = ()) -> None:
    """Write one frame: prefix, JSON header, then the body's chunks without joining them."""
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    sock.sendall(PREFIX.pack(MAGIC, len(head), sum(len(c) for c in chunks)) + head)
    for chunk in chunks:
        sock.sendall(memoryview(chunk))


def _recv_exact(sock: socket.socket, n: int, deadline: float | None) -> bytearray:
    """Read exactly ``n`` bytes; EOFError when the peer closes first, TimeoutError past ``deadline``."""
    buffer = bytearray(n)
    view = memoryview(buffer)
    got = 0
    while got < n:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no complete frame before the deadline")
            sock.settimeout(remaining)
        read = sock.recv_into(view[got:], n - got)
        if read == 0:
            raise EOFError(f"connection closed after {got} of {n} bytes")
        got += read
    return buffer


def recv_frame(sock: socket.socket, deadline: float | None = None) -> tuple[dict[str, Any], memoryview]:
    """Read one frame: its JSON header and its body."""
    magic, head_len, body_len = PREFIX.unpack(_recv_exact(sock, PREFIX.size, deadline))
    if magic != MAGIC:
        raise WireError(f"not a site-worker frame (magic {bytes(magic)!r})")
    if head_len > MAX_HEADER or body_len > MAX_BODY:
        raise WireError(f"frame too large (header {head_len} bytes, body {body_len} bytes)")
    try:
        header = json.loads(_recv_exact(sock, head_len, deadline).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WireError(f"frame header is not JSON: {err}") from err
    if not isinstance(header, dict):
        raise WireError("frame header is not a JSON object")
    return header, memoryview(_recv_exact(sock, body_len, deadline))


# --- the ClientApp's side -----------------------------------------------------------------------


def _exchange(socket_path: Path, header: dict[str, Any], chunks: Sequence[bytes], timeout: float) -> tuple[dict[str, Any], memoryview]:
    """Send one request frame and read the reply frame, mapping failures to WorkerUnavailable / WorkerTimeout."""
    deadline = time.monotonic() + timeout
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(min(timeout, CONNECT_TIMEOUT))
        try:
            sock.connect(str(socket_path))
        except OSError as err:  # missing file, refused, too long a path, not a socket, timeout
            raise WorkerUnavailable(f"site worker not reachable at {socket_path}: {err}") from err
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            send_frame(sock, header, chunks)
            return recv_frame(sock, deadline)
        except (TimeoutError, socket.timeout) as err:
            raise WorkerTimeout(WORKER_TIMEOUT, f"site worker did not answer within {timeout:.0f} s") from err
        except (EOFError, OSError) as err:
            raise WorkerUnavailable(f"site worker at {socket_path} went away mid-request: {err}") from err
        except WireError as err:
            raise WorkerUnavailable(f"site worker at {socket_path} sent a malformed reply: {err}") from err
    finally:
        sock.close()


def _check_reply(header: dict[str, Any]) -> None:
    """Raise WorkerError for an error reply."""
    if header.get("ok") is True:
        return
    if header.get("ok") is False:
        raise WorkerError(int(header.get("code", WORKER_FAILED)), str(header.get("reason", "site worker failed")))
    raise WorkerUnavailable("site worker sent a reply without 'ok'")


def forward(socket_path: Path, kind: str, content: RecordDict, node_config: dict[str, Any], timeout: float) -> RecordDict:
    """Have the site worker at ``socket_path`` do a message's work; return its reply content."""
    if kind not in KINDS:
        raise ValueError(f"message kind {kind!r} is not one of {KINDS}")
    records, chunks = encode_records(content)
    header = {"op": "work", "kind": kind, "node_config": dict(node_config), "records": records}
    reply, body = _exchange(Path(socket_path), header, chunks, timeout)
    _check_reply(reply)
    try:
        return decode_records(reply["records"], body)
    except (KeyError, WireError) as err:
        raise WorkerUnavailable(f"site worker at {socket_path} sent a malformed reply: {err}") from err


def ping(socket_path: Path, timeout: float = 2.0) -> dict[str, Any]:
    """The worker's answer to a ping (pid, busy, requests served); WorkerUnavailable when none comes."""
    reply, _ = _exchange(Path(socket_path), {"op": "ping"}, [], timeout)
    _check_reply(reply)
    pong = reply.get("pong")
    if not isinstance(pong, dict):
        raise WorkerUnavailable("site worker answered a ping without 'pong'")
    return pong
