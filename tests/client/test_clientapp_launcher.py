"""The warm ClientApp launcher and its ``flwr-clientapp`` shim: launches, exit codes, signals, fallbacks, supervision.

The launches here run a small entry point of the test's own in the forked child (Flower's would
wait for a SuperNode); the deployment tests run Flower's through the same launcher.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from client import clientapp_shim
from client.clientapp_launcher import LENGTH, flower_entry, ping_launcher
from client.site_processes import ClientAppLauncher
from tests.client.test_worker import _gone, wait_for
from tests.conftest import running, unix_peer

REPO = Path(__file__).resolve().parents[2]
SHIM = [sys.executable, "-IS", str(REPO / "client" / "clientapp_shim.py")]

# The child's program: reports what it sees, then behaves as the environment asks.
ENTRY = textwrap.dedent(
    """
    import json, os, signal, sys, time
    def entry():
        seen = {"argv": sys.argv, "cwd": os.getcwd(), "x": os.environ.get("X"), "pid": os.getpid(),
                "own_modules": sorted(m for m in sys.modules if m.split(".")[0] == "client"),
                "shim_pid": os.environ.get("AXILLA_CLIENTAPP_SHIM_PID")}
        with open(os.environ["REPORT"], "w") as out:
            json.dump(seen, out)
        print("child stdout", flush=True)
        print("child stderr", file=sys.stderr, flush=True)
        if os.environ.get("MODE") == "wait":  # until SIGTERM, which Flower's own handler would turn into an exit code
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))
            while True:
                time.sleep(0.05)
        if os.environ.get("MODE") == "raise":
            raise RuntimeError("entry failed")
        sys.exit(int(os.environ.get("CODE", "0")))
    """
)


@contextmanager
def launcher(tmp_path: Path) -> Iterator[Path]:
    """A launcher process (our entry point in its children) listening at a socket in ``tmp_path``; stopped after."""
    (tmp_path / "fake_entry.py").write_text(ENTRY)
    sock = tmp_path / "run" / "launcher.sock"
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r}); from pathlib import Path; import fake_entry; "
        f"from client.clientapp_launcher import run_launcher; sys.exit(run_launcher(Path({str(sock)!r}), None, fake_entry.entry))"
    )
    with running([sys.executable, "-c", code], tmp_path / "launcher.log", cwd=REPO) as proc:
        wait_for(lambda: ping_launcher(sock) == proc.pid or proc.poll() is not None, 60, "the launcher to answer")
        assert proc.poll() is None, (tmp_path / "launcher.log").read_text()
        yield sock
    assert not sock.exists()


def shim_env(tmp_path: Path, sock: Path, **extra: str) -> dict[str, str]:
    """The environment a SuperNode gives its ClientApp processes under axilla-client, plus ``extra``."""
    fallback = tmp_path / "flower-clientapp"
    fallback.write_text("#!/bin/sh\necho \"flower's own: $*\"\nexit 5\n")
    fallback.chmod(0o700)
    return os.environ | {clientapp_shim.LAUNCHER_ENV: str(sock), clientapp_shim.FLOWER_ENV: str(fallback), "REPORT": str(tmp_path / "report.json"), **extra}


def test_flower_declares_the_clientapp_entry_point_the_launcher_runs() -> None:
    """Fails loudly when Flower renames or drops its ``flwr-clientapp`` console script."""
    entry = flower_entry()
    assert callable(entry) and entry.__name__ == "flwr_clientapp", entry
    assert "flwr.supernode.runtime.run_clientapp" in sys.modules  # loading it imported the ClientApp runtime


def test_a_launch_runs_in_a_fresh_fork_with_the_shims_args_env_folder_streams_and_exit_code(tmp_path: Path) -> None:
    with launcher(tmp_path) as sock:
        workdir = tmp_path / "work"
        workdir.mkdir()
        done = subprocess.run([*SHIM, "--token", "t"], cwd=workdir, env=shim_env(tmp_path, sock, X="hello", CODE="3"), capture_output=True, text=True, timeout=60)
        seen = json.loads((tmp_path / "report.json").read_text())
        second = subprocess.run([*SHIM], cwd=workdir, env=shim_env(tmp_path, sock, CODE="0"), capture_output=True, text=True, timeout=60)
        second_pid = json.loads((tmp_path / "report.json").read_text())["pid"]
    assert done.returncode == 3, done.stderr
    assert done.stdout == "child stdout\n" and "child stderr" in done.stderr
    assert seen["argv"] == [str(tmp_path / "flower-clientapp"), "--token", "t"]  # Flower's own name as argv[0]
    assert seen["cwd"] == str(workdir) and seen["x"] == "hello"
    assert seen["own_modules"] == []  # the FAB's client package is the one a ClientApp imports
    assert second.returncode == 0 and second_pid != seen["pid"]  # one process per message
    assert (tmp_path / "launcher.log").read_text().count("message process") == 2


def test_sigterm_reaches_the_message_process_and_a_killed_shim_takes_it_down(tmp_path: Path) -> None:
    with launcher(tmp_path) as sock:
        env = shim_env(tmp_path, sock, MODE="wait")
        shim = subprocess.Popen(SHIM, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: (tmp_path / "report.json").exists() and (tmp_path / "report.json").stat().st_size > 0, 60, "the child to start")
        shim.send_signal(signal.SIGTERM)
        assert shim.wait(30) == 7  # the child's own SIGTERM handler chose the code
        (tmp_path / "report.json").unlink()
        shim = subprocess.Popen(SHIM, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: (tmp_path / "report.json").exists() and (tmp_path / "report.json").stat().st_size > 0, 60, "the second child to start")
        child = json.loads((tmp_path / "report.json").read_text())["pid"]
        shim.kill()
        shim.wait()
        wait_for(lambda: _gone(child), 30, "the orphaned message process to stop")


def test_an_entry_point_that_raises_exits_with_1_and_its_traceback(tmp_path: Path) -> None:
    with launcher(tmp_path) as sock:
        done = subprocess.run(SHIM, env=shim_env(tmp_path, sock, MODE="raise"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "RuntimeError: entry failed" in done.stderr


def test_without_a_launcher_the_shim_becomes_flowers_own_clientapp(tmp_path: Path) -> None:
    done = subprocess.run([*SHIM, "--token", "t"], env=shim_env(tmp_path, tmp_path / "none.sock"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 5 and done.stdout == "flower's own: --token t\n"
    assert "not answering" in done.stderr and str(tmp_path / "none.sock") in done.stderr
    unset = shim_env(tmp_path, tmp_path / "none.sock")
    del unset[clientapp_shim.LAUNCHER_ENV]
    done = subprocess.run(SHIM, env=unset, capture_output=True, text=True, timeout=60)
    assert done.returncode == 5 and f"{clientapp_shim.LAUNCHER_ENV} is not set" in done.stderr


def test_a_launcher_that_refuses_before_forking_leaves_the_message_to_flower(tmp_path: Path) -> None:
    sock = tmp_path / "refusing.sock"

    def refuse(conn: socket.socket) -> None:
        (length,) = LENGTH.unpack(conn.recv(LENGTH.size, socket.MSG_WAITALL))
        conn.recv(length, socket.MSG_WAITALL)
        conn.sendall(b'{"error": "cannot fork: out of memory"}\n')

    with unix_peer(sock, refuse):
        done = subprocess.run(SHIM, env=shim_env(tmp_path, sock), capture_output=True, text=True, timeout=60)
    assert done.returncode == 5 and "refused: cannot fork: out of memory" in done.stderr


def test_axilla_client_starts_restarts_and_stops_the_launcher_and_installs_the_shim(tmp_path: Path) -> None:
    proc = ClientAppLauncher(tmp_path / "run" / "launcher.sock", tmp_path / "run" / "bin", tmp_path / "logs" / "launcher.log", max_delay=1.0)
    try:
        proc.start()
        first = proc.pid
        assert first is not None and ping_launcher(proc.socket_path) == first
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: proc.pid != first and ping_launcher(proc.socket_path) == proc.pid, 120, "the restarted launcher to answer")
        script = proc.install_shim()
        env = proc.supernode_env()
        assert env["PATH"].split(os.pathsep)[0] == str(script.parent) and os.access(script, os.X_OK)
        assert Path(env[clientapp_shim.FLOWER_ENV]).name == "flwr-clientapp"
        # Flower's own flwr-clientapp, started through the shim and the launcher, parses its arguments there.
        done = subprocess.run(["flwr-clientapp", "--help"], env=os.environ | env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "--runtime-api-address" in done.stdout, done.stderr
        assert "message process" in proc.log_path.read_text()
    finally:
        proc.stop()
    assert proc.pid is not None and _gone(proc.pid) and not proc.socket_path.exists()
    assert proc.log_path.read_text().count("listening on") == 2


@pytest.mark.parametrize("request_bytes", [b"\x00\x00\x00\x05nope!", LENGTH.pack(2) + b"[]", LENGTH.pack(99 * 1024**2)])
def test_malformed_requests_are_refused_and_the_launcher_keeps_serving(tmp_path: Path, request_bytes: bytes) -> None:
    with launcher(tmp_path) as sock:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as link:
            link.settimeout(10)
            link.connect(str(sock))
            link.sendall(request_bytes)
            answer = json.loads(link.makefile("rb").readline())
        assert "bad request" in answer["error"]
        assert ping_launcher(sock) is not None
