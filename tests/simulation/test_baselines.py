"""The simulation's baselines, in process: a training site whose data cannot be read stops only its own baseline."""

from __future__ import annotations

import json
from pathlib import Path

from models.run_config import RunConfig
from server.federation import run_federation
from server.inprocess_grid import InProcessGrid
from server.run_dir import RunDirectory
from simulation.baselines import run_baselines
from tests.conftest import make_site


def test_a_site_with_an_unreadable_image_stops_its_own_baseline_and_is_left_out_of_the_pool(tmp_path: Path) -> None:
    broken = make_site(tmp_path, "c", n=12, seed=3)
    image = broken.parent / "images" / "c-004.png"
    image.write_bytes(image.read_bytes()[:200])
    yamls = [make_site(tmp_path, "a", n=16, seed=1), make_site(tmp_path, "b", n=16, seed=2), broken, make_site(tmp_path, "ext", role="external", n=12, seed=4)]
    cfg = RunConfig(image_size=32, num_rounds=1, local_epochs=1, runs_dir=str(tmp_path / "runs"), run_id="r1")
    run_dir = run_federation(InProcessGrid({"site-config": str(p)} for p in yamls), cfg)  # type: ignore[arg-type]
    run_baselines(RunDirectory(run_dir), cfg, yamls)
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    finals = {(l["model"], l["site"]) for l in lines if l["round"] == "final" and l["status"] == "ok" and l["split"] == "test"}
    assert {("pooled", s) for s in ("a", "b", "ext")} <= finals and {("local:a", "ext"), ("local:b", "ext")} <= finals
    assert not any(model == "local:c" for model, _ in finals)
    stopped = [l for l in lines if l["model"] == "local:c" and l["status"] == "missing"]
    assert stopped and "manifest row 6: image file cannot be decoded" in stopped[0]["reason"]
    compared = {json.loads(line)["site"] for line in (run_dir / "comparisons.jsonl").read_text().splitlines()}
    assert compared == {"a", "b", "ext"}
