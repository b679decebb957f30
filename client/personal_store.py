"""Ditto's personal models at a site: one file per (run, stage, network layout) under ``output_dir``, outliving Flower's per-message processes."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from models.run_config import RunConfig

State = Mapping[str, torch.Tensor]


class PersonalStore:
    """Ditto's personal models under the site's ``output_dir``, one file per (run, stage, layout), written atomically."""

    def __init__(self, output_dir: Path | str) -> None:
        self.root = Path(output_dir) / "personal"

    def path(self, cfg: RunConfig, stage_offset: int, layout: Any) -> Path:
        """Where the personal model of a run's stage (starting after round ``stage_offset``) of one layout lives."""
        run = hashlib.sha256((cfg.run_id or "run").encode()).hexdigest()[:16]
        digest = hashlib.sha256(repr(layout).encode()).hexdigest()[:16]
        return self.root / run / f"stage{stage_offset}-{digest}.pt"

    def load(self, cfg: RunConfig, stage_offset: int, layout: Any) -> dict[str, torch.Tensor] | None:
        """The stored personal model, or None if the site holds none yet."""
        path = self.path(cfg, stage_offset, layout)
        return torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None

    def save(self, cfg: RunConfig, stage_offset: int, layout: Any, state: State) -> Path:
        """Store a personal model (a temporary file renamed over the old one: a reader never sees half a file)."""
        path = self.path(cfg, stage_offset, layout)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        torch.save(dict(state), tmp)
        os.replace(tmp, path)
        return path
