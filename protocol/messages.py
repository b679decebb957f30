"""Every message the server sends and every reply a site returns, as small frozen dataclasses.

A message's content is a Flower RecordDict:

- ``run``: the stage's run config (a ConfigRecord of the flat kebab-case run config keys);
- ``config``: the message's own fields (kebab-case), including Flower's ``server-round`` and
  FedProx's ``proximal-mu``, which Flower's strategies write themselves;
- ``arrays``: the model to train or evaluate (training and evaluation of one model), packed
  (``protocol.packing``: one flat array per dtype);
- ``control``: under SCAFFOLD, the server's control variate c, packed over the network's float
  parameters (``models.norm_state.parameter_keys``); a SCAFFOLD training reply returns the site's
  change of its own control variate under the same name and layout;
- ``model:<digest>``: models the site is asked to hold (the pipeline's segmenters), packed, each
  sent once per site and referred to afterwards by the digest of its packed arrays.

Replies hold ``site`` (the handshake), ``arrays`` and ``metrics`` (training) or ``metrics``
(evaluation). Metric names are those of ``protocol.metrics``. Nothing else names a record or key.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from flwr.app import ArrayRecord, ConfigRecord, MessageType, MetricRecord, RecordDict

from models.run_config import RunConfig
from protocol.packing import pack

RUN = "run"
CONFIG = "config"  # Flower's strategies' configrecord_key
ARRAYS = "arrays"  # Flower's strategies' arrayrecord_key
METRICS = "metrics"
CONTROL = "control"  # SCAFFOLD's control variates (c to the site, the change of c_i back)
SITE = "site"
MODEL_PREFIX = "model:"
PERSONAL = "personal"  # the metric-name prefix of a site's personalised model's test metrics
PERSONAL_VS = "global"  # its paired comparison is named ``vs:global/<statistic>``
SERVER_ROUND = "server-round"  # written by Flower's strategies
PROXIMAL_MU = "proximal-mu"  # written by Flower's FedProx

QUERY, TRAIN, EVALUATE = MessageType.QUERY, MessageType.TRAIN, MessageType.EVALUATE

SITE_DATA_ERROR = 4001  # the site's config or data is unusable for this message
POLICY_VIOLATION = 4002  # the site's privacy guard withheld the reply
MISSING_MODEL = 4003  # the message refers to a model the site does not hold
WORKER_FAILED = 4010  # the site worker's work raised; the reason names only the exception class
WORKER_BAD_REQUEST = 4011  # the site worker could not decode a request
WORKER_TIMEOUT = 4012  # the site worker did not answer in time
SITE_FAILED = 4020  # the ClientApp raised; the privacy guard sent only the exception class (the traceback stays at the site)

Scalar = bool | int | float | str
Metrics = dict[str, Any]


SITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # site names name folders and files: no separators, no dot segments
SITE_ROLES = ("train", "external")  # a training site, or an external test site that never trains


def valid_site_name(name: str) -> bool:
    """1 to 64 letters, digits, '_', '-' or '.', starting with a letter or digit, without '..'."""
    return bool(SITE_NAME.fullmatch(name)) and ".." not in name


class ProtocolError(ValueError):
    """A message or reply does not follow the protocol (missing record, bad field)."""


def array_digest(record: ArrayRecord) -> str:
    """The content digest of a model's arrays (names, dtypes, shapes and bytes)."""
    digest = hashlib.sha256()
    for name in sorted(record):
        array = record[name]
        digest.update(f"{name}|{array.dtype}|{tuple(array.shape)}|".encode())
        digest.update(array.data)
    return digest.hexdigest()[:24]


def wire_model(record: ArrayRecord) -> tuple[str, ArrayRecord]:
    """A model as it travels to be held: the digest it is referred to by, and its packed arrays."""
    packed = pack(record)
    return array_digest(packed), packed


def model_record_name(digest: str) -> str:
    """The record name under which a held model travels."""
    return f"{MODEL_PREFIX}{digest}"


def models_in(content: RecordDict) -> dict[str, ArrayRecord]:
    """The held-model records a message carries, by digest."""
    return {name.removeprefix(MODEL_PREFIX): r for name, r in content.array_records.items() if name.startswith(MODEL_PREFIX)}


def _encode(value: Any) -> Scalar:
    """A field value as a ConfigRecord scalar: tuples as comma lists, (name, digest) pairs as ``name=digest``."""
    if isinstance(value, tuple):
        return ",".join("=".join(v) if isinstance(v, tuple) else str(v) for v in value)
    return value


def _decode(raw: Any, default: Any) -> Any:
    """The inverse of ``_encode`` for a field whose default is ``default``."""
    if isinstance(default, tuple):
        items = [s for s in str(raw).split(",") if s]
        return tuple(tuple(s.split("=", 1)) for s in items) if "=" in str(raw) else tuple(items)
    if isinstance(default, bool):
        return bool(raw)
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    return str(raw)


def _kebab(name: str) -> str:
    return name.replace("_", "-")


I = TypeVar("I", bound="Instruction")


@dataclass(frozen=True)
class Instruction:
    """What every message to a site holds: the stage's run config and the message's own fields."""

    kind: ClassVar[str]
    run: RunConfig = field(default_factory=RunConfig)
    server_round: int = 0
    stage_offset: int = 0
    segmenters: tuple[tuple[str, str], ...] = ()  # (name, digest) of the segmenters this message uses

    def config(self) -> ConfigRecord:
        """The ``config`` record (the message's own fields)."""
        return ConfigRecord({_kebab(f.name): _encode(getattr(self, f.name)) for f in fields(self) if f.name != "run"})

    def records(self, arrays: ArrayRecord | None = None, held: Mapping[str, ArrayRecord] | None = None) -> dict[str, Any]:
        """The message content: run config, fields, the model (packed, if any) and models to hold (``wire_model``), by record name."""
        out: dict[str, Any] = {RUN: ConfigRecord(self.run.to_mapping()), CONFIG: self.config()}
        if arrays is not None:
            out[ARRAYS] = pack(arrays)
        out.update({model_record_name(d): r for d, r in (held or {}).items()})
        return out

    @classmethod
    def from_content(cls: type[I], content: RecordDict) -> I:
        """Parse a received message's content; ``ProtocolError`` names what is missing."""
        if RUN not in content.config_records:
            raise ProtocolError(f"a {cls.kind} message must carry the '{RUN}' record")
        run = RunConfig.from_mapping(dict(content.config_records[RUN]))
        raw = dict(content.config_records.get(CONFIG, ConfigRecord()))
        values: dict[str, Any] = {"run": run}
        for f in fields(cls):
            if f.name != "run" and _kebab(f.name) in raw:
                values[f.name] = _decode(raw[_kebab(f.name)], getattr(cls(), f.name))
        return cls(**values)

    @property
    def segmenter_digests(self) -> dict[str, str]:
        """The referred segmenters' digests by name."""
        return dict(self.segmenters)


@dataclass(frozen=True)
class Describe(Instruction):
    """The handshake: describe this site (name, role, counts per split and label, fingerprint, version)."""

    kind: ClassVar[str] = QUERY


@dataclass(frozen=True)
class Train(Instruction):
    """Train the ``arrays`` model for ``local-epochs`` on the training split (inputs cut with ``segmenters`` if the stage crops)."""

    kind: ClassVar[str] = TRAIN
    proximal_mu: float = 0.0
    total_rounds: int = 0  # training rounds of the whole run (every stage): what a DP site's budget must cover
    model: str = "federated"  # which of the run's models this trains (federated, local:<site>, pooled): a DP ledger entry each
    personal: bool = False  # personalise = ditto: the site also updates its personal model (kept at the site, never sent)


@dataclass(frozen=True)
class Evaluate(Instruction):
    """Evaluate the ``arrays`` model (or, with ``candidates``, each named segmenter and fusion) on one split."""

    kind: ClassVar[str] = EVALUATE
    split: str = "val"
    threshold: float = 0.5
    grad_cam: str = ""  # folder for Grad-CAM overlays at the site ('' writes none)
    model: str = "federated"  # which of the run's models this is (as in ``Train``): a FedBN site evaluates it with the normalisation state it kept for it
    candidates: tuple[str, ...] = ()
    compare: tuple[tuple[str, str], ...] = ()  # (stage, digest) of held models compared with this one on the split's cases
    moments: tuple[tuple[str, str], ...] = ()  # (module, width) of the model's feature standardisers whose inputs' sums the site returns
    personalise: bool = False  # a training site also tests its personalised model (``run.personalise``): ``personal/<metric>``, ``vs:global/<statistic>``

    @staticmethod
    def candidates_in(content: RecordDict) -> tuple[str, ...]:
        """The metric-name prefixes a reply may use: the segmentation candidates asked for, ``vs:<stage>`` of each comparison, ``moments:<module>``, the personalised model's."""
        raw = content.config_records.get(CONFIG, ConfigRecord())
        compared = _decode(raw.get(_kebab("compare"), ""), ())
        personal = (PERSONAL, comparison_prefix(PERSONAL_VS)) if bool(raw.get("personalise", False)) else ()
        return (*_decode(raw.get(_kebab("candidates"), ""), ()), *(comparison_prefix(name) for name, _ in compared), *Evaluate.moment_widths(content), *personal)

    @staticmethod
    def moment_widths(content: RecordDict) -> dict[str, int]:
        """The ``moments:<module>`` prefixes a reply may use, with the length of each of their lists (the standardiser's width)."""
        raw = content.config_records.get(CONFIG, ConfigRecord())
        asked = _decode(raw.get(_kebab("moments"), ""), ())
        try:
            return {moments_prefix(module): int(width) for module, width in asked}
        except ValueError:
            raise ProtocolError(f"malformed 'moments' field {str(raw.get('moments'))[:80]!r}") from None


def moments_prefix(module: str) -> str:
    """The metric-name prefix of a reply's sums over the inputs of the feature standardiser ``module``."""
    return f"moments:{module}"


def comparison_prefix(stage: str) -> str:
    """The metric-name prefix of a reply's paired comparison with the model of ``stage``."""
    return f"vs:{stage}"


@dataclass(frozen=True)
class SiteDescription:
    """The handshake reply."""

    site: str
    role: str
    fingerprint: str
    version: str
    share_case_predictions: bool
    counts: dict[str, dict[int, int]]
    dp: bool = False  # the site trains only with DP-SGD (its site config's privacy.dp.enabled)

    SPLITS: ClassVar[tuple[str, ...]] = ("train", "val", "test")
    KEYS: ClassVar[frozenset[str]] = frozenset(
        {"site", "role", "fingerprint", "version", "share-case-predictions", "dp"}
        | {f"n-{split}-{tag}" for split in ("train", "val", "test") for tag in ("pos", "neg")}
    )

    def to_content(self) -> RecordDict:
        """The reply's content."""
        values: dict[str, Scalar] = {
            "site": self.site, "role": self.role, "fingerprint": self.fingerprint, "version": self.version,
            "share-case-predictions": self.share_case_predictions, "dp": self.dp,
        }  # fmt: skip
        for split in self.SPLITS:
            counts = self.counts.get(split, {})
            values[f"n-{split}-pos"], values[f"n-{split}-neg"] = int(counts.get(1, 0)), int(counts.get(0, 0))
        return RecordDict({SITE: ConfigRecord(values)})

    @classmethod
    def from_content(cls, content: RecordDict) -> SiteDescription:
        """Parse a handshake reply."""
        if SITE not in content.config_records:
            raise ProtocolError(f"a handshake reply must carry the '{SITE}' record")
        info = content.config_records[SITE]
        if not valid_site_name(str(info.get("site", ""))):
            raise ProtocolError(f"site name {str(info.get('site', ''))[:80]!r} is not a valid site name (letters, digits, '_', '-', '.'; no '..')")
        if str(info.get("role", "")) not in SITE_ROLES:
            raise ProtocolError(f"role {str(info.get('role', ''))[:20]!r}: expected one of {', '.join(SITE_ROLES)}")
        counts = {split: {0: int(info.get(f"n-{split}-neg", 0)), 1: int(info.get(f"n-{split}-pos", 0))} for split in cls.SPLITS}
        return cls(
            str(info["site"]), str(info["role"]), str(info.get("fingerprint", "")), str(info.get("version", "")),
            bool(info.get("share-case-predictions", False)), counts, bool(info.get("dp", False)),
        )  # fmt: skip


@dataclass(frozen=True)
class TrainReply:
    """A site's updated model and its training metrics."""

    arrays: ArrayRecord
    metrics: Metrics
    control: ArrayRecord | None = None  # SCAFFOLD: the change of the site's control variate, packed

    def to_content(self) -> RecordDict:
        """The reply's content."""
        content = RecordDict({ARRAYS: self.arrays, METRICS: MetricRecord(self.metrics)})
        if self.control is not None:
            content[CONTROL] = self.control
        return content


@dataclass(frozen=True)
class EvaluateReply:
    """A site's evaluation metrics (aggregates only)."""

    metrics: Metrics

    def to_content(self) -> RecordDict:
        """The reply's content."""
        return RecordDict({METRICS: MetricRecord(self.metrics)})

    @classmethod
    def from_content(cls, content: RecordDict) -> EvaluateReply:
        """Parse an evaluation (or training) reply's metrics."""
        if METRICS not in content.metric_records:
            raise ProtocolError(f"a reply must carry the '{METRICS}' record")
        return cls(dict(content.metric_records[METRICS]))
