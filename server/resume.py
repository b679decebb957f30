"""Resuming a run from its directory: the stored run config and the last complete round's checkpoint."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from flwr.app import ArrayRecord

from models.run_config import RunConfig
from models.stages import plan_for
from server.run_dir import RunDirectory

logger = logging.getLogger("axilla.server")

# Keys that may differ between the interrupted and the resumed submission: they do not change the result.
OPERATIONAL = ("round-timeout", "expected-sites", "min-train-sites", "validate-every", "resume-from", "runs-dir", "run-id", "enrolment")


class ResumeError(ValueError):
    """The run directory cannot be resumed (no config, no checkpoint, or a different experiment)."""


@dataclass(frozen=True)
class ResumePoint:
    """Where a resumed run starts."""

    cfg: RunConfig
    completed_rounds: int
    arrays: ArrayRecord


def resume_point(run_dir: RunDirectory, submitted: RunConfig) -> ResumePoint:
    """The stored experiment with the submission's operational keys, and the last complete round's model."""
    config_file = run_dir.path / "config.json"
    if not config_file.is_file():
        raise ResumeError(f"{config_file}: missing; only a run that passed its handshake can be resumed")
    stored = json.loads(config_file.read_text(encoding="utf-8"))["run"]
    wanted = submitted.to_mapping()
    differing = sorted(k for k, v in wanted.items() if k not in OPERATIONAL and k in stored and stored[k] != v and v != RunConfig().to_mapping()[k])
    if differing:
        raise ResumeError(
            f"{config_file}: the resumed submission changes {', '.join(differing)}; a resumed run must be the same experiment"
        )
    cfg = RunConfig.from_mapping(stored | {k: wanted[k] for k in OPERATIONAL if k in wanted and k != "run-id"})
    cfg = cfg.replace(resume_from=str(run_dir.path), run_id=str(stored.get("run-id") or run_dir.path.name))
    done = run_dir.last_round()
    if done < 0:
        raise ResumeError(f"{run_dir.path / 'checkpoints'}: no round checkpoint to resume from")
    done = min(done, plan_for(cfg).total_rounds)
    dropped = run_dir.drop_records_after(done)
    logger.info("resuming %s after round %d (%d partial record(s) dropped)", run_dir.path, done, dropped)
    return ResumePoint(cfg, done, run_dir.load_checkpoint(f"round-{done:03d}"))
