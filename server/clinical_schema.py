"""Harmonise the sites' typed clinical columns into one coding every site uses (no value of any case involved).

A variable is modelled when every training site types it; levels are the union over the sites
(ordinal levels in their common order; numeric ones sorted), so a level one site lacks is named.
Kinds that disagree are reconciled where one reading covers both (a numeric ordinal at one site
and continuous at another: continuous; binary and a two-level 0/1 variable: binary), else the
variable is left out, or refused when the run config names it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from protocol.clinical import Variable


class ClinicalError(ValueError):
    """The clinical models cannot be fitted as configured (the message says why and what to change)."""


@dataclass(frozen=True)
class Harmonised:
    """The variables every site codes alike, and what the harmonisation noticed."""

    variables: tuple[Variable, ...]
    notes: list[str] = field(default_factory=list)


def _numeric(levels: Sequence[str]) -> bool:
    try:
        [float(v) for v in levels]
    except ValueError:
        return False
    return True


def _merge_kind(name: str, seen: Mapping[str, Variable]) -> tuple[str, str]:
    """The kind covering every site's, or ('', why)."""
    kinds = {v.kind for v in seen.values()}
    if len(kinds) == 1:
        return kinds.pop(), ""
    if kinds <= {"continuous", "ordinal", "binary"} and "continuous" in kinds and all(_numeric(v.levels) for v in seen.values() if v.kind != "continuous"):
        return "continuous", ""
    if kinds == {"binary", "categorical"} and all(set(v.levels) <= {"0", "1"} for v in seen.values()):
        return "binary", ""
    detail = ", ".join(f"{site}: {v.kind}" for site, v in seen.items())
    return "", f"clinical variable {name} is typed differently across sites ({detail}); declare it alike in every site config's data.clinical"


def _merge_levels(name: str, kind: str, seen: Mapping[str, Variable]) -> tuple[tuple[str, ...], str]:
    """The union of the sites' levels in one order, or ((), why) for ordinal orders that disagree."""
    if kind in ("continuous", "binary"):
        return (("0", "1") if kind == "binary" else ()), ""
    union: list[str] = []
    for variable in seen.values():
        union += [level for level in variable.levels if level not in union]
    if _numeric(union):
        return tuple(sorted(union, key=float)), ""
    if kind == "ordinal":
        for site, variable in seen.items():
            order = [level for level in union if level in variable.levels]
            if order != list(variable.levels):
                return (), f"clinical variable {name}: site {site} orders its levels {', '.join(variable.levels)} unlike the others ({', '.join(union)})"
    return tuple(union), ""


def harmonise(schemas: Mapping[str, Sequence[Variable]], trainers: Sequence[str], wanted: Sequence[str] = (), readers: Sequence[str] = ()) -> Harmonised:
    """One coding of the wanted variables (default: every variable all training sites type), readers excluded."""
    by_site = {site: {v.name: v for v in variables} for site, variables in schemas.items()}
    names = list(wanted) or sorted(set.intersection(*(set(by_site.get(s, {})) for s in trainers)) if trainers else set())
    notes: list[str] = []
    out: list[Variable] = []
    for name in [n for n in names if n not in readers]:
        lacking = [s for s in trainers if name not in by_site.get(s, {})]
        if lacking:
            raise ClinicalError(f"clinical variable {name} (run config 'clinical-variables') is not a typed clinical column at training site(s) {', '.join(lacking)}")
        seen = {s: by_site[s][name] for s in schemas if name in by_site[s]}
        kind, why = _merge_kind(name, seen)
        levels, why = _merge_levels(name, kind, seen) if kind else ((), why)
        if why:
            if wanted:
                raise ClinicalError(why)
            notes.append(why + "; left out")
            continue
        for level in levels if kind in ("categorical", "ordinal") else ():
            holders = [s for s, v in seen.items() if level in v.levels and v.kind in ("categorical", "ordinal")]
            if len(holders) < len(seen):
                notes.append(f"clinical variable {name}: level {level} is seen only at {', '.join(sorted(holders))}")
        out.append(Variable(name, kind, levels))
    for site in sorted(set(schemas) - set(trainers)):
        absent = [v.name for v in out if v.name not in by_site[site]]
        if absent:
            notes.append(f"external site {site} has no column {', '.join(absent)}: the models using it are not evaluated there")
    if not out:
        raise ClinicalError("no clinical variable is typed at every training site; declare the columns in each site config's data.clinical")
    return Harmonised(tuple(out), notes)


def reader_variables(schemas: Mapping[str, Sequence[Variable]], readers: Sequence[str]) -> tuple[tuple[Variable, ...], list[str]]:
    """The readers' columns (binary calls or ordinal scores) as every site codes them; a column no site has, or of another kind, is named."""
    out, notes = [], []
    for name in readers:
        seen = {site: v for site, variables in schemas.items() for v in variables if v.name == name}
        if not seen:
            raise ClinicalError(f"run config 'readers': no site has a typed column {name} (declare it binary or ordinal in data.clinical)")
        kind, why = _merge_kind(name, seen)
        levels, why = _merge_levels(name, kind, seen) if kind else ((), why)
        if kind not in ("binary", "ordinal") or why:
            raise ClinicalError(why or f"run config 'readers': column {name} is {kind}; a reader's column holds binary calls or an ordinal score")
        out.append(Variable(name, kind, levels))
        absent = sorted(set(schemas) - set(seen))
        if absent:
            notes.append(f"reader {name}: no column at {', '.join(absent)}")
    return tuple(out), notes
