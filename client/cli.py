"""axilla-client: check a site's config and data, then run the site's worker and SuperNode.

The site worker (``python -m client.worker``) is a long-lived process that imports torch and MONAI
once and keeps data and models in memory; the ClientApp process Flower starts for each message
forwards the message to it over a private Unix socket (node config key ``site-worker``), and does
the work itself while the worker is unreachable. The worker logs to ``<output_dir>/logs/worker.log``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from client.data import load_site_data, site_summary
from client.errors import SiteDataError
from client.site_config import load_site_config
from client.worker_link import WorkerError, WorkerUnavailable, default_socket_path, ping, socket_path_for
from models.run_config import RunConfig
from server.study import StudyError, generate_site_keys
from server.superlink import executable, stop_process, with_own_bin_on_path

SUPERLINK_UNREACHABLE = 305  # Flower's exit code for a SuperNode that cannot activate at the SuperLink
FLOWER_EXIT = re.compile(r"Exit Code: (\d+)")
WORKER_READY_TIMEOUT = 180.0  # seconds for the worker to import torch and MONAI and listen
WORKER_STABLE_AFTER = 300.0  # a worker that ran this long before dying restarts after the shortest delay


def check_site(site_config: Path, image_size: int) -> str:
    """Validate a site config and every manifest row and image; return a readable summary."""
    config = load_site_config(site_config)
    return site_summary(load_site_data(config, image_size))


class NodeConfigError(ValueError):
    """A path that Flower's ``--node-config`` parser cannot carry."""


def _toml_string(key: str, path: Path) -> str:
    """``key='path'`` (a TOML literal string), or ``key="path"`` when the path holds a single quote.

    Flower's parser cuts a value at its closing quote and knows no escapes for it, so a path
    holding both quote characters, or a line break, cannot be passed and is refused by name.
    """
    text = str(path)
    if "\n" in text or "\r" in text or ("'" in text and '"' in text):
        raise NodeConfigError(f"{key}: the path {text!r} holds both quote characters or a line break, which Flower's --node-config cannot carry; move it")
    if "'" not in text:
        return f"{key}='{text}'"
    return f'{key}="{text.replace(chr(92), chr(92) * 2)}"'


def node_config(site: Path, worker_socket: Path | None = None) -> str:
    """The SuperNode's ``--node-config``: the site config and, when a worker runs, its socket (TOML strings)."""
    entries = [_toml_string("site-config", site.resolve())]
    if worker_socket is not None:
        entries.append(_toml_string("site-worker", worker_socket))
    return " ".join(entries)


def supernode_command(args: argparse.Namespace, worker_socket: Path | None = None) -> list[str]:
    """The ``flower-supernode`` command line for this site."""
    cmd = [executable("flower-supernode"), "--superlink", args.superlink, "--node-config", node_config(args.site, worker_socket), "--port", str(args.local_port)]
    if args.insecure:
        cmd.append("--insecure")
    else:
        cmd += ["--root-certificates", str(args.root_certificates)]
    if args.auth_key:
        cmd += ["--auth-supernode-private-key", str(args.auth_key)]
    return cmd


def generate_key(path: Path) -> int:
    """Write this site's key pair; the public half is what the coordinator enrols."""
    try:
        public = generate_site_keys(path)
    except StudyError as err:
        print(f"axilla-client: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path} (keep it here) and {public}; send {public.name} to the study coordinator for `axilla-study add-site`")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``axilla-client``."""
    parser = argparse.ArgumentParser(prog="axilla-client", description=__doc__)
    parser.add_argument("--site", type=Path, help="the site config YAML")
    parser.add_argument("--generate-key", type=Path, metavar="PATH", help="only write a new key pair for this site (PATH and PATH.pub)")
    parser.add_argument("--check", action="store_true", help="only check the site's config and data, and print a summary")
    parser.add_argument("--image-size", type=int, default=RunConfig().image_size, help="preprocessing size used by --check")
    parser.add_argument("--superlink", help="HOST:PORT of the study's SuperLink Fleet API")
    parser.add_argument("--root-certificates", type=Path, help="the study's root CA certificate (PEM)")
    parser.add_argument("--auth-key", type=Path, help="this site's private key (OpenSSH EC) enrolled by the coordinator")
    parser.add_argument("--local-port", type=int, default=9094, help="the SuperNode's local Runtime API port (loopback; one per site on a machine)")
    parser.add_argument("--insecure", action="store_true", help="no TLS and no authentication (local experiments only)")
    parser.add_argument(
        "--no-worker", action="store_true",
        help="no site worker: every message is worked on in the ClientApp process Flower starts for it, which "
        "imports torch and MONAI and loads the data each time (slower; the behaviour before the worker existed)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.generate_key:
        return generate_key(args.generate_key)
    if args.site is None:
        parser.error("--site is required")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        print(check_site(args.site, args.image_size))
    except SiteDataError as err:
        print(f"axilla-client: {err}", file=sys.stderr)
        return 1
    if args.check:
        return 0
    if not args.superlink:
        parser.error("--superlink HOST:PORT is required unless --check is given")
    if not args.insecure and not args.root_certificates:
        parser.error("--root-certificates is required (or --insecure for loopback tests)")
    signal.signal(signal.SIGTERM, _terminate)
    try:
        if args.no_worker:
            return run_supernode(supernode_command(args))
        return run_with_worker(args)
    except NodeConfigError as err:
        print(f"axilla-client: {err}", file=sys.stderr)
        return 2


def _terminate(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM into SystemExit so the SuperNode (and the worker) are stopped on the way out."""
    raise SystemExit(128 + signum)


def run_with_worker(args: argparse.Namespace) -> int:
    """Start the site worker, wait until it answers, then run the SuperNode; stop both on the way out."""
    output_dir = load_site_config(args.site).output_dir
    worker = SiteWorker(args.site.resolve(), socket_path_for(output_dir), output_dir / "logs" / "worker.log")
    if worker.socket_path != default_socket_path(output_dir):
        worker.temp_dir = worker.socket_path.parent  # the short fallback folder is ours to remove

    def terminate(signum: int, frame: FrameType | None) -> None:
        worker.stopping.set()  # before anything else, so a worker dying of the same signal is not restarted
        _terminate(signum, frame)

    def interrupt(signum: int, frame: FrameType | None) -> None:
        worker.stopping.set()  # Ctrl-C reaches the worker too
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, interrupt)
    command = supernode_command(args, worker.socket_path)  # a path Flower cannot carry is refused before anything starts
    try:
        print(f"starting the site worker (log: {worker.log_path})", flush=True)
        worker.start()
        print(f"site worker ready (pid {worker.pid}, socket {worker.socket_path})", flush=True)
        return run_supernode(command)
    except WorkerStartError as err:
        print(f"axilla-client: {err}\n(axilla-client --no-worker runs without it)", file=sys.stderr)
        return 1
    finally:
        worker.stop()


class WorkerStartError(RuntimeError):
    """The site worker exited or did not answer in time; the message names its log."""


class SiteWorker:
    """The site worker process: started and waited for, restarted with back-off when it dies, stopped with us."""

    def __init__(
        self, site: Path, socket_path: Path, log_path: Path,
        ready_timeout: float = WORKER_READY_TIMEOUT, max_delay: float = 60.0, extra_args: tuple[str, ...] = (),
    ) -> None:  # fmt: skip
        self.site = site
        self.extra_args = extra_args
        self.socket_path = socket_path
        self.log_path = log_path
        self.ready_timeout = ready_timeout
        self.max_delay = max_delay
        self.temp_dir: Path | None = None
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0
        self._watcher: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        """The current worker process's id."""
        return self._proc.pid if self._proc is not None else None

    def command(self) -> list[str]:
        """``python -m client.worker`` for this site."""
        return [sys.executable, "-m", "client.worker", "--site", str(self.site), "--socket", str(self.socket_path), "--parent-pid", str(os.getpid()), *self.extra_args]

    def start(self) -> None:
        """Start the worker, wait until it answers a ping, then watch it in the background."""
        self._spawn()
        self._wait_ready()
        self._watcher = threading.Thread(target=self._watch, name="axilla-worker-watch", daemon=True)
        self._watcher.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        """Start one worker process (same process group as us), its output appended to the log."""
        with self._lock:
            if self.stopping.is_set():
                raise WorkerStartError("axilla-client is stopping")
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("ab") as log:  # the child keeps its own handle
                self._proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=os.environ | {"PATH": with_own_bin_on_path()})
            self._started_at = time.monotonic()
            return self._proc

    def _wait_ready(self) -> None:
        """Poll until the current worker answers a ping from its own pid; WorkerStartError if it exits or takes too long."""
        proc = self._proc
        assert proc is not None
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if proc.poll() is not None:
                raise WorkerStartError(f"the site worker exited with code {proc.returncode} before it was ready; see {self.log_path}:\n{_tail(self.log_path)}")
            try:
                if ping(self.socket_path, 1.0).get("pid") == proc.pid:
                    return
            except (WorkerUnavailable, WorkerError):
                pass
            if time.monotonic() > deadline:
                stop_process(proc, grace=5.0)
                raise WorkerStartError(f"the site worker did not answer within {self.ready_timeout:.0f} s; see {self.log_path}")
            if self.stopping.wait(0.25):
                raise WorkerStartError("axilla-client is stopping")

    def _watch(self) -> None:
        """Restart the worker whenever it dies, waiting 1, 2, 4, ... s (at most ``max_delay``) in between."""
        delay = 1.0
        while not self.stopping.is_set():
            proc = self._proc
            assert proc is not None
            code = proc.wait()
            if self.stopping.is_set():
                return
            if time.monotonic() - self._started_at > WORKER_STABLE_AFTER:
                delay = 1.0
            print(f"axilla-client: the site worker exited with code {code} (see {self.log_path}); messages are worked on in-process until it is back; restarting in {delay:.0f} s", flush=True)
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
            print(f"axilla-client: the site worker is back (pid {self.pid})", flush=True)

    def stop(self) -> None:
        """Stop the watcher and the worker (SIGTERM, then SIGKILL); remove a fallback socket folder."""
        self.stopping.set()
        with self._lock:
            proc = self._proc
        if proc is not None:
            stop_process(proc, grace=10.0)
        if self._watcher is not None:
            self._watcher.join(5.0)
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)


def _tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file (empty when unreadable)."""
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_supernode(cmd: list[str], max_delay: float = 60.0) -> int:
    """Run the SuperNode; start it again (with back-off) when the SuperLink refuses or cannot be reached.

    A site that is not enrolled yet, or a SuperLink that is restarting, makes Flower's SuperNode
    stop with its exit code 305 (printed; the process itself exits with 1); the site keeps trying,
    so enrolment order and coordinator restarts need no one at the hospital. Other failures (bad
    key, bad flags) end the client.
    """
    delay = 2.0
    while True:
        print("starting:", " ".join(cmd), flush=True)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", env=os.environ | {"PATH": with_own_bin_on_path()})
        codes: list[int] = []
        # A reader thread: the SuperNode's SuperExec child may hold the pipe a little after the SuperNode exits.
        reader = threading.Thread(target=_relay, args=(proc, codes), daemon=True)
        reader.start()
        try:
            code = proc.wait()
        except BaseException:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
        reader.join(5)
        if SUPERLINK_UNREACHABLE not in codes:
            return code
        print(f"axilla-client: the SuperLink refused this site or is unreachable (Flower exit code {SUPERLINK_UNREACHABLE}); retrying in {delay:.0f} s", flush=True)
        time.sleep(delay)
        delay = min(2 * delay, max_delay)


def _relay(proc: subprocess.Popen[str], codes: list[int]) -> None:
    """Copy the SuperNode's output to ours, noting Flower exit codes it reports."""
    assert proc.stdout is not None
    for line in proc.stdout:
        print(line, end="", flush=True)
        if match := FLOWER_EXIT.search(line):
            codes.append(int(match.group(1)))


if __name__ == "__main__":
    sys.exit(main())
