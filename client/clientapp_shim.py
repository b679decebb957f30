"""``flwr-clientapp`` as a site's SuperNode starts it: hand the message to the warm ClientApp launcher.

Flower's SuperExec starts ``flwr-clientapp`` (found on PATH) once per message, and that process
spends seconds importing Flower's runtime before it even pulls its message. ``axilla-client`` puts
a copy of this file, named ``flwr-clientapp`` and run by ``python -IS`` (standard library only,
nothing of the environment's), first on the SuperNode's PATH. It passes its arguments,
environment, working folder and standard streams to the launcher (``client.clientapp_launcher``),
which forks a process that has Flower imported already and runs Flower's own ``flwr-clientapp``
entry point there, then waits for that process, forwards SIGTERM/SIGINT/SIGHUP to it, and exits
with its exit code.

Where the launcher is not there or refuses before it forks, this process becomes Flower's own
``flwr-clientapp`` (``exec``), so a message is never lost, only slower. Once the launcher has
forked, the message belongs to that process: if the link breaks, this process exits with 1.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys
from typing import NoReturn

LAUNCHER_ENV = "AXILLA_CLIENTAPP_LAUNCHER"  # the launcher's Unix socket
FLOWER_ENV = "AXILLA_FLWR_CLIENTAPP"  # Flower's own flwr-clientapp, the fallback
CONNECT_TIMEOUT = 5.0  # seconds to reach the launcher and learn the forked process's pid
LENGTH = struct.Struct(">I")


def request(argv: list[str]) -> bytes:
    """The launch request: a length-prefixed JSON object."""
    body = json.dumps({"op": "launch", "argv": argv, "env": dict(os.environ), "cwd": os.getcwd(), "shim_pid": os.getpid()}).encode()
    return LENGTH.pack(len(body)) + body


def read_line(stream: socket.socket, pending: bytearray) -> dict[str, object] | None:
    """The next JSON line from the launcher, or None at end of stream."""
    while b"\n" not in pending:
        chunk = stream.recv(4096)
        if not chunk:
            return None
        pending += chunk
    line, _, rest = bytes(pending).partition(b"\n")
    pending[:] = rest
    value = json.loads(line)
    return value if isinstance(value, dict) else None


def fallback(argv: list[str], why: str) -> NoReturn:
    """Become Flower's own flwr-clientapp; never returns unless that cannot start either."""
    flower = os.environ.get(FLOWER_ENV, "")
    print(f"axilla flwr-clientapp: {why}; starting Flower's flwr-clientapp", file=sys.stderr, flush=True)
    if not flower:
        print(f"axilla flwr-clientapp: {FLOWER_ENV} is not set; cannot start Flower's flwr-clientapp", file=sys.stderr, flush=True)
        sys.exit(1)
    os.execv(flower, [flower, *argv[1:]])


def launch(argv: list[str]) -> int:
    """Run this message's ClientApp (``argv``: Flower's command line) in a process forked by the launcher; its exit code."""
    path = os.environ.get(LAUNCHER_ENV, "")
    if not path:
        fallback(argv, f"{LAUNCHER_ENV} is not set")
    link = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    pending = bytearray()
    try:
        link.settimeout(CONNECT_TIMEOUT)
        link.connect(path)
        socket.send_fds(link, [request(argv)], [0, 1, 2])
        started = read_line(link, pending)
    except (OSError, ValueError) as err:
        link.close()
        fallback(argv, f"the ClientApp launcher at {path} is not answering ({err})")
    if started is None or not isinstance(started.get("pid"), int):
        link.close()
        fallback(argv, f"the ClientApp launcher at {path} refused: {started.get('error') if started else 'closed the link'}")
    child = int(started["pid"])  # type: ignore[arg-type]

    def forward(signum: int, frame: object) -> None:
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    link.settimeout(None)
    try:
        ended = read_line(link, pending)
    except (OSError, ValueError):
        ended = None
    finally:
        link.close()
    if ended is None or not isinstance(ended.get("exit"), int):
        print(f"axilla flwr-clientapp: the ClientApp process {child} ended without reporting an exit code", file=sys.stderr, flush=True)
        return 1
    return int(ended["exit"])  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(launch([os.environ.get(FLOWER_ENV) or "flwr-clientapp", *sys.argv[1:]]))
