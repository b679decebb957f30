"""Privacy in the in-process federation: DP-SGD sites within budget, the DP network variant, the report's DP figures, pretrained weights on the server only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models.run_config import RunConfig
from server.federation import run_federation
from tests.conftest import make_site
from tests.server.test_federation import LoopbackGrid, _cfg


def test_dp_sites_train_within_budget_the_run_uses_the_dp_variant_and_the_report_lets_one_recompute_epsilon(tmp_path: Path) -> None:
    from client.privacy_ledger import Spend, epsilon

    dp = "privacy:\n  dp: {enabled: true, target_epsilon: 8.0, delta: 1.0e-5, max_grad_norm: 1.0}\n"
    tiny = "privacy:\n  dp: {enabled: true, target_epsilon: 8.0, delta: 1.0e-5, lifetime_epsilon: 8.0}\n"
    sites = [make_site(tmp_path, "a", n=24, seed=1, extra_yaml=dp), make_site(tmp_path, "b", n=20, seed=2), make_site(tmp_path, "c", n=20, seed=4, extra_yaml=tiny)]
    # site c has already spent its whole lifetime budget in an earlier run: it must refuse to train, and the run goes on.
    ledger = tmp_path / "c" / "output" / "privacy"
    ledger.mkdir(parents=True)
    (ledger / "ledger.json").write_text(json.dumps({"accountant": "rdp", "entries": [vars(Spend("earlier", "federated", 1, 0.3, 0.5, 200, 1e-5, 1.0))]}))
    grid = LoopbackGrid([*sites, make_site(tmp_path, "ext", role="external", n=16, seed=3)])
    run_dir = run_federation(grid, _cfg(tmp_path))  # type: ignore[arg-type]
    report = json.loads((run_dir / "report.json").read_text())
    assert report["run"]["model_variant"] == "dp-compatible" and "a, c train with DP-SGD" in report["run"]["model_variant_why"]
    assert not any("running_mean" in k for k in torch.load(run_dir / "checkpoints" / "final.pt"))  # GroupNorm, not BatchNorm
    (privacy,) = report["privacy"]  # a trained with DP-SGD; b without; c refused
    assert (privacy["model"], privacy["site"], len(privacy["rounds"])) == ("federated", "a", 2)
    recomputed = epsilon([Spend("", "", 0, r["noise_multiplier"], r["sample_rate"], r["steps"], privacy["delta"]) for r in privacy["rounds"]], privacy["delta"])
    assert recomputed == pytest.approx(privacy["epsilon"], rel=1e-9) and 7.5 <= privacy["epsilon"] <= 8.0
    refused = [m for m in report["missing"] if m["site"] == "c"]
    assert {m["round"] for m in refused} == {1, 2} and all("lifetime epsilon" in m["reason"] and "/" not in m["reason"] for m in refused)
    assert "## Differential privacy" in (run_dir / "report.md").read_text()
    # The baselines: local:c cannot train at all, so it stops; the others still run and are compared.
    from evaluation.report import write_report
    from server.run_dir import RunDirectory
    from simulation.baselines import run_baselines

    run_baselines(RunDirectory(run_dir), RunConfig.from_mapping(json.loads((run_dir / "config.json").read_text())["run"]), [*sites, tmp_path / "ext" / "site.yaml"])
    write_report(run_dir)
    report = json.loads((run_dir / "report.json").read_text())
    models = {r["model"] for r in report["classification"]}
    assert {"local:a", "local:b", "pooled"} <= models and "local:c" not in models
    assert any(m["model"] == "local:c" and "lifetime epsilon" in m["reason"] for m in report["missing"])


def test_pretrained_weights_are_read_by_the_server_only_and_sent_as_round_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import models.classifiers
    from models.task import build_network

    weights = tmp_path / "pretrained.pt"
    reference = build_network(RunConfig(image_size=32, seed=7))
    torch.save(reference.state_dict(), weights)
    opened: list[str] = []
    real_load = models.classifiers.torch.load
    monkeypatch.setattr(models.classifiers.torch, "load", lambda path, *a, **k: (opened.append(str(path)), real_load(path, *a, **k))[1])
    grid = LoopbackGrid([make_site(tmp_path, "a", n=16, seed=1), make_site(tmp_path, "b", n=16, seed=2)])
    run_dir = run_federation(grid, _cfg(tmp_path, pretrained_weights=str(weights), num_rounds=1))  # type: ignore[arg-type]
    assert opened == [str(weights)]  # once, by the server; no site opened the path the run config names
    initial = torch.load(run_dir / "checkpoints" / "round-000.pt")
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(initial[key], value)
    with pytest.raises(FileNotFoundError):
        build_network(RunConfig(pretrained_weights=str(tmp_path / "absent.pt")), pretrained=True)
    assert build_network(RunConfig(pretrained_weights=str(tmp_path / "absent.pt"))) is not None  # a site's build never looks


def test_central_dp_clips_at_the_sites_adds_the_servers_noise_and_the_report_states_the_guarantee(tmp_path: Path) -> None:
    from server.federation import FederationError
    from strategies.central_dp import CentralDP

    sites = [make_site(tmp_path, "a", n=16, seed=1), make_site(tmp_path, "b", n=16, seed=2), make_site(tmp_path, "ext", role="external", n=12, seed=3)]
    cfg = _cfg(tmp_path, central_dp="client-clipping", central_dp_noise_multiplier=0.8, central_dp_clipping_norm=0.5, validate_every=0)
    run_dir = run_federation(LoopbackGrid(sites), cfg)  # type: ignore[arg-type]
    report = json.loads((run_dir / "report.json").read_text())
    assert "missing" not in report  # every site clipped its update to the norm, so none was refused
    assert report["run"]["model_variant"] == "dp-compatible"  # no BatchNorm variances for the noise to make negative
    (central,) = report["central_dp"]
    assert (central["model"], central["releases"], central["sites_per_round"], central["mode"]) == ("federated", 2, 2, "client-clipping")
    assert central["epsilon"] == pytest.approx(CentralDP("client-clipping", 0.8, 0.5, 1e-5, 0.0, 2).epsilon(2)) and central["epsilon"] > 0
    assert central["noise_std"] == pytest.approx(0.8 * 0.5 / 2) and "site-level" in central["guarantee"]
    first, second = (torch.load(run_dir / "checkpoints" / f"round-00{r}.pt") for r in (1, 2))
    step = sum(float(((second[k].float() - first[k].float()) ** 2).sum()) for k in first if first[k].is_floating_point()) ** 0.5
    assert step > 0.5 / 2  # the noise (std 0.2 per parameter) dwarfs a mean of updates clipped to 0.5
    assert "## Central differential privacy" in (run_dir / "report.md").read_text()
    with pytest.raises(FederationError, match=r"2 rounds at noise multiplier 0.8 spend epsilon .* above central-dp-max-epsilon = 1"):
        run_federation(LoopbackGrid(sites), cfg.replace(central_dp_max_epsilon=1.0, run_id="capped"))  # type: ignore[arg-type]
    assert not (tmp_path / "runs" / "capped" / "checkpoints" / "round-001.pt").exists()
