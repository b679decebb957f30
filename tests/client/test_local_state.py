"""Site-local arrays kept between messages: atomic files, per run, model, stage and layout."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from client.local_state import LocalState


def read_in_new_process(output_dir: Path, kind: str, digest: str) -> tuple[list[str], float]:
    """What a fresh Python process reads back from run r1's kept ``kind`` arrays: their names, sorted, and the float64 sum of their values."""
    code = (
        "import sys; from pathlib import Path; from client.local_state import LocalState; "
        f"kept = LocalState(Path(sys.argv[1]), 'r1', 'federated', 0, {kind!r}).load({digest!r}); "
        "print(','.join(sorted(kept)), sum(float(v.astype('float64').sum()) for v in kept.values()))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(output_dir)], capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2])
    names, total = out.stdout.split()
    return names.split(","), float(total)


def test_kept_arrays_come_back_in_a_new_process_and_per_run_model_and_stage(tmp_path: Path) -> None:
    LocalState(tmp_path, "r1", "federated", 0, "norm").save({"b": np.arange(3.0), "a": np.array(2, np.int64)}, "digest-1")
    assert read_in_new_process(tmp_path, "norm", "digest-1") == (["a", "b"], 5.0)
    for other in (LocalState(tmp_path, "r2", "federated", 0, "norm"), LocalState(tmp_path, "r1", "local:a", 0, "norm"), LocalState(tmp_path, "r1", "federated", 3, "norm")):
        assert other.load("digest-1") is None
    assert not list(tmp_path.rglob("*.partial"))


def test_arrays_kept_for_another_layout_are_ignored_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = LocalState(tmp_path, "r1", "federated", 0, "norm")
    store.save({"bn.weight": np.ones(2, np.float32)}, "aaaaaaaaaaaa")
    with caplog.at_level(logging.WARNING, logger="axilla.client"):
        assert store.load("bbbbbbbbbbbb") is None
    assert "kept for layout aaaaaaaaaaaa" in caplog.text
    assert store.load("aaaaaaaaaaaa") is not None
