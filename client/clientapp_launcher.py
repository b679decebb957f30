"""The warm ClientApp launcher: Flower's runtime imported once, one forked process per message.

Flower's SuperExec starts a new ``flwr-clientapp`` process for every message, and on the 2-core
machine that process spent 1 to 2.5 s importing Flower's runtime (fastapi, grpc, httpx, numpy)
before it pulled its message: most of what a site spent per message once the site worker held
data and models. ``axilla-client`` starts this launcher next to the site worker
(``python -m client.clientapp_launcher --socket PATH``); it imports Flower's ``flwr-clientapp``
entry point (the console script Flower declares) and waits. The ``flwr-clientapp`` that the
SuperNode starts is ``client.clientapp_shim``: it sends its arguments, environment, working folder
and standard streams here, the launcher forks, and the child runs Flower's own entry point, which
pulls the message, installs the FAB and runs its ClientApp exactly as a fresh process would. Each
message still gets a process of its own, and nothing is kept between messages.

Before the child runs Flower, it forgets the axilla modules the launcher imported (``client``
and ``client.private_socket``), so the ClientApp's code is the FAB's, as in a fresh process.
The launcher stops when its parent (``axilla-client``) is gone, on SIGTERM or SIGINT; its
children finish their messages.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import select
import signal
import socket
import struct
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from client.private_socket import SocketSetupError, bind_private, unlink_if_ours

FLOWER_CLIENTAPP = "flwr-clientapp"  # the console script Flower declares for its ClientApp process
OWN_PACKAGE = "client"  # what the launcher imported of axilla's; forgotten in each child
ACCEPT_POLL = 1.0  # seconds between checks that the parent is still there
REQUEST_TIMEOUT = 10.0  # a shim that connects must send its request within this
MAX_REQUEST = 4 * 1024**2  # arguments and environment
LENGTH = struct.Struct(">I")
SHIM_PID_ENV = "AXILLA_CLIENTAPP_SHIM_PID"  # set in each child: the process Flower started for the message

Entry = Callable[[], Any]


class LauncherError(RuntimeError):
    """Flower's ClientApp entry point cannot be found (the message names it)."""


def flower_entry() -> Entry:
    """Flower's ``flwr-clientapp`` entry point, loaded (which imports Flower's ClientApp runtime)."""
    found = importlib.metadata.entry_points(group="console_scripts", name=FLOWER_CLIENTAPP)
    if not found:
        raise LauncherError(f"Flower declares no '{FLOWER_CLIENTAPP}' console script; this Flower version is not supported by the ClientApp launcher")
    return next(iter(found)).load()


class Launched(Exception):
    """Raised in a forked child to leave the accept loop and run the message's ClientApp."""

    def __init__(self, conn: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
        super().__init__("forked")
        self.conn = conn
        self.request = request
        self.fds = fds


def ping_launcher(socket_path: Path, timeout: float = 1.0) -> int | None:
    """The pid of the launcher listening at ``socket_path``, or None when none answers."""
    body = json.dumps({"op": "ping"}).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as link:
            link.settimeout(timeout)
            link.connect(str(socket_path))
            link.sendall(LENGTH.pack(len(body)) + body)
            answer = json.loads(link.makefile("rb").readline() or b"null")
    except (OSError, ValueError):
        return None
    pid = answer.get("pid") if isinstance(answer, dict) and answer.get("ping") else None
    return pid if isinstance(pid, int) else None


def send_line(conn: socket.socket, value: dict[str, Any]) -> None:
    """One JSON line to the shim; a shim that went away is not an error here."""
    try:
        conn.sendall(json.dumps(value).encode() + b"\n")
    except OSError:
        pass


def read_request(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """A length-prefixed JSON request and the file descriptors that came with it; ValueError when malformed."""
    conn.settimeout(REQUEST_TIMEOUT)
    data, fds, _, _ = socket.recv_fds(conn, 64 * 1024, 3)
    buffer = bytearray(data)
    try:
        if len(buffer) < LENGTH.size:
            raise ValueError("a request starts with its length")
        (length,) = LENGTH.unpack_from(buffer)
        if length > MAX_REQUEST:
            raise ValueError(f"a request of {length} bytes is over the limit of {MAX_REQUEST}")
        while len(buffer) < LENGTH.size + length:
            chunk = conn.recv(LENGTH.size + length - len(buffer))
            if not chunk:
                raise ValueError("the request ended early")
            buffer += chunk
        request = json.loads(bytes(buffer[LENGTH.size :]))
        if not isinstance(request, dict):
            raise ValueError("a request is a JSON object")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return request, list(fds)


def checked_launch(request: dict[str, Any], fds: list[int]) -> None:
    """ValueError unless ``request`` is a launch with argv, env, cwd and the three standard streams."""
    argv, env, cwd = request.get("argv"), request.get("env"), request.get("cwd")
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
        raise ValueError("'argv' must be a non-empty list of strings")
    if not (isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
        raise ValueError("'env' must map strings to strings")
    if not isinstance(cwd, str):
        raise ValueError("'cwd' must be a string")
    if len(fds) != 3:
        raise ValueError(f"a launch passes the three standard streams, not {len(fds)} descriptors")


def handle(conn: socket.socket, owner: int) -> None:
    """Answer one connection: a ping, or a launch (fork; the child raises Launched). Never raises in the launcher."""
    try:
        request, fds = read_request(conn)
    except (OSError, ValueError) as err:
        send_line(conn, {"error": f"bad request: {err}"})
        conn.close()
        return
    try:
        if request.get("op") == "ping":
            send_line(conn, {"pid": owner, "ping": True})
            return
        if request.get("op") != "launch":
            raise ValueError(f"unknown op {request.get('op')!r}")
        checked_launch(request, fds)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            raise Launched(conn, request, fds)
        print(f"clientapp launcher: message process {pid} for flwr-clientapp {request.get('shim_pid')}", file=sys.stderr, flush=True)
    except ValueError as err:
        send_line(conn, {"error": f"bad request: {err}"})
    except OSError as err:
        send_line(conn, {"error": f"cannot fork: {err}"})
    finally:
        if os.getpid() == owner:
            for fd in fds:
                os.close(fd)
            conn.close()


def serve(socket_path: Path, parent_pid: int | None, stop: threading.Event, ready: Callable[[], None] | None = None) -> None:
    """Listen at ``socket_path`` and fork one child per launch until ``stop`` is set or the parent is gone.

    In a child this raises Launched; the socket file is removed only by the launcher itself.
    """
    owner = os.getpid()
    listener = bind_private(socket_path)
    inode = os.lstat(socket_path).st_ino
    try:
        if ready is not None:
            ready()
        while not stop.is_set():
            if parent_pid is not None and os.getppid() != parent_pid:
                print(f"clientapp launcher: parent process {parent_pid} is gone; stopping", file=sys.stderr, flush=True)
                return
            readable, _, _ = select.select([listener], [], [], ACCEPT_POLL)
            if not readable:
                continue
            try:
                conn, _ = listener.accept()
            except OSError as err:
                print(f"clientapp launcher: could not accept a connection: {err}", file=sys.stderr, flush=True)
                continue
            handle(conn, owner)
    finally:
        listener.close()
        if os.getpid() == owner:
            unlink_if_ours(socket_path, inode)


def forget_own_modules() -> None:
    """Drop the axilla modules the launcher imported, so the FAB's ``client`` package is the one imported."""
    for name in [n for n in sys.modules if n == OWN_PACKAGE or n.startswith(OWN_PACKAGE + ".")]:
        del sys.modules[name]


def exit_code(value: object) -> int:
    """A SystemExit's code as a process exit status."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    print(value, file=sys.stderr)
    return 1


def run_child(launched: Launched, entry: Entry) -> int:
    """In the forked child: take the shim's streams, environment and folder, run Flower's entry point; the exit code."""
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    request = launched.request
    for target, fd in enumerate(launched.fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ[SHIM_PID_ENV] = str(request.get("shim_pid", ""))
    sys.argv = list(request["argv"])
    forget_own_modules()
    conn = launched.conn
    conn.settimeout(None)
    send_line(conn, {"pid": os.getpid()})
    threading.Thread(target=stop_when_shim_gone, args=(conn,), name="axilla-clientapp-shim-watch", daemon=True).start()
    try:
        entry()
        code = 0
    except SystemExit as done:
        code = exit_code(done.code)
    except BaseException:  # the entry point's own failure: its traceback goes to the message's stderr
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    send_line(conn, {"exit": code})
    return code


def stop_when_shim_gone(conn: socket.socket) -> None:
    """SIGTERM this child when the shim's end of the link closes (the SuperExec stopped or killed it)."""
    try:
        while conn.recv(4096):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGTERM)


def run_launcher(socket_path: Path, parent_pid: int | None, entry: Entry) -> int:
    """Serve launches with ``entry`` as each child's program; the launcher's exit code, or a child's."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel; each reports to its shim
    try:
        serve(socket_path, parent_pid, stop, lambda: print(f"clientapp launcher listening on {socket_path} (pid {os.getpid()})", file=sys.stderr, flush=True))
    except Launched as launched:
        return run_child(launched, entry)
    except SocketSetupError as err:
        print(f"clientapp launcher: {err}", file=sys.stderr, flush=True)
        return 2
    print("clientapp launcher stopped", file=sys.stderr, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m client.clientapp_launcher``."""
    parser = argparse.ArgumentParser(prog="python -m client.clientapp_launcher", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--socket", type=Path, required=True, help="the Unix socket to listen on (its folder is made private, mode 700)")
    parser.add_argument("--parent-pid", type=int, help="stop when this process (axilla-client) is no longer the parent")
    args = parser.parse_args(argv)
    try:
        entry = flower_entry()
    except LauncherError as err:
        print(f"clientapp launcher: {err}", file=sys.stderr, flush=True)
        return 2
    return run_launcher(args.socket.absolute(), args.parent_pid, entry)


if __name__ == "__main__":
    sys.exit(main())
