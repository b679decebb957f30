"""Run a whole federation on one machine in Flower's simulation engine, then the baselines."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

from client.node_site import discover_sites
from models.run_config import RunConfig
from server.run_dir import RunDirectory, new_run_id
from simulation.baselines import run_baselines
from evaluation.report import write_report

logger = logging.getLogger("axilla.simulation")


class SimulationError(RuntimeError):
    """The simulation could not run or produced no run directory."""


def simulation_config(sites_dir: Path, overrides: Mapping[str, Any], runs_dir: Path | None = None) -> RunConfig:
    """The run config of a simulation: defaults, then overrides, then the facts of the sites folder."""
    sites = discover_sites(sites_dir)
    if not sites:
        raise SimulationError(f"{sites_dir} holds no site folder (expected <dir>/<site>/site.yaml)")
    if overrides.get("enrolment"):
        raise SimulationError("run config 'enrolment' is set by axilla-server from a study's enrolled keys; a simulation has no study")
    mapping = RunConfig().to_mapping() | dict(overrides)
    mapping["sim-sites-dir"] = str(Path(sites_dir).resolve())
    mapping["expected-sites"] = len(sites)
    mapping["run-id"] = mapping.get("run-id") or new_run_id()
    mapping["runs-dir"] = str(Path(runs_dir or mapping["runs-dir"]).resolve())
    return RunConfig.from_mapping(mapping)


def simulate(sites_dir: Path, overrides: Mapping[str, Any] | None = None, runs_dir: Path | None = None, client_cpus: float | None = None) -> Path:
    """Run the real ServerApp and ClientApp, one virtual node per site folder; return the run directory."""
    cfg = simulation_config(sites_dir, overrides or {}, runs_dir)
    run_dir = RunDirectory(Path(cfg.runs_dir) / cfg.run_id)
    truth = Path(sites_dir) / "_truth" / "bayes_auc.json"
    if truth.exists():
        (run_dir.path / "phantom.json").write_text(json.dumps({"bayes_auc": json.loads(truth.read_text())}, indent=2))
    _run_flower(cfg, client_cpus or float(os.cpu_count() or 1))
    if not (run_dir.path / "config.json").exists():
        raise SimulationError(f"the federation wrote no run directory at {run_dir.path}; see the log above")
    if cfg.baselines:
        run_baselines(run_dir, cfg, discover_sites(Path(cfg.sim_sites_dir)))
    write_report(run_dir.path)
    return run_dir.path


def _run_flower(cfg: RunConfig, client_cpus: float) -> None:
    """Start Flower's simulation engine (Ray backend) with the ServerApp's run config set."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    from client.app import app as client_app
    from server.app import app as server_app
    from server.flower_compat import run_simulation_with_run_config

    total = float(os.cpu_count() or 1)
    run_simulation_with_run_config(
        server_app,
        client_app,
        num_supernodes=cfg.expected_sites,
        backend_config={
            "client_resources": {"num_cpus": min(client_cpus, total), "num_gpus": 0.0},
            "init_args": {"num_cpus": int(total), "include_dashboard": False},
        },
        run_config=cfg.to_mapping(),
    )
