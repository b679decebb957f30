"""The study's SuperLink process and the ``flwr`` CLI calls that enrol sites and submit runs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from server.gateway import GatewayLimits
from server.study import Study, StudyError, enrolled_sites

CONNECTION = "study"  # the SuperLink connection's name in the study's Flower config


class SuperLinkError(RuntimeError):
    """The SuperLink did not start, or a ``flwr`` CLI call failed."""


def executable(name: str) -> str:
    """A console script next to this Python, else on PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else (shutil.which(name) or name)


def with_own_bin_on_path() -> str:
    """PATH with this Python's script folder first, so Flower finds its helper executables in an unactivated venv."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


@dataclass(frozen=True)
class SuperLinkSettings:
    """Where the SuperLink listens and keeps its state."""

    study: Study
    host: str = "0.0.0.0"
    port: int = 9092  # public: the Fleet-only gateway hospitals connect to
    internal_port: int = 9093  # loopback: the SuperLink itself (Fleet, Control and Runtime APIs)
    gateway: GatewayLimits = field(default_factory=GatewayLimits)  # the public gateway's limits (axilla-server sizes the body cap)

    @property
    def database(self) -> Path:
        """SuperLink state (registered nodes, runs); kept so node ids survive restarts."""
        return self.study.root / "state" / "superlink.db"

    @property
    def flwr_home(self) -> Path:
        """``FLWR_HOME`` for the coordinator's ``flwr`` CLI calls."""
        return self.study.root / "state" / "flwr"

    @property
    def log_file(self) -> Path:
        """The SuperLink's log."""
        return self.study.root / "state" / "superlink.log"


def superlink_command(settings: SuperLinkSettings) -> list[str]:
    """``flower-superlink`` with TLS from the study, SuperNode authentication and a persistent state."""
    study = settings.study
    return [
        executable("flower-superlink"),
        "--ssl-ca-certfile", str(study.ca_cert),
        "--ssl-certfile", str(study.server_cert),
        "--ssl-keyfile", str(study.server_key),
        "--enable-supernode-auth",
        "--database", str(settings.database),
        "--host", "127.0.0.1",
        "--port", str(settings.internal_port),
        "--disable-runtime-dependency-installation",
    ]  # fmt: skip


def write_flwr_config(settings: SuperLinkSettings) -> Path:
    """The coordinator's Flower config: one TLS connection to the local SuperLink."""
    settings.flwr_home.mkdir(parents=True, exist_ok=True)
    path = settings.flwr_home / "config.toml"
    path.write_text(
        f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
        f'address = "127.0.0.1:{settings.internal_port}"\nroot-certificates = {json.dumps(str(settings.study.ca_cert.resolve()))}\n',
        encoding="utf-8",
    )
    return path


def flwr_env(settings: SuperLinkSettings) -> dict[str, str]:
    """Environment of every ``flwr`` CLI call and of the SuperLink."""
    return os.environ | {
        "PATH": with_own_bin_on_path(),  # the SuperLink starts flower-superexec and flwr-serverapp by name
        "FLWR_HOME": str(settings.flwr_home.resolve()),
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
    }


def gateway_command(settings: SuperLinkSettings) -> list[str]:
    """The Fleet-only TLS gateway on the public address, forwarding to the loopback SuperLink."""
    study = settings.study
    return [
        sys.executable, "-m", "server.gateway",
        "--host", settings.host, "--port", str(settings.port),
        "--upstream", f"https://127.0.0.1:{settings.internal_port}",
        "--ca-cert", str(study.ca_cert), "--cert", str(study.server_cert), "--key", str(study.server_key),
        "--max-body-bytes", str(settings.gateway.max_body_bytes), "--request-timeout", str(settings.gateway.request_timeout),
        "--upstream-timeout", str(settings.gateway.upstream_timeout), "--max-connections", str(settings.gateway.max_connections),
    ]  # fmt: skip


def start_superlink(settings: SuperLinkSettings, ready_timeout: float = 60.0) -> list[subprocess.Popen[bytes]]:
    """Start the SuperLink on loopback and the public gateway (both in this process group); wait until both listen."""
    settings.study.check()
    settings.database.parent.mkdir(parents=True, exist_ok=True)
    write_flwr_config(settings)
    started: list[subprocess.Popen[bytes]] = []
    try:
        for name, cmd, port in (
            ("the SuperLink", superlink_command(settings), settings.internal_port),
            ("the gateway", gateway_command(settings), settings.port),
        ):
            with settings.log_file.open("ab") as log:  # the child keeps its own handle
                started.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=flwr_env(settings)))
            _wait_listening(started[-1], name, port, ready_timeout, settings.log_file)
    except BaseException:
        for proc in reversed(started):
            stop_process(proc)
        raise
    return started


def _wait_listening(proc: subprocess.Popen[bytes], name: str, port: int, timeout: float, log_file: Path) -> None:
    """Wait until ``proc`` accepts connections on ``port`` on loopback."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SuperLinkError(f"{name} exited with code {proc.returncode}; see {log_file}:\n{_tail(log_file)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise SuperLinkError(f"{name} did not listen on port {port} within {timeout:.0f} s; see {log_file}")


def stop_process(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def flwr_cli(settings: SuperLinkSettings, *args: str, timeout: float = 120.0) -> dict:
    """Run ``flwr <args> --format json`` against the study's SuperLink; return its JSON answer."""
    cmd = [executable("flwr"), *args, CONNECTION, "--format", "json"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=flwr_env(settings), timeout=timeout)
    start = done.stdout.find("{")
    try:
        answer = json.loads(done.stdout[start:]) if start >= 0 else {}
    except json.JSONDecodeError:
        answer = {}
    if not answer:
        raise SuperLinkError(f"`flwr {' '.join(args)}` failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    return answer


def sync_enrolment(settings: SuperLinkSettings) -> dict[str, str]:
    """Register every enrolled site's key and unregister withdrawn ones; return site -> node id.

    ``state/registered.json`` remembers which node id each site's key was given, so that a
    site removed with ``axilla-study remove-site`` is unregistered at the next start.
    """
    record_path = settings.study.root / "state" / "registered.json"
    registered: dict[str, dict[str, str]] = json.loads(record_path.read_text()) if record_path.exists() else {}
    enrolled = enrolled_sites(settings.study)
    if not enrolled:
        raise StudyError(f"no site is enrolled in {settings.study.root}; add them with `axilla-study add-site`")
    for site, entry in list(registered.items()):
        if enrolled.get(site, b"").decode() != entry["key"]:
            if not entry["node_id"]:
                raise SuperLinkError(_lost_node_id(settings, site))
            answer = flwr_cli(settings, "supernode", "unregister", entry["node_id"])
            if not answer.get("success") and "not found" not in str(answer.get("error-message", "")).lower():
                raise SuperLinkError(f"could not unregister withdrawn site '{site}': {answer.get('error-message')}")
            del registered[site]
    for site, key in enrolled.items():
        # Always register: the SuperLink's database may be new even if registered.json is not.
        key_file = settings.study.enrolled_dir / f"{site}.pub"
        answer = flwr_cli(settings, "supernode", "register", str(key_file), "--name", site)
        if answer.get("success"):
            registered[site] = {"node_id": str(answer["node-id"]), "key": key.decode()}
        elif "already in use" in str(answer.get("error-message", "")):
            registered.setdefault(site, {"node_id": "", "key": key.decode()})
        else:
            raise SuperLinkError(f"could not register site '{site}': {answer.get('error-message')}")
    record_path.write_text(json.dumps(registered, indent=2), encoding="utf-8")
    for site, entry in registered.items():
        if not entry["node_id"]:  # the handshake binds a node's claim to its key through this id
            raise SuperLinkError(_lost_node_id(settings, site))
    return {site: entry["node_id"] for site, entry in registered.items()}


def _lost_node_id(settings: SuperLinkSettings, site: str) -> str:
    """The error for a key the SuperLink holds under a node id this study no longer knows."""
    return (
        f"site '{site}': its key is registered in {settings.database} but {settings.study.root / 'state' / 'registered.json'} "
        f"does not hold its node id, so its handshake cannot be checked against its enrolment; stop the server, remove "
        f"{settings.database} and start again (every enrolled key is registered anew)"
    )
