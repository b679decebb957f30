"""The long-lived processes ``axilla-client`` runs next to the SuperNode: the site worker and the ClientApp launcher.

Each is started and waited for until it answers a ping from its own pid, restarted with back-off
when it dies (messages are served without it meanwhile, only slower), and stopped with
``axilla-client``. Their output goes to ``<output_dir>/logs/``, site-local files that are never sent.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

from client import clientapp_shim
from client.clientapp_launcher import ping_launcher
from client.worker_link import WorkerError, WorkerUnavailable, ping
from server.superlink import executable, stop_process, with_own_bin_on_path

READY_TIMEOUT = 180.0  # seconds for a process to import what it needs and listen
STABLE_AFTER = 300.0  # a process that ran this long before dying restarts after the shortest delay


class WorkerStartError(RuntimeError):
    """A site process exited or did not answer in time; the message names its log."""


class SiteProcess:
    """One long-lived site process: started and waited for, restarted with back-off when it dies, stopped with us."""

    label = "site process"
    while_down = "messages are served without it"

    def __init__(self, socket_path: Path, log_path: Path, ready_timeout: float = READY_TIMEOUT, max_delay: float = 60.0) -> None:
        self.socket_path = socket_path
        self.log_path = log_path
        self.ready_timeout = ready_timeout
        self.max_delay = max_delay
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0
        self._watcher: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        """The current process's id."""
        return self._proc.pid if self._proc is not None else None

    def command(self) -> list[str]:
        """The process's command line."""
        raise NotImplementedError

    def answering_pid(self) -> int | None:
        """The pid that answers a ping at the socket (None when no one answers)."""
        raise NotImplementedError

    def start(self) -> None:
        """Start the process, wait until it answers a ping, then watch it in the background."""
        self._spawn()
        self._wait_ready()
        self._watcher = threading.Thread(target=self._watch, name=f"axilla-{self.label.replace(' ', '-')}-watch", daemon=True)
        self._watcher.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        """Start one process (same process group as us), its output appended to the log."""
        with self._lock:
            if self.stopping.is_set():
                raise WorkerStartError("axilla-client is stopping")
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("ab") as log:  # the child keeps its own handle
                self._proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=os.environ | {"PATH": with_own_bin_on_path()})
            self._started_at = time.monotonic()
            return self._proc

    def _wait_ready(self) -> None:
        """Poll until the current process answers a ping from its own pid; WorkerStartError if it exits or takes too long."""
        proc = self._proc
        assert proc is not None
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if proc.poll() is not None:
                raise WorkerStartError(f"the {self.label} exited with code {proc.returncode} before it was ready; see {self.log_path}:\n{_tail(self.log_path)}")
            if self.answering_pid() == proc.pid:
                return
            if time.monotonic() > deadline:
                stop_process(proc, grace=5.0)
                raise WorkerStartError(f"the {self.label} did not answer within {self.ready_timeout:.0f} s; see {self.log_path}")
            if self.stopping.wait(0.25):
                raise WorkerStartError("axilla-client is stopping")

    def _watch(self) -> None:
        """Restart the process whenever it dies, waiting 1, 2, 4, ... s (at most ``max_delay``) in between."""
        delay = 1.0
        while not self.stopping.is_set():
            proc = self._proc
            assert proc is not None
            code = proc.wait()
            if self.stopping.is_set():
                return
            if time.monotonic() - self._started_at > STABLE_AFTER:
                delay = 1.0
            print(f"axilla-client: the {self.label} exited with code {code} (see {self.log_path}); {self.while_down} until it is back; restarting in {delay:.0f} s", flush=True)
            if self.stopping.wait(delay):
                return
            delay = min(2 * delay, self.max_delay)
            try:
                self._spawn()
                self._wait_ready()
            except WorkerStartError as err:
                if not self.stopping.is_set():
                    print(f"axilla-client: {err}", flush=True)
                continue
            print(f"axilla-client: the {self.label} is back (pid {self.pid})", flush=True)

    def stop(self) -> None:
        """Stop the watcher and the process (SIGTERM, then SIGKILL)."""
        self.stopping.set()
        with self._lock:
            proc = self._proc
        if proc is not None:
            stop_process(proc, grace=10.0)
        if self._watcher is not None:
            self._watcher.join(5.0)


class SiteWorker(SiteProcess):
    """The site worker (``python -m client.worker``): data and models stay in memory between messages."""

    label = "site worker"
    while_down = "messages are worked on in-process"

    def __init__(self, site: Path, socket_path: Path, log_path: Path, ready_timeout: float = READY_TIMEOUT, max_delay: float = 60.0, extra_args: tuple[str, ...] = ()) -> None:
        super().__init__(socket_path, log_path, ready_timeout, max_delay)
        self.site = site
        self.extra_args = extra_args

    def command(self) -> list[str]:
        """``python -m client.worker`` for this site."""
        return [sys.executable, "-m", "client.worker", "--site", str(self.site), "--socket", str(self.socket_path), "--parent-pid", str(os.getpid()), *self.extra_args]

    def answering_pid(self) -> int | None:
        """The pid in the worker's pong."""
        try:
            return int(ping(self.socket_path, 1.0)["pid"])
        except (WorkerUnavailable, WorkerError, KeyError, TypeError, ValueError):
            return None


class ClientAppLauncher(SiteProcess):
    """The warm ClientApp launcher (``python -m client.clientapp_launcher``) and the ``flwr-clientapp`` the SuperNode finds first on PATH."""

    label = "ClientApp launcher"
    while_down = "each message starts Flower's own flwr-clientapp"

    def __init__(self, socket_path: Path, bin_dir: Path, log_path: Path, ready_timeout: float = READY_TIMEOUT, max_delay: float = 60.0) -> None:
        super().__init__(socket_path, log_path, ready_timeout, max_delay)
        self.bin_dir = bin_dir

    def command(self) -> list[str]:
        """``python -m client.clientapp_launcher`` at this socket."""
        return [sys.executable, "-m", "client.clientapp_launcher", "--socket", str(self.socket_path), "--parent-pid", str(os.getpid())]

    def answering_pid(self) -> int | None:
        """The pid in the launcher's answer to a ping."""
        return ping_launcher(self.socket_path, 1.0)

    def install_shim(self) -> Path:
        """Write ``<bin_dir>/flwr-clientapp``: ``python -IS`` running ``client.clientapp_shim`` (replaced atomically)."""
        self.bin_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        target = self.bin_dir / "flwr-clientapp"
        script = f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -IS {shlex.quote(str(Path(clientapp_shim.__file__).resolve()))} \"$@\"\n"
        staged = target.with_name(f".flwr-clientapp.{os.getpid()}")
        staged.write_text(script, encoding="utf-8")
        staged.chmod(0o700)
        staged.replace(target)
        return target

    def supernode_env(self) -> dict[str, str]:
        """What the SuperNode's environment needs so its ClientApp processes go through the launcher."""
        return {
            "PATH": os.pathsep.join([str(self.bin_dir), with_own_bin_on_path()]),
            clientapp_shim.LAUNCHER_ENV: str(self.socket_path),
            clientapp_shim.FLOWER_ENV: executable("flwr-clientapp"),
        }


def _tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file (empty when unreadable)."""
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
