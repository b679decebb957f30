"""Every kind of message a site answers: the instruction it parses, and the records its reply may hold."""

from __future__ import annotations

from flwr.app import ArrayRecord, ConfigRecord, MetricRecord

from protocol.clinical import CLINICAL, SCHEMA, ClinicalQuery
from protocol.messages import ARRAYS, CONTROL, EVALUATE, METRICS, QUERY, SITE, TRAIN, Describe, Evaluate, Instruction, Train

# What may leave a site, by the kind of message answered: record name -> record type.
REPLY_RECORDS: dict[str, dict[str, type]] = {
    QUERY: {SITE: ConfigRecord},
    TRAIN: {ARRAYS: ArrayRecord, CONTROL: ArrayRecord, METRICS: MetricRecord},  # CONTROL: SCAFFOLD only (the privacy guard checks)
    EVALUATE: {METRICS: MetricRecord},
    CLINICAL: {METRICS: MetricRecord, SCHEMA: ConfigRecord},
}
INSTRUCTIONS: dict[str, type[Instruction]] = {cls.kind: cls for cls in (Describe, Train, Evaluate, ClinicalQuery)}
