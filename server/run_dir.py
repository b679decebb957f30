"""The run directory: config.json, checkpoints/, metrics.jsonl (see DESIGN.md)."""

from __future__ import annotations

import json
import os
import platform
import re
import secrets
import time
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Mapping

import torch
from flwr.app import ArrayRecord, MetricRecord

from strategies.sites import NodeSite

CHECKPOINT = re.compile(r"^round-(\d+)\.pt$")
PACKAGES = ("axilla", "flwr", "torch", "monai", "numpy", "scikit-learn", "pydicom")


def new_run_id() -> str:
    """A sortable, unique run id."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def package_versions() -> dict[str, str]:
    """Versions of the packages a result depends on."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def _site_record(site: NodeSite) -> dict[str, Any]:
    """A site as config.json stores it (no node id: node ids change between runs)."""
    record = asdict(site)
    del record["node_id"]
    record["counts"] = {split: {str(label): n for label, n in c.items()} for split, c in site.counts.items()}
    return record


FEDERATED = "federated"


class RunDirectory:
    """Writes one run's files; also the strategies' round observer.

    ``model`` names whose rows and checkpoints it writes: the federated model, or a simulation
    baseline (``local:<site>``, ``pooled``), whose stage checkpoints are ``<baseline>[-<stage>].pt``
    and which keeps no per-round checkpoints (baselines are not resumed).
    """

    def __init__(self, path: Path, model: str = FEDERATED, row: str = "") -> None:
        self.path = Path(path)
        self.model = model
        self.row = row  # a stage's model within ``model`` (the cine pipeline's ``static``, ``tin``...): rows say ``<model>/<row>``
        (self.path / "checkpoints").mkdir(parents=True, exist_ok=True)
        self.metrics_file = self.path / "metrics.jsonl"

    @property
    def rows(self) -> str:
        """The model name this directory's metrics rows carry."""
        return f"{self.model}/{self.row}" if self.row else self.model

    def for_model(self, model: str) -> RunDirectory:
        """The same directory, writing another model's rows and checkpoints."""
        return RunDirectory(self.path, model)

    def for_row(self, row: str) -> RunDirectory:
        """The same directory and model, writing the rows of one of its stages' models (``row``: the stage's, '' for the model itself)."""
        return RunDirectory(self.path, self.model, row)

    def stage_checkpoint(self, name: str) -> str:
        """The checkpoint name of a stage's final model (``name`` is the stage's, ``final`` for the run's last)."""
        if self.model == FEDERATED:
            return name
        slug = self.model.replace(":", "-")
        return slug if name == "final" else f"{slug}-{name}"

    def save_round(self, server_round: int, state: dict[str, torch.Tensor] | ArrayRecord) -> None:
        """Checkpoint a round's global model (the federated model only: it is the one a run resumes)."""
        if self.model == FEDERATED:
            self.save_checkpoint(f"round-{server_round:03d}", state)

    def write_config(self, run: Mapping[str, Any], sites: list[NodeSite], excluded: dict[str, str], description: Mapping[str, Any] | None = None) -> None:
        """Record the run config, the settings the report shows (``description``), the sites seen at the handshake, excluded nodes and package versions."""
        payload = {
            "run": dict(run),
            "description": dict(description or {}),
            "sites": [_site_record(s) for s in sites],
            "excluded": excluded,
            "versions": package_versions(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (self.path / "config.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")

    def save_checkpoint(self, name: str, state: dict[str, torch.Tensor] | ArrayRecord) -> Path:
        """Save a state dict under checkpoints/<name>.pt."""
        if isinstance(state, ArrayRecord):
            state = state.to_torch_state_dict()
        target = self.path / "checkpoints" / f"{name}.pt"
        partial = target.with_suffix(".pt.partial")
        torch.save(state, partial)
        os.replace(partial, target)  # a checkpoint on disk is always complete, even if the server is killed
        return target

    def save_server_state(self, server_round: int, state: ArrayRecord) -> None:
        """Keep a server optimiser's state after a round (the federated model only; saved before the round's checkpoint, so every checkpoint has it)."""
        if self.model == FEDERATED:
            self.save_checkpoint(f"round-{server_round:03d}-server", state)

    def load_server_state(self, server_round: int) -> ArrayRecord | None:
        """The server optimiser's state saved after ``server_round`` (None if none was)."""
        name = f"round-{server_round:03d}-server"
        return self.load_checkpoint(name) if (self.path / "checkpoints" / f"{name}.pt").is_file() else None

    def last_round(self) -> int:
        """The highest round with a checkpoint (0: only the initial model; -1: none)."""
        rounds = [int(m.group(1)) for p in (self.path / "checkpoints").glob("round-*.pt") if (m := CHECKPOINT.match(p.name))]
        return max(rounds, default=-1)

    def load_checkpoint(self, name: str) -> ArrayRecord:
        """A saved checkpoint as arrays."""
        return ArrayRecord(torch.load(self.path / "checkpoints" / f"{name}.pt", map_location="cpu", weights_only=True))

    def drop_records_after(self, server_round: int) -> int:
        """Remove metrics.jsonl lines of rounds after ``server_round`` and of the final evaluation; return how many."""
        if not self.metrics_file.exists():
            return 0
        lines = self.metrics_file.read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines if isinstance(r := json.loads(line)["round"], int) and r <= server_round]
        partial = self.metrics_file.with_suffix(".jsonl.partial")
        partial.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        os.replace(partial, self.metrics_file)
        for stale in ("comparisons.jsonl", "personalisation.jsonl", "stopped.json"):
            (self.path / stale).unlink(missing_ok=True)
        return len(lines) - len(kept)

    def note_resume(self, from_round: int, sites: list[NodeSite], excluded: dict[str, str]) -> None:
        """Add a ``resumed`` entry (round, sites present, time) to config.json."""
        path = self.path / "config.json"
        payload = json.loads(path.read_text(encoding="utf-8"))
        payload.setdefault("resumed", []).append(
            {
                "after_round": from_round,
                "sites": [_site_record(s) for s in sites],
                "excluded": excluded,
                "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
        )
        path.write_text(json.dumps(payload, indent=2), encoding="utf-8")

    def write_stopped(self, reason: str) -> int:
        """Record why the run stopped early (stopped.json) and the last round it completed; return that round."""
        last = self.last_round()
        payload = {"reason": reason, "last_complete_round": last, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (self.path / "stopped.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
        return last

    def record(
        self, round_: int | str, model: str, site: str, split: str, metrics: Mapping[str, Any] | None, reason: str = "", segmenter: str = ""
    ) -> None:
        """Append one (round, model, site, split) line to metrics.jsonl; ``metrics=None`` marks a missing site.

        ``segmenter`` names the segmentation network (or fusion) a line is about, if any.
        """
        line: dict[str, Any] = {"round": round_, "model": model, "site": site, "split": split}
        if segmenter:
            line["segmenter"] = segmenter
        if metrics is None:
            line |= {"status": "missing", "reason": reason}
        else:
            line |= {"status": "ok", "metrics": {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in metrics.items()}}
        with self.metrics_file.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")

    def write_cross_validation(self, folds: int, models: list[dict[str, Any]]) -> None:
        """Record cross-validation's per-fold validation and chosen folds (``cv.json``; for the federated model, or a baseline's entries added)."""
        path = self.path / "cv.json"
        payload = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"folds": folds, "selection": "highest pooled validation AUC", "models": []}
        names = {m["model"] for m in models}
        payload["models"] = [m for m in payload["models"] if m["model"] not in names] + models
        path.write_text(json.dumps(payload, indent=2), encoding="utf-8")

    def record_comparison(self, site: str, split: str, row: Mapping[str, Any]) -> None:
        """Append one paired model comparison made at a site to comparisons.jsonl."""
        with (self.path / "comparisons.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"site": site, "split": split, **row}) + "\n")

    def record_personal(self, site: str, row: Mapping[str, Any]) -> None:
        """Append what a test site said of its personalised model to personalisation.jsonl."""
        with (self.path / "personalisation.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"site": site, **row}) + "\n")

    # RoundObserver ---------------------------------------------------------------------------
    def trained(self, server_round: int, arrays: ArrayRecord | None, per_site: dict[str, MetricRecord], missing: dict[str, str]) -> None:
        """Checkpoint the new global model and log each site's training metrics."""
        if arrays is not None:
            self.save_round(server_round, arrays)
        self._log_round(server_round, "train", per_site, missing)

    def evaluated(self, server_round: int, per_site: dict[str, MetricRecord], missing: dict[str, str]) -> None:
        """Log each training site's validation metrics of the round's global model."""
        self._log_round(server_round, "val", per_site, missing)

    def _log_round(self, server_round: int, split: str, per_site: dict[str, MetricRecord], missing: dict[str, str]) -> None:
        for site, metrics in per_site.items():
            self.record(server_round, self.rows, site, split, dict(metrics))
        for site, reason in missing.items():
            self.record(server_round, self.rows, site, split, None, reason)
