"""Deployment on loopback: axilla-server (TLS, SuperNode authentication) and axilla-client SuperNodes
as separate processes, with the commands a coordinator and a hospital type.

Each class is one scenario whose tests share a class-scoped fixture made for that: the fixture
runs the federations once, with every event its tests look at (an intruder, foreign certificates,
a crashed coordinator, a crashed site, a NaN site), and hands the tests what it saw; no test relies
on another having run before it. Runs that can go on at the same time do, in studies of their
own (one study has one SuperLink, serving one axilla-server at a time), and the two classes are
independent, so pytest-xdist (``--dist loadscope``) runs them side by side: the federations spend
most of their time waiting on Flower's polls and heartbeats, which no Flower option shortens.
Site clients keep running between a class's tests as hospitals' would. Every process is started
in its own session with a tag, and each study's teardown checks that none is left, also when a
test fails. Ports are reserved through ``tests.server.processes.PORTS`` (no free-port race).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import torch

from server.study_cli import main as study_main
from simulation.phantom import make_phantom
from tests.server.processes import PORTS, Processes, wait_until

# A class fixture runs whole federations (the first test's setup carries them): a longer bound than the suite's 900 s.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]
BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
FAULTS = Path(__file__).resolve().parent / "faults"
QUICK = REPO / "experiments" / "quick.toml"
SITES = ("site_a", "site_b", "site_ext")
SERVER_TIMEOUT = 480.0
ROUND_TIMEOUT = "round-timeout=300"  # a bound on every wait for sites; faults end rounds through Flower's heartbeats, not this
START_TIMEOUT = 300.0  # a bound, not a wait: a loaded machine can take minutes to start Python, Flower and the SuperLink


def _cli(*args: str) -> str:
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

    def copy_site(self, site: str, like: str) -> Path:
        """A new site folder whose config reads ``like``'s manifest (its own output folder)."""
        source = self.site_yaml(like)
        target = self.site_yaml(site)
        target.parent.mkdir()
        target.write_text(source.read_text().replace(f"site: {like}", f"site: {site}").replace("manifest.csv", str(source.parent / "manifest.csv")))
        return target

    def start_client(self, site: str, name: str | None = None, key: Path | None = None, env: dict[str, str] | None = None) -> str:
        """What a hospital runs: ``axilla-client --site ... --superlink ... --root-certificates ... --auth-key ...``."""
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
def _study(tmp_path_factory: pytest.TempPathFactory, name: str, phantom: Path) -> Iterator[Deployment]:
    """A study with site_a and site_b (train) and site_ext (external) enrolled; on exit, no process of it may be left."""
    root = tmp_path_factory.mktemp(name)
    shutil.copytree(phantom, root / "sites")
    # The coordinator's set-up, in-process (the same CLI code; the scenarios call the installed commands).
    assert study_main(["--study", str(root / "study"), "init"]) == 0
    for site in SITES:
        assert study_main(["--study", str(root / "study"), "add-site", site]) == 0
    port, internal = PORTS.take(2)
    dep = Deployment(root, Processes(root / "logs"), port, internal)
    try:
        yield dep
    finally:
        survivors = dep.procs.stop_all()
        assert not survivors, f"processes outlived the tests: {survivors}"


def _nodes(dep: Deployment) -> dict[int, dict]:
    """The study's SuperLink's nodes by id, as ``flwr supernode ls`` lists them (with their status)."""
    listing = subprocess.run(
        [str(BIN / "flwr"), "supernode", "ls", "study", "--format", "json"],
        capture_output=True, text=True, timeout=60,
        env=os.environ | {"FLWR_HOME": str(dep.study / "state" / "flwr"), "PATH": f"{BIN}:{os.environ['PATH']}"},
    )  # fmt: skip
    assert listing.returncode == 0, listing.stderr
    return {n["node-id"]: n for n in json.loads(listing.stdout[listing.stdout.index("{"):])["nodes"]}


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _assert_only_arrays_and_scalars(entry: dict, kind_counts: dict[str, int]) -> None:
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


@dataclass
class ReferenceRuns:
    """A study's reference run and what was seen while it was going; beside it, a twin study whose coordinator crashed."""

    dep: Deployment
    run_dir: Path
    probes: dict[str, object]  # outcome of each connection attempt without the study's certificate
    audit: dict[str, list[dict]]  # every reply each site's privacy guard logged during the reference run
    crashed_dir: Path  # a twin study's run (same phantom and seed, same run config) whose axilla-server was killed after round 1
    final_before_resume: bool  # whether that run had a final model when its server was killed
    resumed_dir: Path  # the run directory the resumed axilla-server printed


def _probe_without_the_study_certificate(dep: Deployment) -> dict[str, object]:
    """While a run is going: a SuperNode trusting another CA, a client trusting the system's CAs, plain HTTP, the Control API."""
    other = dep.root / "other-study"
    assert study_main(["--study", str(other), "init"]) == 0
    # A SuperNode trusting another CA cannot verify the SuperLink and never connects.
    dep.procs.start(
        "wrong-ca",
        [
            str(BIN / "flower-supernode"), "--superlink", f"127.0.0.1:{dep.port}", "--root-certificates", str(other / "ca.crt"),
            "--auth-supernode-private-key", str(dep.study / "outbox" / "site_a" / "site_a.key"), "--max-retries", "2",
            "--port", str(PORTS.take()[0]),
        ],
        {"PATH": f"{BIN}:{os.environ['PATH']}"},
    )  # fmt: skip
    probes: dict[str, object] = {}
    try:
        with socket.create_connection(("127.0.0.1", dep.port), timeout=10) as raw:
            ssl.create_default_context().wrap_socket(raw, server_hostname="localhost").close()
        probes["system-roots"] = "connected"
    except Exception as err:  # noqa: BLE001 - the test asserts which error it was
        probes["system-roots"] = err
    try:
        probes["plain-http"] = httpx.get(f"http://127.0.0.1:{dep.port}/v1/fleet/", timeout=10).status_code
    except Exception as err:  # noqa: BLE001
        probes["plain-http"] = err
    probes["control"] = httpx.post(f"https://127.0.0.1:{dep.port}/v1/control/ListNodes", verify=str(dep.study / "ca.crt"), timeout=10).status_code
    wait_until(lambda: dep.procs.started["wrong-ca"].poll() is not None, START_TIMEOUT, "the wrong-CA SuperNode to give up")
    return probes


class TestReferenceStudy:
    """An uninterrupted reference run with an intruder and foreign certificates; its twin's coordinator crashes and resumes."""

    @pytest.fixture(scope="class")
    def runs(self, tmp_path_factory: pytest.TempPathFactory, tiny_phantom: Path) -> Iterator[ReferenceRuns]:
        """Both runs (2 rounds, validate-every=0) side by side, shared by this class's tests; the tests read what they left.

        The crashed run has its own study so that it can go on while the reference run does: one
        study has one SuperLink, which serves one axilla-server at a time.
        """
        with _study(tmp_path_factory, "reference", tiny_phantom) as dep, _study(tmp_path_factory, "crashed", tiny_phantom) as twin:
            # An intruder: a valid site config and a key pair, but the key was never enrolled.
            _cli("axilla-client", "--generate-key", str(dep.root / "intruder.key"))
            dep.copy_site("intruder", like="site_ext")
            dep.start_server("server", "--run-config", str(QUICK), "--set", ROUND_TIMEOUT, "--set", "run-id=reference", wait=False)
            twin.start_server("server-killed", "--run-config", str(QUICK), "--set", ROUND_TIMEOUT, "--set", "run-id=interrupted", wait=False)
            dep.wait_serving("server")
            twin.wait_serving("server-killed")
            for site in SITES:
                dep.start_client(site)
                twin.start_client(site)
            dep.start_client("intruder", key=dep.root / "intruder.key")
            probes = _probe_without_the_study_certificate(dep)
            crashed_dir = twin.root / "runs" / "interrupted"
            wait_until(lambda: (crashed_dir / "checkpoints" / "round-001.pt").exists(), SERVER_TIMEOUT, "round 1 of the run to be killed")
            twin.procs.kill("server-killed")  # the coordinator's machine crashes: SuperLink, gateway and ServerApp die
            final_before_resume = (crashed_dir / "checkpoints" / "final.pt").exists()
            twin.start_server("server-resumed", "--resume", str(crashed_dir))
            run_dir = dep.finish("server")
            audit = {
                site: [json.loads(line) for line in (dep.site_yaml(site).parent / "output" / "audit" / "outgoing.jsonl").read_text().splitlines()]
                for site in SITES
            }  # fmt: skip
            dep.procs.kill("intruder")
            resumed_dir = twin.finish("server-resumed")
            yield ReferenceRuns(dep, run_dir, probes, audit, crashed_dir, final_before_resume, resumed_dir)

    def test_tls_authenticated_run_refusing_unenrolled_keys_and_foreign_certificates(self, runs: ReferenceRuns) -> None:
        dep, run_dir = runs.dep, runs.run_dir
        report = json.loads((run_dir / "report.json").read_text())
        assert {s["name"]: s["role"] for s in report["sites"]} == {"site_a": "train", "site_b": "train", "site_ext": "external"}
        rows = {(r["model"], r["site"], r["split"]) for r in report["classification"]}
        for site, split in (("site_a", "val"), ("site_b", "val"), ("site_a", "test"), ("site_b", "test"), ("site_ext", "test")):
            row = next(r for r in report["classification"] if (r["model"], r["site"], r["split"]) == ("federated", site, split))
            assert 0 <= row["auc"] <= 1 and row["n"] > 0
        assert ("federated", "all", "test") in rows and report["run"]["rounds"] == 2
        assert "excluded" not in report and "missing" not in report  # every site answered every round
        # The intruder was refused at every attempt and never reached the federation.
        assert "Failed to activate SuperNode" in dep.procs.log("intruder")
        assert "retrying" in dep.procs.log("intruder")
        config = json.loads((run_dir / "config.json").read_text())
        assert "intruder" not in {s["name"] for s in config["sites"]}
        # Plain TLS clients: system roots do not trust the study CA; plain HTTP is not served.
        assert isinstance(runs.probes["system-roots"], ssl.SSLCertVerificationError), runs.probes["system-roots"]
        assert isinstance(runs.probes["plain-http"], httpx.HTTPError), runs.probes["plain-http"]
        # With the study CA the public port answers the Fleet API only: the Control API is not exposed.
        assert runs.probes["control"] == 403
        log = dep.procs.log("wrong-ca").lower()
        assert dep.procs.started["wrong-ca"].returncode != 0 and "certificate verify failed" in log, log[-3000:]

    def test_privacy_audit_every_reply_sent_holds_only_arrays_and_scalar_metrics(self, runs: ReferenceRuns) -> None:
        """The sites' privacy guard logged every reply they sent in the reference run; all are arrays and scalars."""
        # The reference run (validate-every=0): handshake, 2 rounds of training, final validation and test.
        expected = {"site_a": {"query": 1, "train": 2, "evaluate": 2}, "site_ext": {"query": 1, "evaluate": 1}}
        expected["site_b"] = expected["site_a"]
        for site, want in expected.items():
            counts: dict[str, int] = {}
            for entry in runs.audit[site]:
                _assert_only_arrays_and_scalars(entry, counts)
            assert counts == want, (site, counts)
            # Each of those messages ran in a process the site's ClientApp launcher forked, Flower already imported.
            launches = (runs.dep.site_yaml(site).parent / "output" / "logs" / "launcher.log").read_text().count("message process")
            assert launches == sum(want.values()), (site, launches)

    def test_killed_server_resumes_to_the_uninterrupted_runs_model(self, runs: ReferenceRuns) -> None:
        run_dir = runs.crashed_dir
        assert not runs.final_before_resume
        assert runs.resumed_dir == run_dir
        uninterrupted = torch.load(runs.run_dir / "checkpoints" / "final.pt")
        resumed = torch.load(run_dir / "checkpoints" / "final.pt")
        assert uninterrupted.keys() == resumed.keys()
        for key in uninterrupted:
            torch.testing.assert_close(resumed[key], uninterrupted[key], rtol=1e-4, atol=1e-5)
        assert json.loads((run_dir / "config.json").read_text())["resumed"][0]["after_round"] >= 1
        rounds = sorted({(m["round"], m["site"]) for m in _metrics(run_dir) if m["split"] == "train"})
        assert rounds == [(1, "site_a"), (1, "site_b"), (2, "site_a"), (2, "site_b")]

    def test_a_withdrawn_site_is_unregistered_and_a_stopped_server_leaves_nothing_running(self, runs: ReferenceRuns) -> None:
        dep = runs.dep  # its sites were registered at the SuperLink by the reference run
        ext_node = json.loads((dep.study / "state" / "registered.json").read_text())["site_ext"]["node_id"]
        _cli("axilla-study", "--study", str(dep.study), "remove-site", "site_ext")
        dep.start_server("server-after-removal", "--run-config", str(QUICK), "--set", "run-id=after-removal")
        assert "site_ext" not in json.loads((dep.study / "state" / "registered.json").read_text())
        nodes = _nodes(dep)
        assert ext_node not in nodes or nodes[ext_node]["status"] not in ("online", "registered"), nodes.get(ext_node)
        assert {nodes[n]["status"] for n in nodes if n != ext_node} <= {"online", "registered", "offline"}
        server = dep.procs.started["server-after-removal"]
        server.terminate()  # the coordinator stops the service (SIGTERM)
        server.wait(60)
        ours = f"{dep.procs.run_tag}:server-after-removal"  # SuperLink, gateway, flwr run and ServerApp all carry it
        wait_until(lambda: not dep.procs.tagged(ours), 30, "axilla-server to leave no process running after SIGTERM")


@dataclass
class FaultRun:
    """A run of 3 rounds in which site_b dies during round 1 and comes back, and site_nan sends NaN updates."""

    dep: Deployment
    run_dir: Path


class TestSiteFaults:
    """Sites that crash or send NaN during a run (a study of its own)."""

    @pytest.fixture(scope="class")
    def faults(self, tmp_path_factory: pytest.TempPathFactory, tiny_phantom: Path) -> Iterator[FaultRun]:
        """The faulty run, read by this class's tests."""
        with _study(tmp_path_factory, "faults", tiny_phantom) as dep:
            dep.copy_site("site_nan", like="site_a")
            _cli("axilla-study", "--study", str(dep.study), "add-site", "site_nan")
            dep.start_server(
                "server-faults", "--run-config", str(QUICK), "--set", ROUND_TIMEOUT, "--set", "min-train-sites=1",
                "--set", "num-rounds=3", "--set", "run-id=faults",
            )  # fmt: skip
            fault_path = os.pathsep.join(p for p in (str(FAULTS), os.environ.get("PYTHONPATH", "")) if p)
            dep.start_client("site_nan", env={"PYTHONPATH": fault_path, "AXILLA_FAULT": "nan-update"})
            # site_a trains rounds 2 and 3 only once the gate is open, so round 3 starts after site_b is back.
            gate = dep.root / "site_b-is-back"
            dep.start_client("site_a", env={"PYTHONPATH": fault_path, "AXILLA_FAULT": "hold", "AXILLA_HOLD_UNTIL": str(gate)})
            for site in ("site_b", "site_ext"):
                dep.start_client(site)
            wait_until(lambda: "Receiving: train message" in dep.procs.log("site_b"), SERVER_TIMEOUT, "site_b to receive round 1")
            dep.procs.kill("site_b")  # the hospital's machine dies during the round ...
            run_dir = dep.root / "runs" / "faults"
            wait_until(lambda: any(m["site"] == "site_b" for m in _metrics(run_dir)) if (run_dir / "metrics.jsonl").exists() else False, SERVER_TIMEOUT, "round 1 to close")
            dep.start_client("site_b", name="site_b-restarted")  # ... and comes back
            site_b = json.loads((dep.study / "state" / "registered.json").read_text())["site_b"]["node_id"]
            wait_until(lambda: _nodes(dep).get(site_b, {}).get("status") == "online", START_TIMEOUT, "the restarted site_b to be online")
            gate.touch()
            yield FaultRun(dep, dep.finish("server-faults"))

    def test_a_killed_site_is_missing_for_its_round_and_a_nan_site_is_rejected(self, faults: FaultRun) -> None:
        dep, run_dir = faults.dep, faults.run_dir
        train = {(m["round"], m["site"]): m for m in _metrics(run_dir) if m["split"] == "train"}
        assert train[(1, "site_b")]["status"] == "missing", train[(1, "site_b")]
        # Used again once it is back: round 3 started after it was online (round 2 may have started before).
        assert any(train.get((r, "site_b"), {}).get("status") == "ok" for r in (2, 3)), [train.get((r, "site_b")) for r in (2, 3)]
        for server_round in (1, 2, 3):
            assert train[(server_round, "site_a")]["status"] == "ok"
            assert train[(server_round, "site_nan")]["status"] == "missing"
            assert "update rejected" in train[(server_round, "site_nan")]["reason"] and "non-finite" in train[(server_round, "site_nan")]["reason"]
        assert "update of site site_nan rejected" in dep.procs.log("server-faults")
        report = json.loads((run_dir / "report.json").read_text())
        assert {(m["site"], m["round"]) for m in report.get("missing", [])} >= {("site_b", 1), ("site_nan", 1), ("site_nan", 3)}
        final = torch.load(run_dir / "checkpoints" / "final.pt")
        assert all(torch.isfinite(v.float()).all() for v in final.values())
        assert not math.isnan(next(r for r in report["classification"] if r["site"] == "site_ext")["auc"])
