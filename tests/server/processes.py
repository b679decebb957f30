"""Processes started by deployment tests: each in its own session and tagged, so none outlives a test."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

TAG = "AXILLA_TEST_PROCESS"


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

    def stop_all(self, grace: float = 20.0) -> list[int]:
        """SIGTERM every started process group, SIGKILL what is left; return pids that survived even that."""
        for proc in self.started.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and self.tagged():
            time.sleep(0.5)
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
        time.sleep(0.5)
        return self.tagged()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` every half second; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)
