"""DP-SGD at the site: DP-compatible networks, one DP step per model, the budgets, the ledger across processes."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from opacus.accountants import RDPAccountant
from opacus.optimizers import DPOptimizer
from opacus.validators import ModuleValidator

from client.data import load_site_data
from client.dp_training import per_case_gradients, round_settings
from client.errors import SiteDataError
from client.privacy_ledger import PrivacyLedger, Spend, epsilon, of_model
from client.site import train_round
from client.site_config import DPConfig, load_site_config
from models.run_config import RunConfig
from models.task import build_network, task_for
from server.dp_variant import VariantError, resolve_variant
from strategies.sites import NodeSite
from tests.conftest import make_site

REPO = Path(__file__).resolve().parents[2]
BASE = RunConfig(image_size=64, seg_image_size=64, model_variant="dp-compatible")
MODELS = {
    "classifier-small": BASE,
    **{f"segmenter-{name}": replace(BASE, task="segmentation", segmenter=name) for name in ("unet", "unetpp", "deeplabv3", "deeplabv3plus")},
    "end-to-end": replace(BASE, task="end-to-end"),
}
DP = "privacy:\n  dp: {enabled: true, target_epsilon: 3.0, delta: 1.0e-5, max_grad_norm: 1.0}\n"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_passes_opacus_validator_and_takes_one_dp_step(name: str) -> None:
    cfg = MODELS[name]
    task = task_for(cfg)
    model = build_network(cfg)
    assert ModuleValidator.validate(model, strict=False) == []
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    size = task.input_size(cfg)
    torch.manual_seed(0)
    batch = {"image": torch.randn(3, 1, size, size), "label": torch.tensor([0, 1, 1]), "mask": (torch.rand(3, 1, size, size) > 0.5).to(torch.uint8), "has_mask": torch.ones(3, dtype=torch.bool)}
    before = [p.detach().clone() for p in model.parameters()]
    grads, _ = per_case_gradients(model.train(), task, batch)
    for pname, p in model.named_parameters():
        assert grads[pname].shape == (3, *p.shape)
        p.grad_sample = grads[pname]
    optimizer = DPOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=3)
    optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_the_per_case_gradient_is_the_gradient_of_that_case_alone() -> None:
    cfg = BASE
    task, model = task_for(cfg), build_network(cfg).train()
    torch.manual_seed(1)
    batch = {"image": torch.randn(2, 1, 64, 64), "label": torch.tensor([0, 1]), "mask": torch.zeros(2, 1, 64, 64, dtype=torch.uint8), "has_mask": torch.zeros(2, dtype=torch.bool)}
    grads, _ = per_case_gradients(model, task, batch)
    one = {k: v[1:] for k, v in batch.items()}
    model.zero_grad()
    task.loss()(model(one["image"]), task.targets(one)).backward()
    for pname, p in model.named_parameters():
        torch.testing.assert_close(grads[pname][1], p.grad, rtol=1e-4, atol=1e-6)


def test_ledger_epsilon_matches_opacus_and_survives_a_new_process(tmp_path: Path) -> None:
    spend = Spend("run-1", "federated", 1, 1.1, 0.05, 40, 1e-5)
    code = (
        "import sys; from pathlib import Path; from client.privacy_ledger import PrivacyLedger, Spend; "
        f"ledger = PrivacyLedger(Path({str(tmp_path)!r})); ledger.locked().__enter__(); ledger.record(Spend('run-1', 'federated', 1, 1.1, 0.05, 40, 1e-5), ledger.entries())"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)
    ledger = PrivacyLedger(tmp_path)
    assert [replace(e, at=0.0) for e in ledger.entries()] == [spend]
    accountant = RDPAccountant()
    for _ in range(40):
        accountant.step(noise_multiplier=1.1, sample_rate=0.05)
    assert epsilon(of_model(ledger.entries(), "run-1", "federated"), 1e-5) == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-9)
    (tmp_path / "privacy" / "ledger.json").write_text("{broken")
    with pytest.raises(SiteDataError, match="ledger.json is unreadable"):
        ledger.entries()


def test_noise_fits_the_remaining_rounds_to_the_budget_and_a_spent_budget_is_refused() -> None:
    dp = DPConfig(enabled=True, target_epsilon=3.0, delta=1e-5)
    spent: list[Spend] = []
    for server_round in (1, 2, 3):
        settings = round_settings(dp, 100, 10, 1, 4 - server_round, spent, spent, "r", "federated", server_round)
        spent.append(Spend("r", "federated", server_round, settings.noise_multiplier, settings.sample_rate, settings.steps, dp.delta))
        assert settings.epsilon_after <= 3.0 * (1 + 1e-6)
    assert 2.85 <= epsilon(spent, dp.delta) <= 3.0  # nearly the whole budget (the noise is chosen at integer orders), never more
    with pytest.raises(SiteDataError, match=r"spent epsilon 2\.9\d* of its target 3"):
        round_settings(dp, 100, 10, 1, 1, spent, spent, "r", "federated", 4)
    # A new run: its own budget is whole, but the lifetime budget holds what the first run spent.
    fresh = round_settings(dp, 100, 10, 1, 1, [], spent, "r2", "federated", 1)
    capped = round_settings(replace(dp, lifetime_epsilon=3.5), 100, 10, 1, 1, [], spent, "r2", "federated", 1)
    assert capped.noise_multiplier > fresh.noise_multiplier and capped.lifetime_after <= 3.5 * (1 + 1e-6) < fresh.lifetime_after
    used = epsilon(spent, dp.delta)
    with pytest.raises(SiteDataError, match=rf"lifetime epsilon {used:.3f} of privacy.dp.lifetime_epsilon = {used:g}"):
        round_settings(replace(dp, lifetime_epsilon=used), 100, 10, 1, 1, [], spent, "r2", "federated", 1)  # nothing left


def test_a_dp_site_trains_within_budget_records_its_spend_and_reports_the_figures(tmp_path: Path) -> None:
    site = make_site(tmp_path, "alpha", n=24, extra_yaml=DP)
    config = load_site_config(site)
    cfg = RunConfig(image_size=32, num_rounds=2, local_epochs=1, run_id="dp-run", model_variant="dp-compatible", dp_batch_size=6)
    data = load_site_data(config, 32)
    state = build_network(cfg).state_dict()
    for server_round in (1, 2):
        state, metrics = train_round(data, state, cfg, server_round, total_rounds=2)
        assert metrics["dp_epsilon"] <= 3.0 * (1 + 1e-6) and metrics["dp_noise_multiplier"] > 0
        assert metrics["dp_sample_rate"] == pytest.approx(6 / len(data.splits["train"]))
    assert 2.7 <= metrics["dp_epsilon"] <= 3.0
    entries = PrivacyLedger(config.output_dir).entries()
    assert [(e.run, e.model, e.server_round) for e in entries] == [("dp-run", "federated", 1), ("dp-run", "federated", 2)]
    assert epsilon(entries, 1e-5) == pytest.approx(metrics["dp_epsilon"], rel=1e-9)  # a reviewer's recomputation
    with pytest.raises(SiteDataError, match="budget") as refused:
        train_round(data, state, cfg, 3, total_rounds=2)  # a round the plan did not include: nothing left
    assert "/" not in refused.value.public and "3" in refused.value.public
    with pytest.raises(SiteDataError, match="dp-compatible"):
        train_round(data, state, cfg.replace(model_variant="standard"), 1, total_rounds=2)


def test_a_sampled_batch_computed_in_chunks_of_the_sites_batch_size_takes_the_same_step_as_in_one(tmp_path: Path) -> None:
    """Memory is bounded by compute.batch_size; the DP-SGD step is that of the whole sampled batch (clipped per case, one noise)."""
    from client.dp_training import DPRound, train_epochs_dp

    data = load_site_data(load_site_config(make_site(tmp_path, "alpha", n=30, extra_yaml=DP)), 32)
    cfg = BASE.replace(image_size=32)
    settings = DPRound(noise_multiplier=0.0, sample_rate=0.9, steps=2, max_grad_norm=0.5, delta=1e-5, epsilon_before=0, epsilon_after=0, lifetime_after=0)
    finals = []
    for physical in (3, 64):  # several chunks per sampled batch, then all of it at once
        model = build_network(cfg)
        model.load_state_dict(build_network(cfg.replace(seed=0)).state_dict())
        loader = data.loader("train", train=False)
        loader = torch.utils.data.DataLoader(loader.dataset, batch_size=physical, collate_fn=loader.collate_fn)
        stats = train_epochs_dp(model, loader, task_for(cfg), torch.optim.SGD(model.parameters(), lr=0.5), settings, torch.device("cpu"), seed=5)
        assert stats.steps == 2
        finals.append([p.detach().clone() for p in model.parameters()])
    for chunked, whole in zip(*finals):
        torch.testing.assert_close(chunked, whole, rtol=1e-4, atol=1e-6)
    assert any(not torch.equal(a, b) for a, b in zip(finals[0], build_network(cfg).parameters()))  # it did train


def test_the_run_uses_the_dp_compatible_variant_when_a_training_site_requires_dp() -> None:
    sites = {1: NodeSite(1, "a", "train", {}, dp=True), 2: NodeSite(2, "b", "train", {})}
    assert resolve_variant(RunConfig(), sites)[0].model_variant == "dp-compatible"
    assert resolve_variant(RunConfig(), {2: sites[2]})[0].model_variant == "standard"
    with pytest.raises(VariantError, match="site\\(s\\) a train only with DP-SGD"):
        resolve_variant(RunConfig(model_variant="standard"), sites)


def test_central_dp_runs_the_dp_compatible_variant_because_its_noise_would_reach_batchnorm_variances() -> None:
    sites = {2: NodeSite(2, "b", "train", {}), 3: NodeSite(3, "c", "train", {})}
    cfg, why = resolve_variant(RunConfig(central_dp="server-clipping"), sites)
    assert cfg.model_variant == "dp-compatible" and "central DP" in why
    with pytest.raises(VariantError, match="negative variance makes the model's outputs NaN"):
        resolve_variant(RunConfig(central_dp="client-clipping", model_variant="standard"), sites)


@pytest.mark.parametrize(
    ("yaml", "match"),
    [
        ("privacy:\n  dp: {enabled: true, target_epsilon: -1.0}\n", "target_epsilon"),
        ("privacy:\n  dp: {enabled: true, delta: 1.5}\n", "delta"),
        ("privacy:\n  dp: {enabled: false, max_grad_norm: 0.0}\n", "max_grad_norm"),
        ("privacy:\n  dp: {enabled: true, target_epsilon: 8.0, lifetime_epsilon: 2.0}\n", "lifetime_epsilon"),
    ],
)
def test_out_of_range_dp_settings_are_refused_by_key(tmp_path: Path, yaml: str, match: str) -> None:
    with pytest.raises(SiteDataError, match=match):
        load_site_config(make_site(tmp_path, "alpha", n=2, extra_yaml=yaml))


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", ".hidden", "x" * 65])
def test_site_names_that_could_name_another_folder_are_refused(tmp_path: Path, name: str) -> None:
    site = make_site(tmp_path, "alpha", n=2)
    site.write_text(site.read_text().replace("site: alpha", f"site: '{name}'"))
    with pytest.raises(SiteDataError, match="invalid 'site' name|key 'site'"):
        load_site_config(site)
