"""Benchmark: site-side overhead per message of a loopback TLS deployment (SuperLink, gateway, demo sites).

Run: ``.venv/bin/python bench/bench_deployment.py [--repo PATH] [--rounds N] [--sites-dir DIR] [--run-config PRESET] [--set K=V] [--out FILE]``.

It starts what a coordinator and the hospitals type (``axilla-study init/add-site``,
``axilla-server --study ... --run-config ...``, one ``axilla-client --site ... --superlink ...
--root-certificates ... --auth-key ...`` per demo phantom site), each as ``python -m <module>``
of the checkout ``--repo`` (first on PYTHONPATH), with ``bench/instrument`` on the sites'
PYTHONPATH. Every ClientApp process then logs when it started, when its message arrived and when
its reply was ready, and every call of the site's work functions (``train_round``,
``evaluate_split``, ``evaluate_candidates``) logs its interval, in whatever process it runs (a
site worker's work counts for the message whose window holds it). Site-side overhead of a
message = reply ready - ClientApp process start - work. Time between messages (the SuperNode's
and SuperExec's polling, the server's aggregation) is reported apart and is not overhead.

Writes ``bench/results/<date>-<machine>-deployment.json`` and prints a Markdown table. A figure,
never a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
INSTRUMENT = BENCH / "instrument"
TAG = "AXILLA_BENCH_RUN"  # every process started here carries it, so none is left behind
PORT_RETRIES = 3
RUN_ID = "bench"
SERVER_SITE = "(server)"  # the site tag of the server's processes in the timing file


@dataclass
class Proc:
    """One started process: its command, log and Popen handle."""

    name: str
    cmd: list[str]
    log: Path
    popen: subprocess.Popen[bytes]
    restarts: int = 0

    def text(self) -> str:
        """Everything it printed so far."""
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""


@dataclass
class Launcher:
    """Starts the checkout's CLIs as processes in their own sessions, tagged, and stops them all."""

    repo: Path
    root: Path
    work: str = ""  # AXILLA_BENCH_WORK for the sites, empty: the probes' default
    tag: str = field(default_factory=lambda: uuid.uuid4().hex)
    procs: dict[str, Proc] = field(default_factory=dict)

    def env(self, extra: dict[str, str] | None = None, instrument: bool = False) -> dict[str, str]:
        """The environment of a started process: ``--repo`` first on PYTHONPATH (then the probes)."""
        paths = [str(self.repo)] + ([str(INSTRUMENT)] if instrument else [])
        env = os.environ | {"PYTHONPATH": os.pathsep.join(paths), TAG: self.tag, "PYTHONUNBUFFERED": "1"}
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        return env | (extra or {})

    def run(self, module: str, *args: str) -> str:
        """Run one CLI to completion (``python -m module args``); fail with its output."""
        done = subprocess.run(
            [sys.executable, "-m", module, *args], cwd=self.cwd, env=self.env(), capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            raise RuntimeError(f"{module} {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done.stdout

    @property
    def cwd(self) -> Path:
        """An empty working folder, so nothing lands in the checkout and nothing there shadows it."""
        path = self.root / "cwd"
        path.mkdir(exist_ok=True)
        return path

    def start(self, name: str, module: str, args: list[str], extra: dict[str, str] | None = None, instrument: bool = False) -> Proc:
        """Start ``python -m module args`` in its own session; output to ``logs/<name>.log``."""
        log = self.root / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", module, *args]
        with log.open("ab") as out:
            popen = subprocess.Popen(
                cmd, cwd=self.cwd, env=self.env(extra, instrument), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        old = self.procs.get(name)
        self.procs[name] = Proc(name, cmd, log, popen, old.restarts + 1 if old else 0)
        return self.procs[name]

    def tagged(self) -> list[int]:
        """Live processes carrying this run's tag, found through /proc."""
        pids = []
        needle = f"{TAG}={self.tag}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z" and needle in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:
                continue
        return pids

    def stop(self, name: str, grace: float = 20.0) -> None:
        """SIGTERM one process group, SIGKILL it after ``grace`` seconds."""
        proc = self.procs[name].popen
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(30)

    def stop_all(self, grace: float = 20.0) -> list[int]:
        """SIGTERM every group, then SIGKILL groups and tagged stragglers; return pids that survived."""
        for proc in self.procs.values():
            if proc.popen.poll() is None:
                _signal_group(proc.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and self.tagged():
            time.sleep(0.5)
        for proc in self.procs.values():
            _signal_group(proc.popen.pid, signal.SIGKILL)
        for pid in self.tagged():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in self.procs.values():
            try:
                proc.popen.wait(30)
            except subprocess.TimeoutExpired:
                pass
        time.sleep(0.5)
        return self.tagged()


def _signal_group(pid: int, sig: int) -> None:
    """Signal a process group, ignoring one that is gone."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports the OS has just handed out (bound to 0, then closed)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class LoadSampler(threading.Thread):
    """Samples the 1-minute load average every ``every`` seconds while the run goes."""

    def __init__(self, every: float = 10.0) -> None:
        """A daemon thread; ``stop()`` ends it."""
        super().__init__(daemon=True)
        self.every = every
        self.samples: list[float] = []
        self.done = threading.Event()

    def run(self) -> None:
        """Take samples until stopped."""
        while not self.done.is_set():
            self.samples.append(os.getloadavg()[0])
            self.done.wait(self.every)

    def stop(self) -> dict[str, float]:
        """End sampling; return mean and max of the samples and the final 1/5/15-minute averages."""
        self.done.set()
        one, five, fifteen = os.getloadavg()
        samples = self.samples or [one]
        return {"mean_1min": round(statistics.fmean(samples), 2), "max_1min": round(max(samples), 2),
                "end_1min": round(one, 2), "end_5min": round(five, 2), "end_15min": round(fifteen, 2)}  # fmt: skip


def prepare_sites(repo: Path, source: Path, dest: Path) -> dict[str, int]:
    """Copy (hard-link) the sites of ``source`` into ``dest`` without their outputs; make the demo phantom there first if empty.

    Returns each site's number of cases (manifest rows).
    """
    if not any(source.glob("*/site.yaml")):
        print(f"making the demo phantom (seed 0) in {source} ...", flush=True)
        code = "import sys; from pathlib import Path; from simulation.phantom import make_phantom; make_phantom(Path(sys.argv[1]), 'demo', seed=0)"
        subprocess.run([sys.executable, "-c", code, str(source)], check=True, env=os.environ | {"PYTHONPATH": str(repo)}, cwd=source)
    cases = {}
    for yaml in sorted(source.glob("*/site.yaml")):
        shutil.copytree(yaml.parent, dest / yaml.parent.name, copy_function=_link_or_copy, ignore=shutil.ignore_patterns("output"))
        cases[site_name(yaml)] = max(0, len((yaml.parent / "manifest.csv").read_text().splitlines()) - 1)
    if not cases:
        raise RuntimeError(f"{source}: no */site.yaml")
    return cases


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link a file (the data never changes), else copy it."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def site_key(yaml: Path, key: str, default: str) -> str:
    """A top-level scalar key of a site config (``site``: the enrolment name; ``role``: what it is enrolled as)."""
    for line in yaml.read_text().splitlines():
        if line.startswith(f"{key}:"):
            return line.split(":", 1)[1].split("#")[0].strip().strip("'\"")
    return default


def site_name(yaml: Path) -> str:
    """The ``site:`` key of a site config (the enrolment name)."""
    return site_key(yaml, "site", yaml.parent.name)


def write_run_config(path: Path, rounds: int, assignments: list[str], preset: Path | None = None) -> dict[str, Any]:
    """The bench's run config: ``rounds`` rounds of one epoch, validation every round; then a preset's keys, then ``--set``."""
    config: dict[str, Any] = {"num-rounds": rounds, "local-epochs": 1, "validate-every": 1, "round-timeout": 900.0}
    if preset is not None:
        config |= tomllib.loads(preset.read_text(encoding="utf-8"))
    for item in assignments:
        key, _, value = item.partition("=")
        config[key.strip()] = _toml_value(value.strip())
    lines = [f"{key} = {json.dumps(value)}" for key, value in config.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config


def _toml_value(text: str) -> Any:
    """A ``--set`` value as int, float, bool or string."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text.strip("'\""))


def start_server(launcher: Launcher, study: Path, run_config: Path, timing: Path) -> tuple[Proc, int]:
    """Start ``axilla-server`` on fresh ports (retrying when a port was taken); return it and its public port."""
    for attempt in range(PORT_RETRIES):
        port, internal = free_ports(2)
        proc = launcher.start(
            "server", "server.cli",
            ["--study", str(study), "--port", str(port), "--internal-port", str(internal), "--host", "127.0.0.1",
             "--runs-dir", str(launcher.root / "runs"), "--run-config", str(run_config), "--set", f"run-id={RUN_ID}"],
            {"AXILLA_BENCH_TIMING": str(timing), "AXILLA_BENCH_SITE": SERVER_SITE}, instrument=True,
        )  # fmt: skip
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and "enrolled sites" not in proc.text() and proc.popen.poll() is None:
            time.sleep(0.5)
        if proc.popen.poll() is None and "enrolled sites" in proc.text():
            return proc, port
        launcher.stop("server")
        log = proc.text()
        if "in use" not in log.lower() or attempt == PORT_RETRIES - 1:
            raise RuntimeError(f"axilla-server did not start:\n{log[-4000:]}")
        print(f"port taken, retrying the server ({attempt + 1})", flush=True)
    raise AssertionError("unreachable")


def start_client(launcher: Launcher, site: str, yaml: Path, study: Path, port: int, timing: Path) -> Proc:
    """Start ``axilla-client`` for one site with the probes on its PYTHONPATH and a fresh local port."""
    extra = {"AXILLA_BENCH_TIMING": str(timing), "AXILLA_BENCH_SITE": site, "FLWR_HOME": str(launcher.root / "flwr-home" / site)}
    if launcher.work:
        extra["AXILLA_BENCH_WORK"] = launcher.work
    return launcher.start(
        site, "client.cli",
        ["--site", str(yaml), "--superlink", f"127.0.0.1:{port}", "--root-certificates", str(study / "ca.crt"),
         "--auth-key", str(study / "outbox" / site / f"{site}.key"), "--local-port", str(free_ports(1)[0])],
        extra, instrument=True,
    )  # fmt: skip


def follow(launcher: Launcher, server: Proc, clients: dict[str, tuple[Path, Path, int, Path]], timeout: float) -> int:
    """Wait (at most ``timeout`` s) for the server to end; restart a client that died early on a new port."""
    deadline = time.monotonic() + timeout
    while server.popen.poll() is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"axilla-server did not finish within {timeout:.0f} s:\n{server.text()[-4000:]}")
        for site, (yaml, study, port, timing) in clients.items():
            proc = launcher.procs[site]
            if proc.popen.poll() is not None and server.popen.poll() is None:
                if proc.restarts >= PORT_RETRIES:
                    raise RuntimeError(f"axilla-client {site} keeps failing:\n{proc.text()[-4000:]}")
                print(f"axilla-client {site} exited ({proc.popen.returncode}); restarting it on a new local port", flush=True)
                start_client(launcher, site, yaml, study, port, timing)
        time.sleep(1.0)
    return server.popen.returncode


def read_events(timing: Path) -> list[dict[str, Any]]:
    """The probes' JSON lines (a torn last line, from a killed process, is skipped)."""
    events = []
    for line in timing.read_text(encoding="utf-8").splitlines() if timing.exists() else []:
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def kind_of(message: dict[str, Any]) -> str:
    """The message's kind for the table: query, train, evaluate, or a pipeline stage's variant."""
    kind = str(message.get("kind", "?"))
    if kind.startswith("query"):
        return "query"
    if message.get("candidates"):
        return f"{kind}:segmenters"
    if any(str(a).startswith("seg:") for a in message.get("arrays", [])):
        return f"{kind}:classifier-on-crops"
    task = message.get("task")
    return f"{kind}:{task}" if task not in (None, "", "classification") else kind


def attribute_work(messages: list[dict[str, Any]], works: list[dict[str, Any]]) -> None:
    """Give each work interval to the message of the same site whose [received, replied] window holds it."""
    for msg in messages:
        msg["work_s"] = 0.0
        msg["work_calls"] = []
    for work in works:
        mid = (work["start"] + work["end"]) / 2
        holders = [m for m in messages if m["site"] == work["site"] and m["received"] <= mid <= m["replied"]]
        if not holders:
            continue
        msg = min(holders, key=lambda m: m["replied"] - m["received"])  # the innermost window
        msg["work_s"] += work["end"] - work["start"]
        msg["work_calls"].append({"fn": work["fn"], "pid": work["pid"], "s": round(work["end"] - work["start"], 3),
                                  "in_clientapp": work["pid"] == msg["pid"]})  # fmt: skip


def _span(marks: dict[str, float], start: str, end: str) -> float | None:
    """Seconds between two marks, None when either is missing."""
    return round(marks[end] - marks[start], 3) if start in marks and end in marks else None


def per_message(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per handled message: its timings and the overhead split into where it goes."""
    exits = {e["pid"]: e for e in events if e["event"] == "exit"}
    messages = sorted((dict(e) for e in events if e["event"] == "message"), key=lambda e: e["received"])
    attribute_work(messages, [e for e in events if e["event"] == "work"])
    rows = []
    for m in messages:
        end = exits.get(m["pid"], {}).get("time")
        marks = {"process:start": m["process_start"], "call:start": m["received"], **(exits.get(m["pid"], {}).get("marks") or {}), **(m.get("marks") or {})}
        rows.append({
            "site": m["site"], "kind": kind_of(m), "message_type": m.get("kind"), "split": m.get("split"),
            "server_round": m.get("server_round"), "pid": m["pid"], "error": m.get("reply_error"),
            "process_start": m["process_start"], "received": m["received"], "replied": m["replied"], "exit": end,
            "work_s": round(m["work_s"], 3),
            "overhead_s": round(m["replied"] - m["process_start"] - m["work_s"], 3),
            # process start -> message in hand, and its parts:
            "startup_s": round(m["received"] - m["process_start"], 3),
            "flower_import_s": _span(marks, "process:start", startup_end(marks)),  # Python and Flower's imports (or: the launcher's shim and fork)
            "pull_s": _span(marks, "pull_task_input:start", "pull_task_input:end"),  # the message, context and FAB from the SuperNode
            "install_fab_s": _span(marks, "install_from_fab:start", "install_from_fab:end"),
            "app_import_s": _span(marks, "client.app:start", "client.app:end"),  # the ClientApp module (torch, MONAI, axilla)
            "in_call_other_s": round(m["replied"] - m["received"] - m["work_s"], 3),  # data loading, model, guard
            "after_reply_s": round(end - m["replied"], 3) if end else None,  # push reply, exit (not in overhead)
            "push_s": _span(marks, "push_message:start", "push_message:end"),
            "work_calls": m["work_calls"], "client_app_file": m.get("client_app_file"),
        })  # fmt: skip
    return rows


FLOWER_RUNTIME = "flwr.supernode.runtime.run_clientapp:end"  # the last of Flower's imports before it pulls the message
FORKED = "launcher:fork"  # a ClientApp process forked by axilla's launcher, Flower already imported


def startup_end(marks: dict[str, float]) -> str:
    """The mark that ends a ClientApp process's start-up: Flower's runtime imported, or the launcher's fork."""
    for mark in (FLOWER_RUNTIME, FORKED):
        if mark in marks:
            return mark
    return "flwr.clientapp.client_app:end"

PARTS = ("flower_import_s", "pull_s", "install_fab_s", "app_import_s", "in_call_other_s", "work_s", "after_reply_s")


def where_it_goes(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per kind, over all sites: median seconds of each part of a ClientApp process, first messages and later ones."""
    out = []
    for kind in sorted({r["kind"] for r in rows}, key=_kind_order):
        for which in ("first", "later"):
            group = []
            for site in sorted({r["site"] for r in rows if r["kind"] == kind}):
                site_rows = [r for r in rows if r["kind"] == kind and r["site"] == site]
                group += site_rows[:1] if which == "first" else site_rows[1:]
            if group:
                entry: dict[str, Any] = {"kind": kind, "messages": which, "n": len(group), "overhead_s": _median([r["overhead_s"] for r in group])}
                entry.update({key: _median([r[key] for r in group if r[key] is not None]) for key in PARTS})
                out.append(entry)
    return out


def transfers(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flower's object transfers (``pull_objects`` / ``push_objects``) by process, over the whole run.

    A message reaches a site as the ServerApp's push to the SuperLink, then its SuperNode's pull
    (one request per object), then the ClientApp's pull from the SuperNode (in ``pull_s``).
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for e in events:
        if e["event"] == "transfer":
            process = Path(str((e.get("argv") or ["?"])[0])).name
            groups.setdefault((process, e["fn"]), []).append(e)
    return [
        {"process": process, "fn": fn, "n": len(group), "objects_median": _median([float(e["objects"] or 0) for e in group]),
         "seconds_median": _median([e["end"] - e["start"] for e in group]), "seconds_max": round(max(e["end"] - e["start"] for e in group), 3)}
        for (process, fn), group in sorted(groups.items())
    ]  # fmt: skip


def _kind_order(kind: str) -> tuple[int, str]:
    """query, train, evaluate, then the rest."""
    base = kind.split(":")[0]
    return (("query", "train", "evaluate").index(base) if base in ("query", "train", "evaluate") else 9, kind)


def _median(values: list[float]) -> float | None:
    """Median rounded to ms, None for no values."""
    return round(statistics.median(values), 3) if values else None


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per site and kind: first message and the median of the later ones, for overhead and its parts."""
    out = []
    for site in sorted({r["site"] for r in rows}):
        for kind in sorted({r["kind"] for r in rows if r["site"] == site}, key=_kind_order):
            group = [r for r in rows if r["site"] == site and r["kind"] == kind]
            first, later = group[0], group[1:]
            entry: dict[str, Any] = {"site": site, "kind": kind, "count": len(group), "errors": sum(1 for r in group if r["error"])}
            for key in ("overhead_s", "startup_s", *PARTS):
                entry[f"first_{key}"] = first[key]
                entry[f"later_median_{key}"] = _median([r[key] for r in later if r[key] is not None])
            out.append(entry)
    return out


def gaps(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per site: time between one ClientApp's exit and the next one's start (polling, the server's work) - not overhead."""
    result = {}
    for site in sorted({r["site"] for r in rows}):
        group = sorted((r for r in rows if r["site"] == site), key=lambda r: r["process_start"])
        between = [b["process_start"] - a["exit"] for a, b in zip(group, group[1:]) if a["exit"]]
        busy = sum((r["exit"] or r["replied"]) - r["process_start"] for r in group)
        result[site] = {"messages": len(group), "clientapp_seconds": round(busy, 1), "idle_between_median_s": _median(between),
                        "idle_between_total_s": round(sum(between), 1)}  # fmt: skip
    return result


def provenance(events: list[dict[str, Any]], repo: Path) -> dict[str, Any]:
    """Which code the site processes ran: files per process kind, and whether the FAB's client code is the repo's."""
    files: dict[str, set[str]] = {}
    for e in events:
        role = "flwr-clientapp" if any("flwr-clientapp" in str(a) for a in e.get("argv", [])[:1]) else Path(str((e.get("argv") or ["?"])[0])).name
        for key in ("client_file", "client_app_file"):
            if e.get(key):
                files.setdefault(f"{role}:{key}", set()).add(e[key])
    same: dict[str, bool] = {}
    for path in {p for k, v in files.items() if k.endswith("client_app_file") for p in v}:
        installed = Path(path)
        for name in ("app.py", "site.py"):
            ours, theirs = repo / "client" / name, installed.parent / name
            if theirs.exists() and ours.exists():
                same[f"{installed.parent}/{name}"] = ours.read_bytes() == theirs.read_bytes()
    return {"files": {k: sorted(v) for k, v in files.items()}, "clientapp_code_equals_repo": same}


def git_facts(repo: Path) -> dict[str, Any]:
    """The measured checkout's commit and whether it has local changes (read-only git calls)."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", "--no-optional-locks", "-C", str(repo), *args], capture_output=True, text=True, timeout=60)
        return done.stdout.strip() if done.returncode == 0 else ""
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def machine() -> dict[str, Any]:
    """Where it ran."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "?")
    return {"host": socket.gethostname(), "cpu": model, "cpus": len(os.sched_getaffinity(0)), "python": platform.python_version()}


def _s(value: float | None) -> str:
    """Seconds for a table cell."""
    return "–" if value is None else f"{value:.1f}"


def table(summary: list[dict[str, Any]], parts: list[dict[str, Any]], handshake: dict[str, Any] | None, moves: list[dict[str, Any]] | None = None) -> str:
    """Markdown: overhead per site and kind, then where a ClientApp process's time goes per kind."""
    lines = [
        "| site | kind | n | overhead, first (s) | overhead, later median (s) | work, first / later (s) |",
        "|---|---|---|---|---|---|",
    ]
    for e in summary:
        errors = f" ({e['errors']} err)" if e["errors"] else ""
        lines.append(
            f"| {e['site']} | {e['kind']} | {e['count']}{errors} | {_s(e['first_overhead_s'])} | {_s(e['later_median_overhead_s'])} "
            f"| {_s(e['first_work_s'])} / {_s(e['later_median_work_s'])} |"
        )
    if handshake:
        lines += ["", f"Handshake (query) site-side time at the largest site, {handshake['site']} ({handshake['cases']} cases): {handshake['seconds']:.1f} s"]
    lines += [
        "",
        "Where a ClientApp process's time goes (median over sites, s): overhead = Python+Flower import + pull message/FAB "
        "+ install FAB + client.app import + in-call non-work (+ small gaps); after reply (push, exit) is not in it.",
        "",
        "| kind | messages | n | overhead | Python+Flower import (or shim+fork) | pull message | install FAB | client.app import | in-call non-work | work | after reply |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in parts:
        lines.append(f"| {p['kind']} | {p['messages']} | {p['n']} | {_s(p['overhead_s'])} | " + " | ".join(_s(p[key]) for key in PARTS) + " |")
    if moves:
        lines += ["", "Flower's object transfers (a message: ServerApp push, then SuperNode pull, then ClientApp pull):", "",
                  "| process | transfer | n | objects (median) | s (median) | s (max) |", "|---|---|---|---|---|---|"]  # fmt: skip
        lines += [f"| {m['process']} | {m['fn']} | {m['n']} | {m['objects_median']:.0f} | {m['seconds_median']:.2f} | {m['seconds_max']:.2f} |" for m in moves]
    return "\n".join(lines)


@dataclass
class Attempt:
    """What one deployment run left in its folder: the probes' events, its wall time, how the server ended."""

    root: Path
    events: list[dict[str, Any]]
    cases: dict[str, int]
    config: dict[str, Any]
    wall_s: float
    server_exit: int | None
    error: str = ""
    survivors: list[int] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """The server finished the run (exit 0)."""
        return self.server_exit == 0

    def save(self) -> None:
        """Write ``attempt.json`` next to the timing lines, so ``--reanalyze`` can read the folder later."""
        facts = {"wall_s": self.wall_s, "server_exit": self.server_exit, "error": self.error, "survivors": self.survivors}
        (self.root / "attempt.json").write_text(json.dumps(facts, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, root: Path) -> Attempt:
        """Read a kept attempt folder (without ``attempt.json``: wall time from the run config's and server log's mtimes)."""
        facts_file = root / "attempt.json"
        if facts_file.exists():
            facts = json.loads(facts_file.read_text(encoding="utf-8"))
        else:
            log = (root / "logs" / "server.log").read_text(encoding="utf-8", errors="replace")
            wall = (root / "logs" / "server.log").stat().st_mtime - (root / "run.toml").stat().st_mtime
            facts = {"wall_s": wall, "server_exit": 0 if "the run completed" in log else None, "error": "" if "the run completed" in log else log[-1500:]}
        cases = {site_name(y): max(0, len((y.parent / "manifest.csv").read_text().splitlines()) - 1) for y in sorted((root / "sites").glob("*/site.yaml"))}
        config = {k: _toml_value(v.strip()) for k, _, v in (line.partition("=") for line in (root / "run.toml").read_text().splitlines() if "=" in line)}
        return cls(root, read_events(root / "timing.jsonl"), cases, {k.strip(): v for k, v in config.items()}, facts["wall_s"],
                   facts["server_exit"], facts.get("error", ""), facts.get("survivors", []))  # fmt: skip


def run_once(repo: Path, sites: Path, root: Path, args: argparse.Namespace) -> Attempt:
    """One loopback deployment: enrol the sites, run the server and every client, stop them all, read the probes.

    A server that fails still leaves the messages its sites handled; the attempt then says why it failed.
    """
    root.mkdir(parents=True)
    launcher = Launcher(repo, root, args.work)
    timing = root / "timing.jsonl"
    started = time.time()
    code: int | None = None
    error = ""
    try:
        cases = prepare_sites(repo, sites, root / "sites")
        study = root / "study"
        launcher.run("server.study_cli", "--study", str(study), "init")
        yamls = {site_name(y): y for y in sorted((root / "sites").glob("*/site.yaml"))}
        for site, path in yamls.items():
            launcher.run("server.study_cli", "--study", str(study), "add-site", site, "--role", site_key(path, "role", "train"))
        config = write_run_config(root / "run.toml", args.rounds, args.assignments, args.run_config)
        started = time.time()
        server, port = start_server(launcher, study, root / "run.toml", timing)
        clients = {site: (yaml, study, port, timing) for site, yaml in yamls.items()}
        for site, (yaml, *_rest) in clients.items():
            start_client(launcher, site, yaml, study, port, timing)
        try:
            code = follow(launcher, server, clients, args.timeout)
        except (RuntimeError, TimeoutError) as err:
            error = str(err)[-3000:]
        if code not in (0, None):
            error = f"axilla-server exited with {code}:\n{server.text()[-3000:]}"
    finally:
        survivors = launcher.stop_all()
        if survivors:
            print(f"warning: processes outlived the bench: {survivors}", file=sys.stderr)
    attempt = Attempt(root, read_events(timing), cases, config, time.time() - started, code, error, survivors)
    attempt.save()
    return attempt


def analyze(attempt: Attempt, repo: Path, failures: list[str], loads: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The result document and the Markdown table of one attempt."""
    rows = per_message(attempt.events)
    summary = summarize(rows)
    cases = attempt.cases
    largest = max(cases, key=lambda site: cases[site])
    query = next((r for r in rows if r["site"] == largest and r["kind"] == "query"), None)
    handshake = {"site": largest, "cases": cases[largest], "seconds": query["overhead_s"]} if query else None
    result = {
        "bench": "deployment", "date": datetime.now().isoformat(timespec="seconds"), "machine": machine(),
        "repo": str(repo), **git_facts(repo), "run_config": attempt.config, "sites": cases,
        "definition": "overhead = reply ready - ClientApp process start - work (train_round / evaluate_split / evaluate_candidates, wherever they run)",
        "complete": attempt.complete, "error": attempt.error[-1500:], "failed_attempts": failures,
        "run_wall_s": round(attempt.wall_s, 1), "load_average": loads,
        "summary": summary, "handshake_largest_site": handshake, "between_messages": gaps(rows),
        "provenance": provenance(attempt.events, repo), "survivors": attempt.survivors, "messages": rows,
    }  # fmt: skip
    parts = where_it_goes(rows)
    result["where_it_goes"] = parts
    result["transfers"] = transfers(attempt.events)
    text = table(summary, parts, handshake, result["transfers"])
    text += (f"\n\nrun wall time {result['run_wall_s']:.0f} s{'' if attempt.complete else ' (the run did not complete: see error)'}; "
             f"load average 1-min mean {loads.get('mean_1min')}, max {loads.get('max_1min')} ({result['machine']['cpus']} CPUs); "
             f"measured {repo} @ {result['commit'][:7]}{' (dirty)' if result['dirty'] else ''}")  # fmt: skip
    return result, text


def main() -> int:
    """Run one loopback deployment of the demo phantom, then write and print the site-side overheads."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=BENCH.parent, help="the checkout to measure (default: this one)")
    parser.add_argument("--rounds", type=int, default=3, help="num-rounds (default 3)")
    parser.add_argument("--sites-dir", type=Path, help="folder of sites (*/site.yaml) to copy; made with the demo phantom if empty")
    parser.add_argument("--out", type=Path, help="result file (default: bench/results/<date>-<machine>-deployment.json)")
    parser.add_argument("--run-config", type=Path, help="a preset (experiments/*.toml) whose keys replace the bench's defaults; --set still wins")
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE", help="another run config key")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the server (default 3600)")
    parser.add_argument("--attempts", type=int, default=2, help="runs to try until one completes (default 2); else the fullest is reported")
    parser.add_argument("--work", default="", metavar="MODULE:FN,FN;...", help="work functions to time (default: client.site's train_round, evaluate_split, evaluate_candidates)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders (logs, timing lines)")
    parser.add_argument("--reanalyze", type=Path, metavar="ATTEMPT_DIR", help="only recompute the results from a kept attempt folder")
    args = parser.parse_args()
    repo = args.repo.resolve()
    if not (repo / "server" / "cli.py").is_file():
        parser.error(f"{repo}: not an axilla checkout")
    out = args.out or BENCH / "results" / f"{datetime.now():%Y-%m-%d}-{socket.gethostname()}-deployment.json"
    if args.reanalyze:
        result, text = analyze(Attempt.load(args.reanalyze.resolve()), repo, [], {"note": "not sampled (--reanalyze)"})
        return _report(result, text, out)
    scratch = Path(tempfile.mkdtemp(prefix="axilla-bench-deployment-"))
    sites = args.sites_dir.resolve() if args.sites_dir else scratch / "phantom"
    sites.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    print(f"measuring {repo} in {scratch} (load {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f})", flush=True)
    load = LoadSampler()
    load.start()
    attempts: list[Attempt] = []
    try:
        for number in range(1, args.attempts + 1):
            attempts.append(run_once(repo, sites, scratch / f"attempt-{number}", args))
            if attempts[-1].complete:
                break
            print(f"attempt {number} did not complete (kept in {attempts[-1].root}):\n{attempts[-1].error[-1500:]}", file=sys.stderr, flush=True)
    finally:
        loads = {"start_1_5_15": [round(x, 2) for x in load_start], **load.stop()}
    best = max(attempts, key=lambda a: (a.complete, sum(e["event"] == "message" for e in a.events)))
    result, text = analyze(best, repo, [a.error[-1500:] for a in attempts if a is not best], loads)
    code = _report(result, text, out)
    if args.keep or not best.complete:
        print(f"kept {scratch}")
    else:
        shutil.rmtree(scratch, ignore_errors=True)
    return code if best.complete else 1


def _report(result: dict[str, Any], text: str, out: Path) -> int:
    """Write the result file and print the table."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(text)
    print(f"wrote {out}")
    return 0 if result["messages"] else 1


if __name__ == "__main__":
    sys.exit(main())
