"""The coordinator's job: start the study's SuperLink, enrol sites, submit one experiment and follow it."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import tomli_w

from models.run_config import RunConfig, Scalar
from models.stages import plan_for
from server.run_dir import new_run_id
from server.superlink import CONNECTION, SuperLinkSettings, executable, flwr_env, start_superlink, stop_process, sync_enrolment
from server.enrolment import Enrolled, write_enrolment
from server.gateway import MIB
from server.study import StudyError, enrolled_roles, enrolled_sites


class CoordinatorError(RuntimeError):
    """The experiment could not be submitted or did not finish."""


@dataclass(frozen=True)
class Outcome:
    """How a submitted experiment ended."""

    run_dir: Path
    status: str  # "completed" | "stopped" | "failed"
    message: str


def app_dir() -> Path:
    """The axilla Flower App: the source tree whose pyproject.toml has ``[tool.flwr.app]``."""
    root = Path(__file__).resolve().parents[1]
    project = root / "pyproject.toml"
    if not project.is_file() or "[tool.flwr.app]" not in project.read_text(encoding="utf-8"):
        raise CoordinatorError(f"{root}: not the axilla source tree (no [tool.flwr.app] in pyproject.toml); pass --app")
    return root


def submission(overrides: dict[str, Scalar], runs_dir: Path, n_enrolled: int, resume: Path | None) -> RunConfig:
    """The run config to submit: a new experiment, or the stored one of ``resume`` with ``overrides``' operational keys."""
    if resume is not None:
        config_file = resume / "config.json"
        if not config_file.is_file():
            raise CoordinatorError(f"{config_file}: missing; --resume needs a run directory that passed its handshake")
        stored = json.loads(config_file.read_text(encoding="utf-8"))["run"]
        return RunConfig.from_mapping(stored | overrides).replace(resume_from=str(resume.resolve()), runs_dir=str(resume.resolve().parent))
    cfg = RunConfig.from_mapping(overrides)
    return cfg.replace(
        runs_dir=str(runs_dir.resolve()),
        run_id=cfg.run_id or new_run_id(),
        expected_sites=cfg.expected_sites or n_enrolled,
    )


def body_cap(cfg: RunConfig) -> int:
    """The gateway's request body cap for a run: twice the bytes of all its models (every stage's), plus 4 MiB of framing.

    No message of the run is larger: a message carries at most every model of the plan once
    (Flower sends it as several requests, one object each). The sizes come from each model's
    layout, built on the meta device (no weights), as the sites unpack models.
    """
    import numpy as np

    from client.work import model_layout  # torch and MONAI: only for a submission

    layouts = (model_layout(stage.cfg) for stage in plan_for(cfg).stages)
    return 2 * sum(int(np.prod(shape)) * np.dtype(dtype).itemsize for layout in layouts for _, dtype, shape in layout) + 4 * MIB


def write_run_config(cfg: RunConfig, path: Path) -> Path:
    """The submission as a TOML file for ``flwr run --run-config``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(cfg.to_mapping()), encoding="utf-8")
    return path


def outcome_of(run_dir: Path, returncode: int) -> Outcome:
    """Read how the run ended from its directory."""
    stopped = run_dir / "stopped.json"
    if stopped.exists():
        reason = json.loads(stopped.read_text(encoding="utf-8"))["reason"]
        return Outcome(run_dir, "stopped", f"the run stopped: {reason}")
    if (run_dir / "report.json").exists() and (run_dir / "checkpoints" / "final.pt").exists():
        return Outcome(run_dir, "completed", "the run completed")
    return Outcome(run_dir, "failed", f"the run failed (flwr exit code {returncode}); see the ServerApp log above")


def run_experiment(
    settings: SuperLinkSettings,
    overrides: dict[str, Scalar],
    runs_dir: Path,
    resume: Path | None = None,
    app: Path | None = None,
    max_body_bytes: int | None = None,
) -> Outcome:
    """Start the SuperLink, enrol the study's sites, submit the experiment, follow its log, stop the SuperLink.

    The gateway's body cap is ``max_body_bytes``, or else sized to the run (``body_cap``).
    """
    sites = enrolled_sites(settings.study)
    if not sites:
        raise StudyError(f"no site is enrolled in {settings.study.root}; add them with `axilla-study add-site`")
    roles = enrolled_roles(settings.study)
    cfg = submission(overrides, runs_dir, len(sites), resume)
    app = app or app_dir()
    settings = replace(settings, gateway=replace(settings.gateway, max_body_bytes=max_body_bytes or body_cap(cfg)))
    processes = start_superlink(settings)
    try:
        node_ids = sync_enrolment(settings)
        enrolment = write_enrolment(
            settings.study.root / "state" / "enrolment.json", {int(node): Enrolled(site, roles[site]) for site, node in node_ids.items()}
        )
        cfg = cfg.replace(enrolment=str(enrolment.resolve()))
        config_file = write_run_config(cfg, settings.study.root / "state" / "submissions" / f"{cfg.run_id}.toml")
        print(f"SuperLink serving hospitals on {settings.host}:{settings.port} (Fleet API only, body cap {settings.gateway.max_body_bytes / MIB:.1f} MiB); "
              f"enrolled sites: {', '.join(sorted(node_ids))}", flush=True)
        print(f"submitting run {cfg.run_id} (run config: {config_file})", flush=True)
        cmd = [executable("flwr"), "run", str(app), CONNECTION, "--run-config", str(config_file), "--stream"]
        done = subprocess.run(cmd, env=flwr_env(settings), check=False)
    finally:
        for proc in reversed(processes):
            stop_process(proc)
    return outcome_of(Path(cfg.runs_dir) / cfg.run_id, done.returncode)
