"""The clinical models' message (``query.clinical``) and what each of its jobs may send back.

One message type carries every clinical job; its ``config`` record names the job, the split and a
JSON ``spec`` (the variables with their harmonised levels, the design, the coefficients to
evaluate). The server's side of a job is a dataclass here too, so the privacy guard derives the
exact reply it allows from the request itself (``allowed_metrics``): names and list lengths are
fixed by the request (the design's width, the levels), never by the number of cases.

Jobs and their replies (metrics, summed over the site's cases of ``split``; nothing per case):

- ``schema``: the site's typed clinical columns (a ``schema`` ConfigRecord holding one JSON key,
  ``variables``: names, kinds and levels; no value of any case);
- ``table1``: per variable and label group ``g`` (0, 1): ``<v>|<g>/counts`` (one per level) and
  ``<v>|<g>/missing``; continuous ``<v>|<g>/moments`` (n, sum, sum of squares) and, with bin edges,
  ``<v>|<g>/hist``;
- ``moments``, ``logit``: the design may hold image features (``FeatureBlock``: a modality's
  embedding of the image model, computed at the site, one column per name the request lists);
  their sums, moments and statistics are the design's like any column's, so the request fixes their count;
- ``moments``: per label group, the design's ``g<g>/n``, ``g<g>/sum`` (p) and ``g<g>/cross`` (p x p);
- ``logit``: per requested fit ``r<i>`` (columns and coefficients): ``score`` (p), ``information``
  (p x p), ``loglik``, ``n``, ``n_positive``, ``n_extreme``, each over all the split's complete cases
  or over one of K site-stratified folds (or the other folds);
- ``evaluate``: each model's classification metrics as ``<model>/<metric>`` (``protocol.metrics``
  names, per-case lists excluded), paired comparisons as ``<a>~<b>/<field>`` and readers'
  agreement as ``reader:<column>/<field>``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from flwr.app import RecordDict

from protocol.messages import CONFIG, METRICS, Instruction, ProtocolError, _decode
from models.run_config import MODALITIES
from protocol.metrics import COMPARISON_METRICS, METRIC_LENGTHS, PER_CASE

CLINICAL = "query.clinical"
SCHEMA = "schema"  # the reply record of the schema job
JOBS = ("schema", "table1", "moments", "logit", "evaluate")
KINDS = ("continuous", "binary", "categorical", "ordinal")
MAX_LEVELS = 20  # a categorical column with more levels is not a clinical variable (free text): refused at the site
GROUPS = (0, 1)
READER_FIELDS = (
    "n", "n_positive", "sensitivity", "specificity", "ppv", "npv", "accuracy", "kappa", "kappa_se", "auc", "auc_ci_lo", "auc_ci_hi",
    "mcnemar_sensitivity_p", "mcnemar_specificity_p", "model_kappa", "model_kappa_se",
)  # fmt: skip
SIGNATURE = "dl_signature"  # the design column holding the image model's score (its logit) for each case
NAME_FORBIDDEN = ("/", "|", "~", ":")  # separators of the reply's metric names
MAX_FEATURES = 4096  # columns of one image-feature block (an encoder's embedding)


def _check_name(name: Any, what: str) -> None:
    """A column name: 1 to 64 characters, none of the reply's separators; ``ProtocolError`` otherwise."""
    if not isinstance(name, str) or not name or len(name) > 64 or any(sep in name for sep in NAME_FORBIDDEN):
        raise ProtocolError(f"{what} name {str(name)[:40]!r}: 1 to 64 characters, none of {' '.join(NAME_FORBIDDEN)}")


@dataclass(frozen=True)
class Variable:
    """A clinical variable as every site codes it: name, kind and levels (harmonised across sites)."""

    name: str
    kind: str
    levels: tuple[str, ...] = ()

    @property
    def width(self) -> int:
        """Its columns in a design: one per level but the first for a categorical variable, else one."""
        return len(self.levels) - 1 if self.kind == "categorical" else 1

    def columns(self) -> list[str]:
        """Its design column names (``var[level]`` for a categorical variable's non-reference levels)."""
        return [f"{self.name}[{level}]" for level in self.levels[1:]] if self.kind == "categorical" else [self.name]

    def to_dict(self) -> dict[str, Any]:
        """As JSON."""
        return {"name": self.name, "kind": self.kind, "levels": list(self.levels)}

    @classmethod
    def from_dict(cls, raw: Any) -> Variable:
        """From JSON; ``ProtocolError`` for anything that is not a variable."""
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or raw.get("kind") not in KINDS:
            raise ProtocolError(f"not a clinical variable: {str(raw)[:80]}")
        levels = raw.get("levels", [])
        if not isinstance(levels, list) or len(levels) > MAX_LEVELS or not all(isinstance(v, str) and len(v) <= 64 for v in levels):
            raise ProtocolError(f"variable {raw['name'][:40]!r}: levels must be at most {MAX_LEVELS} strings")
        _check_name(raw["name"], "variable")
        return cls(raw["name"], raw["kind"], tuple(levels))


@dataclass(frozen=True)
class FeatureBlock:
    """A modality's embedding by the image model's encoder as design columns: one name per embedding dimension, in order."""

    modality: str
    names: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """As JSON."""
        return {"modality": self.modality, "names": list(self.names)}

    @classmethod
    def from_dict(cls, raw: Any) -> FeatureBlock:
        """From JSON; ``ProtocolError`` for an unknown modality, too many columns or a bad name."""
        if not isinstance(raw, dict) or raw.get("modality") not in MODALITIES or not isinstance(raw.get("names"), list):
            raise ProtocolError(f"not an image-feature block: {str(raw)[:80]}")
        if not 0 < len(raw["names"]) <= MAX_FEATURES:
            raise ProtocolError(f"image-feature block {raw['modality']}: 1 to {MAX_FEATURES} columns, got {len(raw['names'])}")
        for name in raw["names"]:
            _check_name(name, "image feature")
        return cls(raw["modality"], tuple(raw["names"]))


@dataclass(frozen=True)
class LinearScore:
    """A fitted model's linear predictor, used as a covariate of another (post-fusion)."""

    name: str
    design: Design
    columns: tuple[int, ...]
    beta: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        """As JSON."""
        return {"name": self.name, "design": self.design.to_dict(), "columns": list(self.columns), "beta": list(self.beta)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> LinearScore:
        """From JSON."""
        return cls(str(raw["name"]), Design.from_dict(raw["design"]), tuple(int(c) for c in raw["columns"]), tuple(float(b) for b in raw["beta"]))


@dataclass(frozen=True)
class Design:
    """How a site builds a design matrix: intercept, clinical variables, the image model's signature, its features, fitted scores.

    ``center`` and ``scale`` (one per column, intercept included: 0 and 1) standardise the columns
    (the penalised fits); empty means as coded.
    """

    variables: tuple[Variable, ...] = ()
    signature: bool = False
    scores: tuple[LinearScore, ...] = ()
    center: tuple[float, ...] = ()
    scale: tuple[float, ...] = ()
    features: tuple[FeatureBlock, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """The column names, intercept first."""
        names = ["intercept"]
        for variable in self.variables:
            names += variable.columns()
        if self.signature:
            names.append(SIGNATURE)
        for block in self.features:
            names += block.names
        names += [f"score:{s.name}" for s in self.scores]
        return tuple(names)

    @property
    def width(self) -> int:
        """Number of columns."""
        return len(self.names)

    @property
    def uses_signature(self) -> bool:
        """Whether building it needs the image model's scores (its own column or a fitted score's)."""
        return self.signature or any(s.design.uses_signature for s in self.scores)

    def to_dict(self) -> dict[str, Any]:
        """As JSON."""
        return {
            "variables": [v.to_dict() for v in self.variables], "signature": self.signature,
            "scores": [s.to_dict() for s in self.scores], "center": list(self.center), "scale": list(self.scale),
            "features": [b.to_dict() for b in self.features],
        }  # fmt: skip

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Design:
        """From JSON; ``ProtocolError`` when malformed."""
        try:
            design = cls(
                tuple(Variable.from_dict(v) for v in raw.get("variables", [])), bool(raw.get("signature", False)),
                tuple(LinearScore.from_dict(s) for s in raw.get("scores", [])),
                tuple(float(c) for c in raw.get("center", [])), tuple(float(s) for s in raw.get("scale", [])),
                tuple(FeatureBlock.from_dict(b) for b in raw.get("features", [])),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ProtocolError(f"malformed design: {err}") from None
        if len(set(design.names)) != design.width:
            raise ProtocolError("a design's column names must be distinct")
        if design.center and (len(design.center) != design.width or len(design.scale) != design.width):
            raise ProtocolError("a design's center and scale need one value per column")
        return design


@dataclass(frozen=True)
class Fit:
    """One fit's request: design columns and coefficients (a Newton step's statistics, or a model to evaluate)."""

    columns: tuple[int, ...]
    beta: tuple[float, ...]
    name: str = ""
    fold: int = -1  # logit with the spec's K folds: the statistics of fold ``fold`` (``held_out``) or of the other folds; -1: every case
    held_out: bool = False

    def to_dict(self) -> dict[str, Any]:
        """As JSON."""
        return {"columns": list(self.columns), "beta": list(self.beta), "name": self.name, "fold": self.fold, "held_out": self.held_out}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Fit:
        """From JSON."""
        fit = cls(
            tuple(int(c) for c in raw["columns"]), tuple(float(b) for b in raw["beta"]), str(raw.get("name", "")),
            int(raw.get("fold", -1)), bool(raw.get("held_out", False)),
        )  # fmt: skip
        if len(fit.columns) != len(fit.beta):
            raise ProtocolError("a fit needs one coefficient per column")
        return fit


@dataclass(frozen=True)
class Spec:
    """A clinical job's parameters (the ``spec`` field, as JSON)."""

    variables: tuple[Variable, ...] = ()  # table1
    edges: dict[str, tuple[float, ...]] = field(default_factory=dict)  # table1: bin edges of continuous variables
    design: Design = field(default_factory=Design)  # moments, logit, evaluate
    fits: tuple[Fit, ...] = ()  # logit: statistics at each; evaluate: the named models
    folds: int = 0  # logit: K site-stratified folds that the fits' ``fold`` refers to
    thresholds: dict[str, float] = field(default_factory=dict)  # evaluate: each model's operating point
    compare: tuple[tuple[str, str], ...] = ()  # evaluate: (new, reference) pairs
    readers: tuple[Variable, ...] = ()  # evaluate: readers' calls (binary) or scores (ordinal)
    reader_model: str = ""  # evaluate: the model the readers are compared with

    def to_json(self) -> str:
        """The ``spec`` field."""
        return json.dumps({
            "variables": [v.to_dict() for v in self.variables], "edges": {k: list(v) for k, v in self.edges.items()},
            "design": self.design.to_dict(), "fits": [f.to_dict() for f in self.fits], "folds": self.folds, "thresholds": self.thresholds, "compare": [list(p) for p in self.compare],
            "readers": [r.to_dict() for r in self.readers], "reader_model": self.reader_model,
        })  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> Spec:
        """Parse the ``spec`` field; ``ProtocolError`` when malformed."""
        try:
            raw = json.loads(text or "{}")
            return cls(
                tuple(Variable.from_dict(v) for v in raw.get("variables", [])),
                {str(k): tuple(float(e) for e in v) for k, v in raw.get("edges", {}).items()},
                Design.from_dict(raw.get("design", {})), tuple(Fit.from_dict(f) for f in raw.get("fits", [])),
                int(raw.get("folds", 0)),
                {str(k): float(v) for k, v in raw.get("thresholds", {}).items()},
                tuple((str(a), str(b)) for a, b in raw.get("compare", [])),
                tuple(Variable.from_dict(r) for r in raw.get("readers", [])), str(raw.get("reader_model", "")),
            )  # fmt: skip
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
            raise ProtocolError(f"malformed clinical spec: {err}") from None


@dataclass(frozen=True)
class ClinicalQuery(Instruction):
    """A clinical job over the site's cases of ``split`` (``all``: every split), with the image model ``signature`` (a held model's digest)."""

    kind: ClassVar[str] = CLINICAL
    job: str = "schema"
    split: str = "train"
    signature: str = ""
    spec: str = "{}"

    @property
    def parsed(self) -> Spec:
        """The job's parameters."""
        return Spec.from_json(self.spec)

    @staticmethod
    def of(content: RecordDict) -> ClinicalQuery:
        """The query a message carries (what the privacy guard needs), without the run config."""
        raw = dict(content.config_records.get(CONFIG, {}))
        values = {name: _decode(raw[name], getattr(ClinicalQuery(), name)) for name in ("job", "split", "signature", "spec") if name in raw}
        return ClinicalQuery(**values)

    def allowed_metrics(self) -> dict[str, int | None]:
        """Every metric name the reply may hold, with its length (None: a scalar): derived from this request alone."""
        spec = self.parsed
        out: dict[str, int | None] = {}
        if self.job == "table1":
            out["min_cell_count"] = None
            for v in spec.variables:
                for g in GROUPS:
                    out[f"{v.name}|{g}/missing"] = None
                    if v.kind == "continuous":
                        out[f"{v.name}|{g}/moments"] = 3
                        if v.name in spec.edges:
                            out[f"{v.name}|{g}/hist"] = len(spec.edges[v.name]) - 1
                    else:
                        out[f"{v.name}|{g}/counts"] = len(v.levels)
        elif self.job == "moments":
            p = spec.design.width
            for g in GROUPS:
                out |= {f"g{g}/n": None, f"g{g}/sum": p, f"g{g}/cross": p * p}
        elif self.job == "logit":
            for i, fit in enumerate(spec.fits):
                p = len(fit.columns)
                out |= {f"r{i}/score": p, f"r{i}/information": p * p}
                out |= {f"r{i}/{name}": None for name in ("loglik", "n", "n_positive", "n_extreme")}
        elif self.job == "evaluate":
            for fit in spec.fits:
                out |= {f"{fit.name}/{name}": length for name, length in METRIC_LENGTHS.items() if length != PER_CASE}
            for a, b in spec.compare:
                out |= {f"{a}~{b}/{name}": None for name in COMPARISON_METRICS}
            for reader in spec.readers:
                out |= {f"reader:{reader.name}/{name}": None for name in READER_FIELDS}
        return out


def schema_json(variables: list[Variable]) -> str:
    """The schema job's reply value."""
    return json.dumps([v.to_dict() for v in variables])


def parse_schema(content: RecordDict) -> list[Variable]:
    """A schema reply's variables; ``ProtocolError`` when malformed."""
    if SCHEMA not in content.config_records:
        raise ProtocolError(f"a schema reply must carry the '{SCHEMA}' record")
    try:
        raw = json.loads(str(content.config_records[SCHEMA].get("variables", "[]")))
    except json.JSONDecodeError as err:
        raise ProtocolError(f"malformed schema: {err}") from None
    if not isinstance(raw, list):
        raise ProtocolError("a schema must be a list of variables")
    return [Variable.from_dict(v) for v in raw]


REPLY_KEYS = {METRICS, SCHEMA}
