"""A training site's personalised model: fine-tuned at the final evaluation, or Ditto's personal model kept across rounds.

The personalised model never leaves the site: only its test metrics (``personal/<metric>``) and its
paired comparison with the global model (``vs:global/<statistic>``) do. A DP site keeps none (its
training would spend privacy budget its ledger does not cover); an external site never trains.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from client.data import SiteData
from client.training import make_optimizer, predict, resolve_device, train_epochs
from evaluation.classification import binary_metrics
from models.run_config import RunConfig
from models.task import task_for

State = Mapping[str, torch.Tensor]


def val_score(data: SiteData, model: nn.Module, cfg: RunConfig) -> float:
    """How good a model is on the validation split (higher is better): AUC where both classes are present, else minus the loss."""
    out = predict(model, data.loader("val", train=False), task_for(cfg), resolve_device(data.config.compute.device))
    if out.scores is not None and len(set(out.labels.tolist())) == 2:
        return float(binary_metrics(out.labels, out.scores, 0.5)["auc"])
    return -float(out.loss)


def choose_epochs(scores: Mapping[int, float]) -> int:
    """The epoch count with the best validation score (the fewest epochs among ties)."""
    return max(sorted(scores), key=lambda epochs: scores[epochs])


def finetune(data: SiteData, model: nn.Module, cfg: RunConfig, seed: int) -> tuple[nn.Module, int, dict[int, float]]:
    """Fine-tune ``model`` (the global one, left unchanged) on the training split; keep the candidate epoch count best on validation.

    Trains one epoch at a time up to the largest of ``personalise-epochs`` at the schedule's last
    learning rate; returns the chosen model, its epoch count and every candidate's validation score.
    """
    import copy

    device = resolve_device(data.config.compute.device)
    tuned = copy.deepcopy(model)
    torch.manual_seed(seed)
    optimizer = make_optimizer(tuned, cfg.optimizer, cfg.round_lr(cfg.num_rounds), cfg.weight_decay)
    loader = data.loader("train", train=True, seed=seed)
    candidates = cfg.personalise_epoch_list
    scores: dict[int, float] = {}
    best: dict[str, torch.Tensor] = {}
    for epoch in range(1, max(candidates) + 1):
        train_epochs(tuned, loader, task_for(cfg), optimizer, 1, device, desc=f"{data.config.site} fine-tuning")
        if epoch in candidates:
            scores[epoch] = val_score(data, tuned, cfg)
            if choose_epochs(scores) == epoch:
                best = {k: v.detach().cpu().clone() for k, v in tuned.state_dict().items()}
    tuned.load_state_dict(best, strict=True)
    return tuned, choose_epochs(scores), scores


def ditto_update(data: SiteData, personal: nn.Module, global_state: State, cfg: RunConfig, server_round: int, seed: int) -> dict[str, torch.Tensor]:
    """Ditto's personal step: ``local-epochs`` on F_i(v) + (lambda/2)||v - w||^2 from the site's v, with w the arriving global model."""
    device = resolve_device(data.config.compute.device)
    names = [name for name, _ in personal.named_parameters()]
    anchor = [global_state[name].to(device) for name in names]
    torch.manual_seed(seed)
    optimizer = make_optimizer(personal, cfg.optimizer, cfg.round_lr(server_round), cfg.weight_decay)
    loader = data.loader("train", train=True, seed=seed)
    train_epochs(personal, loader, task_for(cfg), optimizer, cfg.local_epochs, device, proximal_mu=cfg.ditto_lambda, desc=f"{data.config.site} Ditto", anchor=anchor)
    return {k: v.detach().cpu() for k, v in personal.state_dict().items()}
