"""Deployment on loopback, the reference scenario: a TLS-authenticated run with an intruder, foreign
certificates and abusive requests at the gateway, the privacy audit of every reply, a crashed
coordinator that resumes, a withdrawn site and a clean stop (helpers and conventions:
``tests/server/deployment.py``).
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import torch

from server.study_cli import main as study_main
from tests.server.deployment import (  # noqa: F401 (tiny_phantom: a fixture)
    BIN,
    QUICK,
    ROUND_TIMEOUT,
    SERVER_TIMEOUT,
    SITES,
    START_TIMEOUT,
    Deployment,
    assert_only_arrays_and_scalars,
    cli,
    metrics,
    nodes,
    study,
    tiny_phantom,
)
from tests.server.processes import PORTS, wait_until

# A class fixture runs whole federations (the first test's setup carries them): a longer bound than the suite's 900 s.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]


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
    _probe_the_gateways_limits(dep, probes)
    wait_until(lambda: dep.procs.started["wrong-ca"].poll() is not None, START_TIMEOUT, "the wrong-CA SuperNode to give up")
    return probes


def _probe_the_gateways_limits(dep: Deployment, probes: dict[str, object]) -> None:
    """With the study's certificate: a body one byte over the cap the coordinator gave the gateway, and a body that never completes."""
    cap = int(re.search(r"body cap (\d+) bytes", (dep.study / "state" / "superlink.log").read_text())[1])
    probes["cap"] = cap
    oversized = httpx.post(f"https://127.0.0.1:{dep.port}/v1/fleet/push-object", content=b"\0" * (cap + 1), verify=str(dep.study / "ca.crt"), timeout=60)
    probes["oversized"] = oversized.status_code
    context = ssl.create_default_context(cafile=str(dep.study / "ca.crt"))
    with context.wrap_socket(socket.create_connection(("127.0.0.1", dep.port), timeout=120), server_hostname="localhost") as conn:
        conn.sendall(b"POST /v1/fleet/push-object HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n" + b"\0" * 10)
        probes["never-completes"] = conn.recv(64).split(b"\r\n")[0].decode()  # waits for the gateway's answer (or a close)


class TestReferenceStudy:
    """An uninterrupted reference run with an intruder and foreign certificates; its twin's coordinator crashes and resumes."""

    @pytest.fixture(scope="class")
    def runs(self, tmp_path_factory: pytest.TempPathFactory, tiny_phantom: Path) -> Iterator[ReferenceRuns]:
        """Both runs (2 rounds, validate-every=0) side by side, shared by this class's tests; the tests read what they left.

        The crashed run has its own study so that it can go on while the reference run does: one
        study has one SuperLink, which serves one axilla-server at a time.
        """
        with study(tmp_path_factory, "reference", tiny_phantom) as dep, study(tmp_path_factory, "crashed", tiny_phantom) as twin:
            # An intruder: a valid site config and a key pair, but the key was never enrolled.
            cli("axilla-client", "--generate-key", str(dep.root / "intruder.key"))
            dep.copy_site("intruder", like="site_ext")
            dep.start_server(
                "server", "--run-config", str(QUICK), "--set", ROUND_TIMEOUT, "--set", "run-id=reference", "--request-timeout", "10", wait=False
            )  # fmt: skip
            twin.start_server("server-killed", "--run-config", str(QUICK), "--set", ROUND_TIMEOUT, "--set", "run-id=interrupted", wait=False)
            dep.wait_serving("server")
            twin.wait_serving("server-killed")
            for site in SITES:
                dep.start_client(site)
                twin.start_client(site)
            dep.start_client("intruder", key=dep.root / "intruder.key", light=True)
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
        # Abuse at the gateway is refused while the run goes on: a body over the cap sized to the run's
        # models (twice the quick classifier's 1.2 MB, plus 4 MiB), and a body that never completes.
        assert 4 * 2**20 < runs.probes["cap"] < 8 * 2**20  # type: ignore[operator]
        assert runs.probes["oversized"] == 413
        assert runs.probes["never-completes"] == "HTTP/1.1 408 Request Timeout"
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
                assert_only_arrays_and_scalars(entry, counts)
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
        rounds = sorted({(m["round"], m["site"]) for m in metrics(run_dir) if m["split"] == "train"})
        assert rounds == [(1, "site_a"), (1, "site_b"), (2, "site_a"), (2, "site_b")]

    def test_a_withdrawn_site_is_unregistered_and_a_stopped_server_leaves_nothing_running(self, runs: ReferenceRuns) -> None:
        dep = runs.dep  # its sites were registered at the SuperLink by the reference run
        ext_node = json.loads((dep.study / "state" / "registered.json").read_text())["site_ext"]["node_id"]
        cli("axilla-study", "--study", str(dep.study), "remove-site", "site_ext")
        dep.start_server("server-after-removal", "--run-config", str(QUICK), "--set", "run-id=after-removal")
        assert "site_ext" not in json.loads((dep.study / "state" / "registered.json").read_text())
        listed = nodes(dep)
        assert ext_node not in listed or listed[ext_node]["status"] not in ("online", "registered"), listed.get(ext_node)
        assert {listed[n]["status"] for n in listed if n != ext_node} <= {"online", "registered", "offline"}
        server = dep.procs.started["server-after-removal"]
        server.terminate()  # the coordinator stops the service (SIGTERM)
        server.wait(60)
        ours = f"{dep.procs.run_tag}:server-after-removal"  # SuperLink, gateway, flwr run and ServerApp all carry it
        wait_until(lambda: not dep.procs.tagged(ours), 30, "axilla-server to leave no process running after SIGTERM")
