"""The server's side of personalisation: which stage is personalised, and recording what each test site said of its personalised model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from models.stages import Plan, Stage
from protocol.messages import PERSONAL, PERSONAL_VS, comparison_prefix
from protocol.metrics import split_candidate_metric
from server.run_dir import FEDERATED, RunDirectory
from strategies.sites import NodeSite

DP_REASON = "a DP site keeps no personalised model: training it would spend privacy budget the run's ledger does not cover"

NONE_REASON = "the site sent no personalised model's metrics (no training or validation cases to fine-tune with, or no personal model held)"


def personalised(plan: Plan, stage: Stage, run_dir: RunDirectory) -> bool:
    """Whether the sites personalise this stage's model: the federated run's last stage, with ``personalise`` set."""
    return stage.cfg.personalise != "none" and run_dir.model == FEDERATED and stage.name == plan.last.name and not stage.fold


def record_personalisation(
    run_dir: RunDirectory, testers: Mapping[int, NodeSite], test: Mapping[str, dict[str, Any]], failures: Mapping[str, str]
) -> None:
    """Move each test reply's ``personal/`` and ``vs:global/`` metrics into one ``personalisation.jsonl`` line per test site.

    An external site is marked as keeping the global model; a training site without personal
    metrics is missing, with why (a DP site, a failed evaluation, no personal model held).
    """
    prefixes = {PERSONAL: "metrics", comparison_prefix(PERSONAL_VS): "comparison"}
    for site in testers.values():
        metrics = test.get(site.name, {})
        parts: dict[str, dict[str, Any]] = {"metrics": {}, "comparison": {}}
        for key in [k for k in metrics if split_candidate_metric(k)[0] in prefixes]:
            prefix, name = split_candidate_metric(key)
            parts[prefixes[prefix]][name] = metrics.pop(key)
        row: dict[str, Any] = {"model": run_dir.rows}
        if not site.trains:
            row["status"] = "global only"
        elif parts["metrics"]:
            row |= {"status": "ok", **parts}
        else:
            reason = DP_REASON if site.dp else failures.get(site.name, NONE_REASON)
            row |= {"status": "missing", "reason": reason}
        run_dir.record_personal(site.name, row)
