"""DP-SGD at the site (Opacus): Poisson-sampled batches, each case's gradient clipped, Gaussian noise.

Per-case gradients come from ``torch.func`` over the whole network (``vmap`` of ``grad``), which
handles every network the project offers (MONAI's in-place residual sums and transposed
convolutions included) once it is DP-compatible (``models/dp_compat.py``: no BatchNorm). Clipping,
noise and the step are Opacus's ``DPOptimizer``; batches are drawn by Opacus's
``UniformWithReplacementSampler`` (each case independently with probability ``sample_rate``, an
empty batch still takes a noisy step). The sampled batch (run config ``dp-batch-size`` cases
expected: DP-SGD learns from few, large, less noisy steps) is computed in chunks of the site's
``compute.batch_size``, which bounds memory; its chunks' clipped gradients are summed before the
one noisy step (Opacus's virtual steps). The noise multiplier of each round is the smallest that
keeps the run's model within ``privacy.dp.target_epsilon`` after the rounds still planned
(``total_rounds`` of the run), given what the site's ledger already holds for it, so a resumed or
repeated round is paid for. A round that would pass the run's or the lifetime budget is refused
before any training, with both figures in the message.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap
from torch.utils.data import DataLoader

from client.errors import SiteDataError
from client.privacy_ledger import SEARCH_ORDERS, Spend, epsilon, epsilon_of, rdp, training_rdp
from client.site_config import DPConfig
from client.training import TrainStats
from models.task import Task

SIGMA_MAX = 1e3  # above this the model learns nothing; a budget needing more is refused


@dataclass(frozen=True)
class DPRound:
    """One round's DP-SGD settings and what the ledger will hold after it."""

    noise_multiplier: float
    sample_rate: float
    steps: int
    max_grad_norm: float
    delta: float
    epsilon_before: float  # this run's model, before the round
    epsilon_after: float  # ... and after it
    lifetime_after: float  # every training the site did, after it


def round_settings(dp: DPConfig, n_train: int, dp_batch_size: int, epochs: int, remaining_rounds: int, spent: list[Spend], lifetime: list[Spend], run: str, model: str, server_round: int) -> DPRound:
    """The smallest noise for this round so that it and the ``remaining_rounds - 1`` after it fit the run's budget and the lifetime one.

    ``spent``: the ledger's trainings of this run's ``model``; ``lifetime``: all of the site's.
    SiteDataError (naming the budget and the spend) when no noise fits.
    """
    if n_train < 1:
        raise SiteDataError.public_fact("DP-SGD needs at least one training case")
    rate = min(1.0, dp_batch_size / n_train)
    steps = epochs * max(1, int(1 / rate))
    rounds = max(1, remaining_rounds)
    before = epsilon(spent, dp.delta)
    sigma = _smallest_sigma(spent, rate, steps, rounds, dp.delta, dp.target_epsilon)
    if sigma is None:
        raise SiteDataError.public_fact(
            f"differential privacy budget: the run's model {model} has spent epsilon {before:.3f} of its target {dp.target_epsilon:g} "
            f"(delta {dp.delta:g}) in {len(spent)} training(s); {rounds} more round(s) of {steps} steps cannot fit it at any noise; "
            "this site does not train it further",
        )
    if dp.lifetime_epsilon:
        # The rounds still planned for this model must fit what is left of the lifetime budget too.
        for_lifetime = _smallest_sigma(lifetime, rate, steps, rounds, dp.delta, dp.lifetime_epsilon)
        if for_lifetime is None:
            raise SiteDataError.public_fact(
                f"differential privacy budget: the site has spent lifetime epsilon {epsilon(lifetime, dp.delta):.3f} of "
                f"privacy.dp.lifetime_epsilon = {dp.lifetime_epsilon:g} in {len(lifetime)} training(s); {rounds} more round(s) "
                f"of {steps} steps cannot fit it at any noise; this site does not train",
            )
        sigma = max(sigma, for_lifetime)
    this_round = Spend(run, model, server_round, sigma, rate, steps, dp.delta)
    return DPRound(sigma, rate, steps, dp.max_grad_norm, dp.delta, before, epsilon([*spent, this_round], dp.delta), epsilon([*lifetime, this_round], dp.delta))


def _smallest_sigma(history: list[Spend], rate: float, steps: int, rounds: int, delta: float, budget: float) -> float | None:
    """The smallest noise multiplier with which ``rounds`` more trainings keep ``history``'s epsilon within ``budget`` (None: none does).

    Searched with integer Renyi orders (fast); the epsilon the ledger reports uses Opacus's
    default orders, a superset at which the bound is the same or tighter, so it stays within budget.
    """
    limit = budget  # the bisection returns a noise that fits, so the reported epsilon never passes the budget
    past = rdp(history, SEARCH_ORDERS)

    def fits(sigma: float) -> bool:
        return epsilon_of(past + rounds * training_rdp(rate, sigma, steps, SEARCH_ORDERS), SEARCH_ORDERS, delta) <= limit

    if not fits(SIGMA_MAX):
        return None
    low, high = 1e-3, SIGMA_MAX  # epsilon falls as sigma grows: bisect (in log) for the smallest that fits
    for _ in range(40):
        mid = (low * high) ** 0.5
        if fits(mid):
            high = mid
        else:
            low = mid
    return high


def per_case_gradients(model: nn.Module, task: Task, batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Each case's loss gradient, by parameter name, shaped (cases, *parameter shape), and each case's loss (cases,)."""
    params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
    buffers = {k: b.detach() for k, b in model.named_buffers()}
    loss_fn = task.loss()

    def case_loss(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], case: dict[str, torch.Tensor]) -> torch.Tensor:
        one = {k: v.unsqueeze(0) for k, v in case.items()}
        return loss_fn(functional_call(model, (p, b), (task.network_input(one),)), task.targets(one))

    return vmap(grad_and_value(case_loss), in_dims=(None, None, 0), randomness="different")(params, buffers, batch)


def train_epochs_dp(
    model: nn.Module,
    loader: DataLoader,
    task: Task,
    optimizer: torch.optim.Optimizer,
    settings: DPRound,
    device: torch.device,
    seed: int,
    proximal_mu: float = 0.0,
) -> TrainStats:
    """``settings.steps`` DP-SGD steps on Poisson batches of ``loader``'s dataset, each computed in chunks of ``loader.batch_size``.

    FedProx's term (data-free) is added after the noise.
    """
    from opacus.optimizers import DPOptimizer  # noqa: PLC0415
    from opacus.utils.uniform_sampler import UniformWithReplacementSampler  # noqa: PLC0415

    dataset = loader.dataset
    n = len(dataset)  # type: ignore[arg-type]
    generator = torch.Generator().manual_seed(seed)
    sampler = UniformWithReplacementSampler(num_samples=n, sample_rate=settings.sample_rate, generator=generator, steps=settings.steps)
    model.to(device).train()
    dp_optimizer = DPOptimizer(
        optimizer, noise_multiplier=settings.noise_multiplier, max_grad_norm=settings.max_grad_norm,
        expected_batch_size=max(1, round(settings.sample_rate * n)), generator=torch.Generator(device=device).manual_seed(seed + 1),
    )  # fmt: skip
    anchor = [p.detach().clone() for p in model.parameters()] if proximal_mu > 0 else []
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    physical = max(1, loader.batch_size or 1)
    total, count, steps = 0.0, 0, 0
    for indices in sampler:
        dp_optimizer.zero_grad(set_to_none=True)
        chunks = [indices[i : i + physical] for i in range(0, len(indices), physical)] or [indices]
        for j, chunk in enumerate(chunks):
            if len(chunk):
                batch = {k: v.to(device) for k, v in loader.collate_fn([dataset[i] for i in chunk]).items()}  # type: ignore[misc]
                grads, losses = per_case_gradients(model, task, batch)
                for name, p in trainable.items():
                    p.grad_sample = grads[name]
                total += float(losses.sum())
                count += len(chunk)
            else:  # an empty Poisson batch still takes its noisy step
                for p in trainable.values():
                    p.grad_sample = torch.zeros((0, *p.shape), device=p.device, dtype=p.dtype)
            if j < len(chunks) - 1:
                dp_optimizer.signal_skip_step(do_skip=True)
                dp_optimizer.pre_step()  # clip this chunk's cases and add them to the batch's sum
                dp_optimizer.zero_grad(set_to_none=True)  # keeps the sum
        if dp_optimizer.pre_step():  # clip the last chunk, sum, add noise, scale: p.grad
            if proximal_mu > 0:
                with torch.no_grad():
                    for p, a in zip(model.parameters(), anchor):
                        if p.grad is not None:
                            p.grad += proximal_mu * (p - a)
            dp_optimizer.original_optimizer.step()
        steps += 1
    for p in model.parameters():
        p.grad_sample = None
    return TrainStats(num_examples=n, loss=total / max(count, 1), steps=steps)
