"""The site's outgoing boundary: every reply is checked against the privacy policy and logged.

A Flower mod wraps the ClientApp, so it sees each reply exactly as Flower will send it. The
policy (DESIGN.md, "what may leave a site"):

- model arrays only in answer to a training message, with exactly the keys, shapes and dtypes
  of the global model the server sent (its ``arrays`` record; models the site is asked to hold,
  such as the pipeline's segmenters, are never sent back); under FedBN, without the model's
  normalisation entries; under SCAFFOLD, also the change of the site's control variate, shaped
  as the control variate the message carried (never in the reply to any other message);
- metrics named by the protocol (``protocol/metrics.py``), as scalars or lists of the length the
  protocol fixes (confidence intervals, score histograms, the ROC band's grid), never the number
  of cases; only a site with ``privacy.share_case_predictions: true`` may send the per-case lists;
- the handshake's self-description (known keys only), strings without paths;
- errors whose reason holds no path; an exception the ClientApp raises is caught here, logged in
  full at the site, and sent only as its class name (code ``SITE_FAILED``).

A reply that breaks the policy is replaced by an error naming the rule, and is never sent. Every
reply (kind, records, array shapes, every metric value) is appended to
``<output_dir>/audit/outgoing.jsonl``, so the hospital can see what left it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, MetricRecord
from flwr.clientapp.typing import ClientAppCallable, Mod

from client.site_config import SiteConfig
from protocol.clinical import CLINICAL, SCHEMA, ClinicalQuery, parse_schema
from models.run_config import RunConfig
from protocol.messages import ARRAYS, CONTROL, EVALUATE, POLICY_VIOLATION, RUN, SITE_FAILED, Evaluate, ProtocolError, SiteDescription
from protocol.packing import packed_signature
from protocol.registry import REPLY_RECORDS
from protocol.metrics import METRIC_LENGTHS, PER_CASE, PER_FEATURE, split_candidate_metric

logger = logging.getLogger("axilla.client")


def _has_path(text: str) -> bool:
    return "/" in text or "\\" in text


def _array_signature(record: ArrayRecord) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {key: (str(a.dtype), tuple(a.shape)) for key, a in record.items()}


def _candidates(incoming: Message) -> set[str]:
    """The segmentation candidates an evaluation message asked for (their metrics are prefixed by name)."""
    return set(Evaluate.candidates_in(incoming.content)) if incoming.has_content() else set()


def _metric_problems(record: MetricRecord, candidates: set[str], share_case_predictions: bool, widths: Mapping[str, int] | None = None) -> list[str]:
    """Metrics outside the protocol: unknown names, non-numbers, lists of a length the protocol (or the message, for feature sums) does not fix."""
    problems = []
    widths = widths or {}
    for key, value in record.items():
        candidate, name = split_candidate_metric(key)
        if name not in METRIC_LENGTHS or (candidate and candidate not in candidates):
            problems.append(f"metric '{key}' is not part of the protocol")
        elif METRIC_LENGTHS[name] == PER_FEATURE:
            if candidate not in widths or not isinstance(value, list) or len(value) != widths[candidate]:
                problems.append(f"metric '{key}' must be a list of the {widths.get(candidate, '?')} features the message asked sums of")
            elif not all(isinstance(x, (int, float)) for x in value):
                problems.append(f"metric '{key}' holds non-numbers")
        elif isinstance(value, list):
            if not all(isinstance(x, (int, float)) for x in value):
                problems.append(f"metric '{key}' holds non-numbers")
            elif METRIC_LENGTHS[name] == PER_CASE and not share_case_predictions:
                problems.append(f"metric '{key}' is a list of {len(value)} values (per-case values need the site's opt-in)")
            elif METRIC_LENGTHS[name] not in (PER_CASE, len(value)):
                problems.append(f"metric '{key}' is a list of {len(value)} values, not the protocol's {METRIC_LENGTHS[name]}")
        elif METRIC_LENGTHS[name] is not None:
            problems.append(f"metric '{key}' must be a list")
        elif not isinstance(value, (int, float)):
            problems.append(f"metric '{key}' is not a number")
    return problems


def _clinical_problems(record: MetricRecord, query: ClinicalQuery) -> list[str]:
    """A clinical job's reply must hold only the metrics its request fixes, each a number or a list of the fixed length."""
    try:
        allowed = query.allowed_metrics()
    except ProtocolError as err:
        return [f"the clinical request is malformed ({err})"]
    problems = []
    for key, value in record.items():
        if key not in allowed:
            problems.append(f"clinical metric '{key}' is not part of the {query.job} job's reply")
        elif allowed[key] is None and not isinstance(value, (int, float)):
            problems.append(f"clinical metric '{key}' must be a number")
        elif allowed[key] is not None and (not isinstance(value, list) or len(value) != allowed[key]):
            problems.append(f"clinical metric '{key}' must be a list of {allowed[key]} numbers")
    return problems


def _schema_problems(reply: Message, record: ConfigRecord) -> list[str]:
    """A schema reply holds one key, ``variables``: names, kinds and levels (no value of any case)."""
    if set(record) != {"variables"}:
        return [f"schema keys {sorted(record)} are not part of the protocol"]
    try:
        parse_schema(reply.content)
    except ProtocolError as err:
        return [f"schema: {err}"]
    return []


def _run_of(incoming: Message) -> RunConfig | None:
    """The run config of a message (its strategy decides which arrays may answer it); None if it carries none that parses."""
    try:
        return RunConfig.from_mapping(dict(incoming.content.config_records[RUN]))
    except (KeyError, ValueError):
        return None


def _arrays_problem(incoming: Message, name: str, record: ArrayRecord) -> str | None:
    """Why arrays may not answer a training message: only the model received (FedBN: without its normalisation entries), and SCAFFOLD's control change."""
    sent = incoming.content.array_records
    run = _run_of(incoming)
    strategy = run.strategy if run is not None else ""
    if name == CONTROL:
        if strategy != "scaffold" or CONTROL not in sent:
            return "control variates in the reply to a message that did not ask for SCAFFOLD"
        if _array_signature(record) != _array_signature(sent[CONTROL]):
            return "control variates differ in keys, shapes or dtypes from the control variate received"
        return None
    if run is not None and strategy == "fedbn":
        from client.fedbn import shared_layout  # noqa: PLC0415 (torch: only for FedBN)

        if _array_signature(record) != packed_signature(shared_layout(run)):
            return "arrays differ from the model received less its normalisation entries (FedBN keeps those at the site)"
        return None
    model = sent.get(ARRAYS)
    if model is None or _array_signature(record) != _array_signature(model):
        return "arrays differ in keys, shapes or dtypes from the global model received"
    return None


def policy_violations(incoming: Message, reply: Message, share_case_predictions: bool = False) -> list[str]:
    """Every way ``reply`` (to ``incoming``) breaks the privacy policy; empty when it may leave."""
    if reply.has_error():
        return ["error reason contains a path"] if _has_path(str(reply.error.reason)) else []
    kind = incoming.metadata.message_type
    allowed = REPLY_RECORDS.get(kind, {})
    sent = incoming.content.array_records if incoming.has_content() else {}
    problems: list[str] = []
    for name, record in reply.content.items():
        if isinstance(record, ArrayRecord) and ArrayRecord not in allowed.values():
            problems.append(f"'{name}': model arrays in the reply to a {kind} message")
        elif name not in allowed or not isinstance(record, allowed[name]):
            problems.append(f"'{name}': a {type(record).__name__} may not leave the site in the reply to a {kind} message")
        elif isinstance(record, ArrayRecord):
            problem = _arrays_problem(incoming, name, record)
            if problem:
                problems.append(f"'{name}': {problem}")
        elif isinstance(record, MetricRecord) and kind == CLINICAL:
            problems += _clinical_problems(record, ClinicalQuery.of(incoming.content))
        elif isinstance(record, MetricRecord):
            widths = Evaluate.moment_widths(incoming.content) if incoming.has_content() and kind == EVALUATE else {}
            problems += _metric_problems(record, _candidates(incoming), share_case_predictions, widths)
        elif name == SCHEMA:
            problems += _schema_problems(reply, record)
        elif isinstance(record, ConfigRecord):
            for key, value in record.items():
                if key not in SiteDescription.KEYS:
                    problems.append(f"handshake key '{key}' is not part of the protocol")
                elif isinstance(value, str) and _has_path(value):
                    problems.append(f"handshake '{key}' contains a path")
    return problems


def summarize(reply: Message) -> dict[str, Any]:
    """What a reply holds, as the audit log stores it: array shapes (not values), every metric and config value."""
    out: dict[str, Any] = {"kind": reply.metadata.message_type, "run": reply.metadata.run_id}
    if reply.has_error():
        out["error"] = {"code": reply.error.code, "reason": str(reply.error.reason)}
        return out
    records: dict[str, Any] = {}
    for name, record in reply.content.items():
        if isinstance(record, ArrayRecord):
            records[name] = {"type": "arrays", "arrays": {k: [d, list(s)] for k, (d, s) in _array_signature(record).items()}}
        elif isinstance(record, (MetricRecord, ConfigRecord)):
            records[name] = {"type": "metrics" if isinstance(record, MetricRecord) else "config", "values": dict(record)}
        else:
            records[name] = {"type": type(record).__name__}
    out["records"] = records
    return out


def audit_path(output_dir: Path) -> Path:
    """Where a site's outgoing-message log lives."""
    return output_dir / "audit" / "outgoing.jsonl"


def privacy_guard(site_of: Callable[[Message, Context], SiteConfig | None]) -> Mod:
    """A ClientApp mod enforcing the policy and logging every reply under the site's ``output_dir``."""

    def mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        try:
            reply = call_next(message, context)
        except Exception as err:  # its text may hold a path or a case id: logged here in full, sent as the class name only
            logger.exception("the ClientApp failed on a %s message", message.metadata.message_type)
            reply = Message(Error(code=SITE_FAILED, reason=f"the site failed on this message ({type(err).__name__}); its log has the details"), reply_to=message)
        try:
            site = site_of(message, context)
        except Exception:  # an unreadable site config: the reply is still checked; no audit file can be named
            logger.exception("the site config could not be read for the audit log")
            site = None
        share = bool(site and site.privacy.share_case_predictions)
        problems = policy_violations(message, reply, share)
        entry = summarize(reply) | {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "blocked": problems}
        if problems:
            logger.error("reply withheld by the privacy guard: %s", "; ".join(problems))
            reply = Message(Error(code=POLICY_VIOLATION, reason="reply withheld by the site's privacy guard: " + "; ".join(problems)), reply_to=message)
        if site is not None:
            path = audit_path(site.output_dir)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry, default=str) + "\n")
        return reply

    return mod
