"""Arrays a site keeps between messages for one model of a run's stage (FedBN's normalisation state, SCAFFOLD's control variate).

Flower starts a process per message and a site may restart, so the arrays live in a file under
``<output_dir>/state/<run>/<model>-stage<offset>.<kind>.npz`` (plain arrays, no pickle), written
atomically, with the digest of the layout they were made for: arrays kept for another layout are
ignored with a warning (the site starts afresh). They never leave the site.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

logger = logging.getLogger("axilla.client")


def _safe(name: str) -> str:
    """A file-name-safe, collision-free form of a run or model name."""
    return f"{re.sub(r'[^A-Za-z0-9_-]', '_', name)[:40]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


class LocalState:
    """One kind of site-local arrays for one model of one stage of one run."""

    def __init__(self, output_dir: Path, run_id: str, model: str, stage_offset: int, kind: str) -> None:
        self.path = Path(output_dir) / "state" / _safe(run_id or "unnamed-run") / f"{_safe(model)}-stage{stage_offset}.{kind}.npz"
        self.kind = kind

    def load(self, layout: str) -> dict[str, np.ndarray] | None:
        """The kept arrays by name, or None if there are none, they are unreadable, or were kept for another layout (warned)."""
        if not self.path.is_file():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as data:
                kept = str(data["__layout__"])
                keys = [str(k) for k in data["__keys__"]]
                arrays = {key: data[f"{i:05d}"] for i, key in enumerate(keys)}
        except (OSError, ValueError, KeyError) as err:
            logger.warning("site-local %s state %s is unreadable (%s); starting afresh", self.kind, self.path, err)
            return None
        if kept != layout:
            logger.warning("site-local %s state %s was kept for layout %s, not this model's %s; starting afresh", self.kind, self.path, kept, layout)
            return None
        return arrays

    def save(self, arrays: Mapping[str, np.ndarray], layout: str) -> None:
        """Keep the arrays (replacing any earlier ones) atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.path.parent, suffix=".partial", delete=False) as handle:
            named = {f"{i:05d}": np.asarray(v) for i, v in enumerate(arrays.values())}
            np.savez(handle, **named, __keys__=np.array(list(arrays), dtype=str), __layout__=np.array(layout))
        os.replace(handle.name, self.path)
