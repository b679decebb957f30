"""Deployment on loopback: axilla-server (TLS, SuperNode authentication) and axilla-client SuperNodes
as separate processes, with the commands a coordinator and a hospital type.

One study serves the whole module; its site clients keep running between tests as hospitals'
would. Every process is started in its own session with a tag, and the module's teardown checks
that none is left, also when a test fails.
"""

from __future__ import annotations

import json
import math
import os
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import torch

from simulation.phantom import make_phantom
from tests.server.processes import Processes, wait_until

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
FAULTS = Path(__file__).resolve().parent / "faults"
SERVER_TIMEOUT = 480.0


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _cli(*args: str) -> str:
    done = subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=120)
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
    results: dict[str, Path] = field(default_factory=dict)

    @property
    def study(self) -> Path:
        return self.root / "study"

    def site_yaml(self, site: str) -> Path:
        return self.root / "sites" / site / "site.yaml"

    def start_client(self, site: str, name: str | None = None, key: Path | None = None, env: dict[str, str] | None = None) -> str:
        """What a hospital runs: ``axilla-client --site ... --superlink ... --root-certificates ... --auth-key ...``."""
        name = name or site
        if site not in self.local_ports:
            self.local_ports[site] = _free_ports(1)[0]
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

    def start_server(self, name: str, *args: str) -> None:
        """What the coordinator runs: ``axilla-server --study ... [--run-config ...] [--resume ...]``."""
        self.procs.start(
            name,
            [
                str(BIN / "axilla-server"), "--study", str(self.study), "--port", str(self.port),
                "--internal-port", str(self.internal_port), "--runs-dir", str(self.root / "runs"), *args,
                *(("--set", "validate-every=0") if "--resume" not in args else ()),
            ],
        )  # fmt: skip
        wait_until(lambda: "enrolled sites" in self.procs.log(name) or self.procs.started[name].poll() is not None, 120, f"{name} to start")
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


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A study with site_a and site_b (train) and site_ext (external) enrolled, and their clients running."""
    root = tmp_path_factory.mktemp("deployment")
    make_phantom(root / "sites", "tiny", seed=0)
    _cli("axilla-study", "--study", str(root / "study"), "init")
    for site in ("site_a", "site_b", "site_ext"):
        _cli("axilla-study", "--study", str(root / "study"), "add-site", site)
    port, internal = _free_ports(2)
    dep = Deployment(root, Processes(root / "logs"), port, internal)
    try:
        yield dep
    finally:
        survivors = dep.procs.stop_all()
        assert not survivors, f"processes outlived the tests: {survivors}"


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


def test_tls_authenticated_run_refusing_unenrolled_keys_and_foreign_certificates(deployment: Deployment) -> None:
    dep = deployment
    dep.start_server("server", "--run-config", str(REPO / "experiments" / "quick.toml"), "--set", "round-timeout=120", "--set", "run-id=reference")
    for site in ("site_a", "site_b", "site_ext"):
        dep.start_client(site)
    # An intruder: a valid site config and a key pair, but the key was never enrolled.
    _cli("axilla-client", "--generate-key", str(dep.root / "intruder.key"))
    intruder_yaml = dep.root / "sites" / "intruder" / "site.yaml"
    intruder_yaml.parent.mkdir()
    intruder_yaml.write_text(dep.site_yaml("site_ext").read_text().replace("site: site_ext", "site: intruder").replace("manifest.csv", str(dep.site_yaml("site_ext").parent / "manifest.csv")))
    dep.start_client("intruder", key=dep.root / "intruder.key")
    _check_connections_without_the_study_certificate_fail(dep)

    run_dir = dep.finish("server")
    dep.results["reference"] = run_dir
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
    dep.procs.kill("intruder")


def _check_connections_without_the_study_certificate_fail(dep: Deployment) -> None:
    """While a run is going: a wrong CA, the system's CAs and plain HTTP all fail; Control is not public."""
    other = dep.root / "other-study"
    _cli("axilla-study", "--study", str(other), "init")
    # A SuperNode trusting another CA cannot verify the SuperLink and never connects.
    dep.procs.start(
        "wrong-ca",
        [
            str(BIN / "flower-supernode"), "--superlink", f"127.0.0.1:{dep.port}", "--root-certificates", str(other / "ca.crt"),
            "--auth-supernode-private-key", str(dep.study / "outbox" / "site_a" / "site_a.key"), "--max-retries", "2",
            "--port", str(_free_ports(1)[0]),
        ],
        {"PATH": f"{BIN}:{os.environ['PATH']}"},
    )  # fmt: skip
    # Plain TLS clients: system roots do not trust the study CA; plain HTTP is not served.
    with pytest.raises(ssl.SSLCertVerificationError):
        with socket.create_connection(("127.0.0.1", dep.port), timeout=10) as raw:
            ssl.create_default_context().wrap_socket(raw, server_hostname="localhost")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{dep.port}/v1/fleet/", timeout=10)
    # With the study CA the public port answers the Fleet API only: the Control API is not exposed.
    control = httpx.post(f"https://127.0.0.1:{dep.port}/v1/control/ListNodes", verify=str(dep.study / "ca.crt"), timeout=10)
    assert control.status_code == 403
    wait_until(lambda: dep.procs.started["wrong-ca"].poll() is not None, 120, "the wrong-CA SuperNode to give up")
    log = dep.procs.log("wrong-ca").lower()
    assert dep.procs.started["wrong-ca"].returncode != 0 and "certificate verify failed" in log, log[-3000:]


def test_privacy_audit_every_reply_sent_holds_only_arrays_and_scalar_metrics(deployment: Deployment) -> None:
    """The sites' privacy guard logged every reply they sent in the reference run; all are arrays and scalars."""
    dep = deployment
    # The reference run (validate-every=0): handshake, 2 rounds of training, final validation and test.
    expected = {"site_a": {"query": 1, "train": 2, "evaluate": 2}, "site_ext": {"query": 1, "evaluate": 1}}
    expected["site_b"] = expected["site_a"]
    for site, want in expected.items():
        log = dep.site_yaml(site).parent / "output" / "audit" / "outgoing.jsonl"
        counts: dict[str, int] = {}
        for line in log.read_text().splitlines():
            _assert_only_arrays_and_scalars(json.loads(line), counts)
        assert counts == want, (site, counts)


def test_killed_server_resumes_to_the_uninterrupted_runs_model(deployment: Deployment) -> None:
    dep = deployment
    dep.start_server("server-killed", "--run-config", str(REPO / "experiments" / "quick.toml"), "--set", "round-timeout=120", "--set", "run-id=interrupted")
    run_dir = dep.root / "runs" / "interrupted"
    wait_until(lambda: (run_dir / "checkpoints" / "round-001.pt").exists(), SERVER_TIMEOUT, "round 1 of the run to be killed")
    dep.procs.kill("server-killed")  # the coordinator's machine crashes: SuperLink, gateway and ServerApp die
    assert not (run_dir / "checkpoints" / "final.pt").exists()
    dep.start_server("server-resumed", "--resume", str(run_dir))
    assert dep.finish("server-resumed") == run_dir
    reference = torch.load(dep.results["reference"] / "checkpoints" / "final.pt")
    resumed = torch.load(run_dir / "checkpoints" / "final.pt")
    assert reference.keys() == resumed.keys()
    for key in reference:
        torch.testing.assert_close(resumed[key], reference[key], rtol=1e-4, atol=1e-5)
    assert json.loads((run_dir / "config.json").read_text())["resumed"][0]["after_round"] >= 1
    rounds = sorted({(m["round"], m["site"]) for m in _metrics(run_dir) if m["split"] == "train"})
    assert rounds == [(1, "site_a"), (1, "site_b"), (2, "site_a"), (2, "site_b")]


def test_a_killed_site_is_missing_for_its_round_and_a_nan_site_is_rejected(deployment: Deployment) -> None:
    dep = deployment
    nan_yaml = dep.root / "sites" / "site_nan" / "site.yaml"
    nan_yaml.parent.mkdir()
    nan_yaml.write_text(dep.site_yaml("site_a").read_text().replace("site: site_a", "site: site_nan").replace("manifest.csv", str(dep.site_yaml("site_a").parent / "manifest.csv")))
    _cli("axilla-study", "--study", str(dep.study), "add-site", "site_nan")
    dep.start_server("server-faults", "--run-config", str(REPO / "experiments" / "quick.toml"), "--set", "round-timeout=150", "--set", "min-train-sites=1", "--set", "num-rounds=3", "--set", "run-id=faults")
    dep.start_client("site_nan", env={"PYTHONPATH": str(FAULTS), "AXILLA_FAULT": "nan-update"})
    trained_before = dep.procs.log("site_b").count("Receiving: train message")
    wait_until(lambda: dep.procs.log("site_b").count("Receiving: train message") > trained_before, SERVER_TIMEOUT, "site_b to receive round 1")
    dep.procs.kill("site_b")  # the hospital's machine dies during the round ...
    run_dir = dep.root / "runs" / "faults"
    wait_until(lambda: any(m["site"] == "site_b" for m in _metrics(run_dir)) if (run_dir / "metrics.jsonl").exists() else False, SERVER_TIMEOUT, "round 1 to close")
    dep.start_client("site_b", name="site_b-restarted")  # ... and comes back
    run_dir = dep.finish("server-faults")

    train = {(m["round"], m["site"]): m for m in _metrics(run_dir) if m["split"] == "train"}
    assert train[(1, "site_b")]["status"] == "missing", train[(1, "site_b")]
    # Used again once it is back (it reconnects while round 2 may already be under way).
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


def test_a_withdrawn_site_is_unregistered_and_a_stopped_server_leaves_nothing_running(deployment: Deployment) -> None:
    dep = deployment
    ext_node = json.loads((dep.study / "state" / "registered.json").read_text())["site_ext"]["node_id"]
    _cli("axilla-study", "--study", str(dep.study), "remove-site", "site_ext")
    dep.start_server("server-after-removal", "--run-config", str(REPO / "experiments" / "quick.toml"), "--set", "run-id=after-removal")
    assert "site_ext" not in json.loads((dep.study / "state" / "registered.json").read_text())
    listing = subprocess.run(
        [str(BIN / "flwr"), "supernode", "ls", "study", "--format", "json"],
        capture_output=True, text=True, timeout=60,
        env=os.environ | {"FLWR_HOME": str(dep.study / "state" / "flwr"), "PATH": f"{BIN}:{os.environ['PATH']}"},
    )  # fmt: skip
    nodes = {n["node-id"]: n for n in json.loads(listing.stdout[listing.stdout.index("{"):])["nodes"]}
    assert ext_node not in nodes or nodes[ext_node]["status"] not in ("online", "registered"), nodes.get(ext_node)
    assert {nodes[n]["status"] for n in nodes if n != ext_node} <= {"online", "registered", "offline"}
    server = dep.procs.started["server-after-removal"]
    server.terminate()  # the coordinator stops the service (SIGTERM)
    server.wait(60)
    time.sleep(2)
    ours = f"{dep.procs.run_tag}:server-after-removal"
    leftovers = [pid for pid in dep.procs.tagged() if ours.encode() in (Path("/proc") / str(pid) / "environ").read_bytes()]
    assert leftovers == [], "axilla-server left processes behind"
