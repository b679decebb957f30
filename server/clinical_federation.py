"""The server's side of the clinical jobs: send ``query.clinical`` messages, check and sum the replies.

Every fit's statistics come from the training sites' training split (or their folds); Table 1 and
the evaluation ask every site. A training site that fails a statistics job makes the sums
inexact, so it raises ``SiteFailure`` naming the site; the stage then starts again without it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, Message, RecordDict

from models.federated_logit import LogitStatistics
from models.lockstep import Lockstep
from models.run_config import RunConfig
from protocol.clinical import CLINICAL, ClinicalQuery, Design, Fit, Spec, Variable, parse_schema
from protocol.messages import METRICS, ProtocolError
from server.federation import Courier, Delivery, Grid
from strategies.sites import NodeSite

logger = logging.getLogger("axilla.server")
SIGNATURE_MODEL = "__signature__"  # the image model's name in the delivery (never a stage name)


class SiteFailure(RuntimeError):
    """A training site did not answer a statistics job: the federated sums would not be exact."""

    def __init__(self, site: str, reason: str) -> None:
        super().__init__(f"site {site}: {reason}")
        self.site, self.reason = site, reason


@dataclass(frozen=True)
class Source:
    """Where a fit's statistics come from: a design over the training sites' split, or one of its K folds (or the others)."""

    design: Design
    split: str = "train"
    folds: int = 0
    fold: int = -1
    held_out: bool = False


@dataclass(frozen=True)
class Ask:
    """One fit's request in a lockstep round: its source, columns and coefficients."""

    source: Source
    columns: tuple[int, ...]
    beta: tuple[float, ...]


class ClinicalFederation:
    """Clinical jobs over a federation's sites, with the image model held at each as the signature."""

    def __init__(
        self, grid: Grid, sites: Mapping[int, NodeSite], run: RunConfig, courier: Courier, models: Mapping[str, ArrayRecord], crop_with: Sequence[str] = (),
    ) -> None:
        self.grid, self.run = grid, run
        self.sites = dict(sites)
        held = {n: models[n] for n in (*crop_with, SIGNATURE_MODEL) if n in models}  # none: the schema job only
        self.delivery: Delivery = courier.delivery(run, held)
        self.signature = dict(self.delivery.refs).get(SIGNATURE_MODEL, "")
        self.segmenters = tuple(r for r in self.delivery.refs if r[0] != SIGNATURE_MODEL)
        self.rounds = 0

    @property
    def trainers(self) -> dict[int, NodeSite]:
        """The training sites (whose training split every fit reads)."""
        return {n: s for n, s in self.sites.items() if s.trains}

    def exclude(self, site: str) -> None:
        """Leave a site out of every later job."""
        self.sites = {n: s for n, s in self.sites.items() if s.name != site}

    def query(self, job: str, split: str, spec: Spec) -> ClinicalQuery:
        """The message for one job."""
        return ClinicalQuery(run=self.run, segmenters=self.segmenters, job=job, split=split, signature=self.signature, spec=spec.to_json())

    def send(self, requests: Sequence[tuple[int, ClinicalQuery]]) -> list[RecordDict | str]:
        """Send each (node, query), one per node, and return each one's reply content, or why there is none."""
        messages = [
            Message(RecordDict({**query.records(), **self.delivery.records_for(node)}), dst_node_id=node, message_type=CLINICAL)
            for node, query in requests
        ]
        self.rounds += 1
        replies = {r.metadata.src_node_id: r for r in self.grid.send_and_receive(messages, timeout=self.run.round_timeout)}
        out: list[RecordDict | str] = []
        for node, _ in requests:
            reply = replies.get(node)
            out.append("no reply" if reply is None else f"error: {reply.error.reason}" if reply.has_error() else reply.content)
            self.delivery.settled(node, not isinstance(out[-1], str))
        return out

    def ask(self, job: str, split: str, spec: Spec, nodes: Mapping[int, NodeSite], strict: bool) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """One job at each node: metrics by site, and why each other site has none; ``strict`` raises ``SiteFailure`` instead."""
        query = self.query(job, split, spec)
        got, failed = {}, {}
        for (node, site), reply in zip(nodes.items(), self.send([(node, query) for node in nodes])):
            reason = reply if isinstance(reply, str) else "" if METRICS in reply.metric_records else f"the reply carries no '{METRICS}' record"
            if reason:
                if strict:
                    raise SiteFailure(site.name, reason)
                failed[site.name] = reason
                logger.error("site %s gave no %s statistics: %s", site.name, job, reason)
            else:
                assert isinstance(reply, RecordDict)
                got[site.name] = dict(reply.metric_records[METRICS])
        return got, failed

    def schemas(self) -> tuple[dict[str, list[Variable]], dict[str, str]]:
        """Every site's typed clinical columns, and why a site gave none."""
        query = self.query("schema", "all", Spec())
        out, failed = {}, {}
        for (node, site), reply in zip(self.sites.items(), self.send([(node, query) for node in self.sites])):
            if isinstance(reply, str):
                failed[site.name] = reply
                continue
            try:
                out[site.name] = parse_schema(reply)
            except ProtocolError as err:
                failed[site.name] = f"malformed schema: {err}"
        return out, failed

    def summed(self, job: str, split: str, spec: Spec) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        """A statistics job's metrics summed over the training sites (strict), and each site's own."""
        got, _ = self.ask(job, split, spec, self.trainers, strict=True)
        total: dict[str, np.ndarray] = {}
        for metrics in got.values():
            for key, value in metrics.items():
                total[key] = total.get(key, 0) + np.asarray(value, dtype=np.float64)
        return total, got

    def logit_batch(self, asks: list[Ask]) -> list[LogitStatistics]:
        """One lockstep round: every fit's statistics, one message per training site and design (fits of one design travel together)."""
        groups: dict[tuple[Design, str, int], list[int]] = {}
        for i, a in enumerate(asks):
            groups.setdefault((a.source.design, a.source.split, a.source.folds), []).append(i)
        totals: dict[int, LogitStatistics] = {}
        for (design, split, folds), members in groups.items():
            fits = tuple(Fit(asks[i].columns, asks[i].beta, fold=asks[i].source.fold, held_out=asks[i].source.held_out) for i in members)
            query = self.query("logit", split, Spec(design=design, fits=fits, folds=folds))
            trainers = self.trainers
            for (node, site), reply in zip(trainers.items(), self.send([(node, query) for node in trainers])):
                if isinstance(reply, str) or METRICS not in reply.metric_records:
                    raise SiteFailure(site.name, reply if isinstance(reply, str) else f"the reply carries no '{METRICS}' record")
                metrics = reply.metric_records[METRICS]
                for k, i in enumerate(members):
                    p = len(asks[i].columns)
                    try:
                        stats = LogitStatistics(
                            np.array(metrics[f"r{k}/score"], dtype=np.float64), np.array(metrics[f"r{k}/information"], dtype=np.float64).reshape(p, p),
                            float(metrics[f"r{k}/loglik"]), int(metrics[f"r{k}/n"]), int(metrics[f"r{k}/n_positive"]), int(metrics[f"r{k}/n_extreme"]),
                        )  # fmt: skip
                    except (KeyError, ValueError) as err:
                        raise SiteFailure(site.name, f"malformed statistics ({err})") from None
                    totals[i] = totals[i] + stats if i in totals else stats
        return [totals[i] for i in range(len(asks))]

    def lockstep(self) -> Lockstep[Any]:
        """A coordinator whose rounds are ``logit_batch``."""
        return Lockstep(self.logit_batch)


def statistics_of(step: Lockstep[Any], source: Source) -> Any:
    """A ``models.federated_logit.Statistics`` function whose every call is one request of the lockstep's round."""
    return lambda beta, columns: step.ask(Ask(source, tuple(int(c) for c in columns), tuple(float(b) for b in beta)))
