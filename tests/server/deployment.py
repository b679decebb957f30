"""Deployment on loopback, shared by the deployment scenarios: a study, its sites and the commands a coordinator and a hospital type.

axilla-server (TLS, SuperNode authentication) and axilla-client SuperNodes run as separate
processes. Each scenario module (``test_deployment_reference.py``, ``test_deployment_faults.py``)
is one class whose tests share a class-scoped fixture: the fixture runs the federations once,
with every event its tests look at, and hands the tests what it saw; no test relies on another
having run before it. The scenarios are independent modules, so pytest-xdist (``--dist
loadfile``) runs them side by side: the federations spend most of their time waiting on
Flower's polls and heartbeats, which no Flower option shortens. Site clients keep running
between a class's tests as hospitals' would. Every process is started in its own session with a
tag, and each study's teardown checks that none is left, also when a test fails. Ports are
reserved through ``tests.server.processes.PORTS`` (no free-port race).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from server.study_cli import main as study_main
from simulation.phantom import make_phantom
from tests.server.processes import PORTS, Processes, wait_until

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
FAULTS = Path(__file__).resolve().parent / "faults"
QUICK = REPO / "experiments" / "quick.toml"
SITES = ("site_a", "site_b", "site_ext")
SERVER_TIMEOUT = 480.0
ROUND_TIMEOUT = "round-timeout=300"  # a bound on every wait for sites; faults end rounds through Flower's heartbeats, not this
START_TIMEOUT = 300.0  # a bound, not a wait: a loaded machine can take minutes to start Python, Flower and the SuperLink


def cli(*args: str) -> str:
    """Run one of the installed commands (``axilla-study``, ``axilla-client``, ...); its output, or fail with its stderr."""
    done = subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=START_TIMEOUT)
    assert done.returncode == 0, done.stderr
    return done.stdout


@dataclass
class Deployment:
    """One study on loopback: its directory, sites, ports and the processes started for it."""

    root: Path
    procs: Processes
    port: int
    internal_port: int
    local_ports: dict[str, int] = field(default_factory=dict)

    @property
    def study(self) -> Path:
        return self.root / "study"

    def site_yaml(self, site: str) -> Path:
        return self.root / "sites" / site / "site.yaml"

    def copy_site(self, site: str, like: str, claims: str | None = None, role: str | None = None) -> Path:
        """A new site folder whose config reads ``like``'s manifest (its own output folder), naming itself ``claims`` (default ``site``)."""
        source = self.site_yaml(like)
        target = self.site_yaml(site)
        target.parent.mkdir()
        text = source.read_text().replace(f"site: {like}", f"site: {claims or site}").replace("manifest.csv", str(source.parent / "manifest.csv"))
        target.write_text(text if role is None else text.replace("role: train", f"role: {role}").replace("role: external", f"role: {role}"))
        return target

    def start_client(
        self, site: str, name: str | None = None, key: Path | None = None, env: dict[str, str] | None = None, light: bool = False
    ) -> str:
        """What a hospital runs: ``axilla-client --site ... --superlink ... --root-certificates ... --auth-key ...``.

        ``light``: without the site worker and the ClientApp launcher (``--no-worker --no-launcher``),
        for nodes that only connect or shake hands (intruders, impostors): two fewer processes to start.
        """
        name = name or site
        if site not in self.local_ports:
            self.local_ports[site] = PORTS.take()[0]
        key = key or self.study / "outbox" / site / f"{site}.key"
        self.procs.start(
            name,
            [
                str(BIN / "axilla-client"), "--site", str(self.site_yaml(site)), "--superlink", f"127.0.0.1:{self.port}",
                "--root-certificates", str(self.study / "ca.crt"),
                "--auth-key", str(key), "--local-port", str(self.local_ports[site]),
                *(("--no-worker", "--no-launcher") if light else ()),
            ],
            env,
        )  # fmt: skip
        return name

    def start_server(self, name: str, *args: str, wait: bool = True) -> None:
        """What the coordinator runs: ``axilla-server --study ... [--run-config ...] [--resume ...]``; ``wait``: until it serves."""
        self.procs.start(
            name,
            [
                str(BIN / "axilla-server"), "--study", str(self.study), "--port", str(self.port),
                "--internal-port", str(self.internal_port), "--runs-dir", str(self.root / "runs"), *args,
                *(("--set", "validate-every=0") if "--resume" not in args else ()),
            ],
        )  # fmt: skip
        if wait:
            self.wait_serving(name)

    def wait_serving(self, name: str) -> None:
        """Wait until axilla-server ``name`` has started its SuperLink and enrolled the sites."""
        wait_until(lambda: "enrolled sites" in self.procs.log(name) or self.procs.started[name].poll() is not None, START_TIMEOUT, f"{name} to start")
        assert self.procs.started[name].poll() is None, self.procs.log(name)[-5000:]

    def finish(self, name: str) -> Path:
        """Wait for an ``axilla-server`` to end successfully; return the run directory it printed last."""
        proc = self.procs.started[name]
        try:
            proc.wait(SERVER_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{name} did not finish:\n{self.procs.log(name)[-5000:]}") from None
        log = self.procs.log(name)
        assert proc.returncode == 0, log[-5000:]
        return Path(log.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def tiny_phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny phantom cohort (site_a, site_b train; site_ext external), made once; each study takes a copy."""
    root = tmp_path_factory.mktemp("phantom")
    make_phantom(root, "tiny", seed=0)
    return root


@contextmanager
def study(tmp_path_factory: pytest.TempPathFactory, name: str, phantom: Path) -> Iterator[Deployment]:
    """A study with site_a and site_b (train) and site_ext (external) enrolled; on exit, no process of it may be left."""
    root = tmp_path_factory.mktemp(name)
    shutil.copytree(phantom, root / "sites")
    # The coordinator's set-up, in-process (the same CLI code; the scenarios call the installed commands).
    assert study_main(["--study", str(root / "study"), "init"]) == 0
    for site in SITES:
        role = "external" if site == "site_ext" else "train"
        assert study_main(["--study", str(root / "study"), "add-site", site, "--role", role]) == 0
    port, internal = PORTS.take(2)
    dep = Deployment(root, Processes(root / "logs"), port, internal)
    try:
        yield dep
    finally:
        survivors = dep.procs.stop_all()
        assert not survivors, f"processes outlived the tests: {survivors}"


def nodes(dep: Deployment) -> dict[int, dict]:
    """The study's SuperLink's nodes by id, as ``flwr supernode ls`` lists them (with their status)."""
    listing = subprocess.run(
        [str(BIN / "flwr"), "supernode", "ls", "study", "--format", "json"],
        capture_output=True, text=True, timeout=60,
        env=os.environ | {"FLWR_HOME": str(dep.study / "state" / "flwr"), "PATH": f"{BIN}:{os.environ['PATH']}"},
    )  # fmt: skip
    assert listing.returncode == 0, listing.stderr
    return {n["node-id"]: n for n in json.loads(listing.stdout[listing.stdout.index("{"):])["nodes"]}


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def assert_only_arrays_and_scalars(entry: dict, kind_counts: dict[str, int]) -> None:
    """One audited reply: arrays only for training, protocol-length numeric lists, path-free strings."""
    kind_counts[entry["kind"]] = kind_counts.get(entry["kind"], 0) + 1
    assert entry["blocked"] == [] and "error" not in entry, entry
    for name, record in entry["records"].items():
        if record["type"] == "arrays":
            assert entry["kind"] == "train", f"arrays in a {entry['kind']} reply"
        elif record["type"] == "metrics":
            for key, value in record["values"].items():
                if isinstance(value, list):
                    assert len(value) in (2, 51, 200) and all(isinstance(x, (int, float)) for x in value), key
                else:
                    assert isinstance(value, (int, float)), key
        else:
            assert record["type"] == "config" and entry["kind"] == "query", name
            assert all("/" not in str(v) for v in record["values"].values())


