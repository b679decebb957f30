"""Processes started by deployment tests (each in its own session and tagged, so none outlives a test) and their ports."""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO

TAG = "AXILLA_TEST_PROCESS"
PORT_LOCKS = Path(tempfile.gettempdir()) / "axilla-test-ports"


class Ports:
    """Loopback ports that stay this test process's until it exits, for servers started later by other processes.

    A port found free and then closed again is only free until someone else binds it, and the
    servers under test bind theirs seconds later. Two things could take it in between: another
    test process (an xdist worker, or another pytest session on this machine), and the kernel,
    which hands ports of ``ip_local_port_range`` to outgoing connections. So ports come from below
    (or above) that range, where the kernel never picks, and each is held by an exclusive lock on
    ``<tmp>/axilla-test-ports/<port>`` that every test process honours. The kernel drops a lock when
    its holder exits, even when it is killed, so no stale reservation survives a crashed run.
    Retrying a process that failed to bind would instead have to tell a bind failure of the
    SuperLink, the gateway or a SuperNode from other failures, and restart a half-started
    federation; per-worker port ranges would still collide with another session's workers.
    """

    def __init__(self) -> None:
        self._held: dict[int, IO[bytes]] = {}
        low, high = _ephemeral_range()
        self.candidates = range(max(1024, low - 12000), low) if low - 1024 >= 2000 else range(high + 1, 65536)
        self._next = os.getpid() * 7919 % len(self.candidates)  # processes start at different places

    def take(self, n: int = 1) -> list[int]:
        """Reserve ``n`` ports that nobody listens on now and no other test process holds."""
        ports: list[int] = []
        for _ in range(len(self.candidates)):
            port = self.candidates[self._next]
            self._next = (self._next + 1) % len(self.candidates)
            if port not in self._held and self._lock(port):
                if _bindable(port):
                    ports.append(port)
                    if len(ports) == n:
                        return ports
                else:
                    self._release(port)
        for port in ports:
            self._release(port)
        raise RuntimeError(f"no {n} free ports left in {self.candidates}")

    def _lock(self, port: int) -> bool:
        PORT_LOCKS.mkdir(parents=True, exist_ok=True)
        handle = (PORT_LOCKS / str(port)).open("ab")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._held[port] = handle
        return True

    def _release(self, port: int) -> None:
        self._held.pop(port).close()  # closing the file drops the lock


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' ports."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def _bindable(port: int) -> bool:
    """Nothing listens on, or lingers at, ``port`` on any interface."""
    with socket.socket() as probe:
        try:
            probe.bind(("0.0.0.0", port))  # the gateway listens on every interface
        except OSError as err:
            if err.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


PORTS = Ports()


class Processes:
    """Starts named processes (logs under ``logs/``) and stops them, their children and orphans."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self.run_tag = uuid.uuid4().hex
        self.started: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``cmd`` as ``name``; its stdout and stderr go to ``logs/<name>.log``."""
        with (self.logs / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env=os.environ | (env or {}) | {TAG: f"{self.run_tag}:{name}"},
            )  # fmt: skip
        self.started[name] = proc
        return proc

    def log(self, name: str) -> str:
        """Everything ``name`` printed so far."""
        return (self.logs / f"{name}.log").read_text(encoding="utf-8", errors="replace")

    def tagged(self, value: str | None = None) -> list[int]:
        """Live processes carrying this run's tag (or exactly ``value``), found through /proc."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state == "Z":
                continue
            for item in environ:
                if item.startswith(f"{TAG}=".encode()):
                    tag = item.split(b"=", 1)[1].decode()
                    if (value is None and tag.startswith(self.run_tag)) or tag == value:
                        pids.append(int(entry.name))
        return pids

    def kill(self, name: str) -> None:
        """SIGKILL ``name`` with its whole process tree, as a crash would."""
        proc = self.started[name]
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in self.tagged(f"{self.run_tag}:{name}"):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(30)

    def stop_all(self, grace: float = 20.0, settle: float = 10.0) -> list[int]:
        """SIGTERM every started process group, SIGKILL what is left; return pids that survived even that."""
        for proc in self.started.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and self.tagged():
            time.sleep(0.2)
        for pid in self.tagged():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in self.started.values():
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait(30)
        # A SIGKILLed process is gone once the kernel has torn it down; wait (bounded) for that, not a fixed time.
        deadline = time.monotonic() + settle
        while (left := self.tagged()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return left


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.5) -> None:
    """Poll ``condition`` every ``interval`` seconds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def pytest_collection_modifyitems(items: list) -> None:  # type: ignore[type-arg]
    """As a plugin (``make test`` passes ``-p tests.server.processes``): the longest modules first, longest first.

    Under pytest-xdist (``--dist loadfile --no-loadscope-reorder``) modules are handed out in this
    order, so the deployment scenarios (mostly waiting on their processes) and the federations
    start at once, each on a worker, and the many short modules fill the gaps after them, instead
    of a long module starting last. Only the order changes; nothing is added, skipped or deselected.
    """
    items.sort(key=lambda item: next((rank for rank, module in enumerate(LONGEST) if item.nodeid.startswith(module + "::")), len(LONGEST)))


# By the durations ``make test`` prints (2-core machine), longest first.
LONGEST = (
    "tests/server/test_deployment_reference.py",
    "tests/simulation/test_federation.py",
    "tests/server/test_deployment_faults.py",
    "tests/server/test_pipeline.py",
    "tests/server/test_federation.py",
    "tests/simulation/test_segmentation.py",
    "tests/simulation/test_public_federation.py",
    "tests/server/test_cine_pipeline.py",
    "tests/server/test_fusion_pipeline.py",
    "tests/server/test_federation_strategies.py",
    "tests/server/test_personalisation.py",
    "tests/simulation/test_phantom_cine.py",
    "tests/client/test_multimodal_data.py",
    "tests/simulation/test_phantom_multimodal.py",
)
