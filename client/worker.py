"""The site worker: a long-lived process that imports torch and MONAI once and does every message's work.

``axilla-client`` starts it next to the SuperNode (``python -m client.worker --site SITE_YAML
--socket PATH``). Flower still starts one ClientApp process per message; that process stays thin
and forwards the message here over a private Unix socket (``client.worker_link``), where loaded
data and models stay in memory between messages. Requests are handled one at a time; a ``ping``
is answered even while a request is being worked on.

The worker logs to stderr; ``axilla-client`` sends that to ``<output_dir>/logs/worker.log``, a
site-local file that is never sent. Failures reach the server only as an error code and a
fixed, path-free reason; the traceback stays in that log.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from flwr.app import RecordDict

from client.errors import SiteDataError
from client.private_socket import SocketSetupError, bind_private, unlink_if_ours
from client.work import refusal
from client.worker_link import (
    KINDS,
    WireError,
    decode_records,
    encode_records,
    recv_frame,
    send_frame,
    socket_path_for,
)
from protocol.messages import WORKER_BAD_REQUEST, WORKER_FAILED

logger = logging.getLogger("axilla.worker")

Handler = Callable[[str, RecordDict, dict[str, Any]], RecordDict]
Refusal = Callable[[BaseException], tuple[int, str] | None]
Reply = tuple[dict[str, Any], Sequence[bytes]]

ACCEPT_POLL = 0.2  # seconds between checks of the stop event while no one connects
REQUEST_TIMEOUT = 300.0  # a ClientApp that connects must send its whole request within this
REPLY_TIMEOUT = 300.0  # ... and take the whole reply within this
BAD_REQUEST_REASON = "site worker: bad request"
PRELOAD = ("client.site",)  # torch, MONAI and the training code: what a first train/evaluate message would import


def error_reply(code: int, reason: str) -> Reply:
    """An error reply frame: a code and a path-free reason."""
    return {"ok": False, "code": code, "reason": reason}, ()


def parse_work(header: dict[str, Any], body: memoryview) -> tuple[str, RecordDict, dict[str, Any]]:
    """The kind, content and node config of a work request; WireError when malformed."""
    kind, node_config, records = header.get("kind"), header.get("node_config"), header.get("records")
    if kind not in KINDS:
        raise WireError(f"unknown message kind {kind!r}")
    if not isinstance(node_config, dict) or not isinstance(records, list):
        raise WireError("a work request needs a 'node_config' object and a 'records' list")
    return str(kind), decode_records(records, body), node_config


class Worker:
    """Answers requests: pings at once, work one at a time through ``handler``."""

    def __init__(self, handler: Handler, refuse: Refusal = refusal) -> None:
        self.handler = handler
        self.refuse = refuse
        self.lock = threading.Lock()
        self.served = 0

    def session(self, conn: socket.socket) -> None:
        """One connection: read a request, answer it, close; never raises."""
        with conn:
            try:
                header, body = recv_frame(conn, time.monotonic() + REQUEST_TIMEOUT)
            except WireError as err:
                logger.warning("bad request: %s", err)
                self._send(conn, error_reply(WORKER_BAD_REQUEST, BAD_REQUEST_REASON))
                return
            except (EOFError, OSError) as err:
                logger.warning("request not read (the ClientApp went away?): %s", err)
                return
            self._send(conn, self.answer(header, body))

    def _send(self, conn: socket.socket, reply: Reply) -> None:
        """Write a reply; a peer that went away is only logged."""
        try:
            conn.settimeout(REPLY_TIMEOUT)
            send_frame(conn, *reply)
        except OSError as err:
            logger.warning("reply not delivered (the ClientApp went away?): %s", err)

    def answer(self, header: dict[str, Any], body: memoryview) -> Reply:
        """The reply to one decoded request."""
        if header.get("op") == "ping":
            return {"ok": True, "pong": {"pid": os.getpid(), "busy": self.lock.locked(), "served": self.served}}, ()
        if header.get("op") != "work":
            logger.warning("bad request: unknown op %r", header.get("op"))
            return error_reply(WORKER_BAD_REQUEST, BAD_REQUEST_REASON)
        try:
            kind, content, node_config = parse_work(header, body)
        except WireError as err:
            logger.warning("bad request: %s", err)
            return error_reply(WORKER_BAD_REQUEST, BAD_REQUEST_REASON)
        with self.lock:
            return self.work(kind, content, node_config)

    def work(self, kind: str, content: RecordDict, node_config: dict[str, Any]) -> Reply:
        """Run the handler; its refusal or failure becomes an error reply, its traceback stays in the log."""
        start = time.monotonic()
        try:
            records, chunks = encode_records(self.handler(kind, content, node_config))
        except (Exception, SystemExit) as err:  # a library's sys.exit() must not end the worker either
            return self._failure(kind, err)
        finally:
            self.served += 1
        logger.info("%s message done in %.1f s (%.1f MB of arrays in the reply)", kind, time.monotonic() - start, sum(map(len, chunks)) / 1e6)
        return {"ok": True, "records": records}, chunks

    def _failure(self, kind: str, err: BaseException) -> Reply:
        """A refusal keeps its code and public reason; anything else becomes a fixed reason, its traceback logged here only."""
        try:
            refused = self.refuse(err)
        except Exception:  # a broken refusal mapping must not end the worker
            logger.exception("the refusal mapping failed")
            refused = None
        if refused is not None:
            logger.error("refused a %s message: %s", kind, err)
            return error_reply(*refused)
        logger.error("site worker failed on a %s message", kind, exc_info=err)
        return error_reply(WORKER_FAILED, f"site worker failed: {type(err).__name__}")


def _accept(listener: socket.socket, worker: Worker) -> None:
    """Take one connection and answer it in its own thread; running out of files or threads is logged, not fatal."""
    try:
        conn, _ = listener.accept()
    except OSError as err:
        logger.warning("could not accept a connection: %s", err)
        time.sleep(ACCEPT_POLL)
        return
    try:
        threading.Thread(target=worker.session, args=(conn,), name="axilla-worker-session", daemon=True).start()
    except RuntimeError as err:
        logger.warning("could not start a thread for a connection: %s", err)
        conn.close()


def serve(
    socket_path: Path,
    handler: Handler,
    ready: Callable[[], None] | None = None,
    stop: threading.Event | None = None,
    refuse: Refusal = refusal,
) -> None:
    """Listen at ``socket_path`` and answer requests with ``handler`` until ``stop`` is set; remove the socket file on the way out."""
    stop = stop or threading.Event()
    socket_path = Path(socket_path)
    listener = bind_private(socket_path)
    inode = os.lstat(socket_path).st_ino
    worker = Worker(handler, refuse)
    try:
        if ready is not None:
            ready()
        while not stop.is_set():
            readable, _, _ = select.select([listener], [], [], ACCEPT_POLL)
            if readable:
                _accept(listener, worker)
    finally:
        listener.close()
        unlink_if_ours(socket_path, inode)


def load_handler(preload: bool = True) -> Handler:
    """The site's work function, with (``preload``) torch, MONAI and the training code imported once, before the worker listens."""
    from client.work import run_work  # noqa: PLC0415 (lazy: the heavy import belongs to the worker process only)

    for module in PRELOAD if preload else ():
        importlib.import_module(module)
    return run_work


def watch_parent(parent_pid: int, stop: threading.Event) -> None:
    """Set ``stop`` when the process that started the worker is gone (so a killed axilla-client leaves no orphan)."""
    while not stop.wait(1.0):
        if os.getppid() != parent_pid:
            logger.warning("parent process %d is gone; stopping", parent_pid)
            stop.set()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m client.worker``."""
    parser = argparse.ArgumentParser(prog="python -m client.worker", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--site", type=Path, required=True, help="the site config YAML")
    parser.add_argument("--socket", type=Path, help="the Unix socket to listen on (default: <output_dir>/run/worker.sock)")
    parser.add_argument("--parent-pid", type=int, help="stop when this process (axilla-client) is no longer the parent")
    parser.add_argument("--no-preload", action="store_true", help="import torch and MONAI at the first training or evaluation message, not at start (quicker start, for tests)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    from client.site_config import load_site_config  # noqa: PLC0415 (yaml only; kept out of importers of serve)

    try:
        config = load_site_config(args.site)
    except SiteDataError as err:
        logger.error("%s", err)
        return 2
    socket_path = args.socket.absolute() if args.socket else socket_path_for(config.output_dir)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if args.parent_pid:
        threading.Thread(target=watch_parent, args=(args.parent_pid, stop), name="axilla-worker-parent", daemon=True).start()
    started = time.monotonic()
    handler = load_handler(preload=not args.no_preload)
    preloaded = ", ".join(PRELOAD) if not args.no_preload else "nothing"
    logger.info("site worker for %s: work function loaded in %.1f s (preloaded: %s)", config.site, time.monotonic() - started, preloaded)
    if stop.is_set():
        return 0
    try:
        serve(socket_path, handler, lambda: logger.info("listening on %s (pid %d)", socket_path, os.getpid()), stop, refusal)
    except SocketSetupError as err:
        logger.error("%s", err)
        return 2
    logger.info("stopped; removed %s", socket_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
