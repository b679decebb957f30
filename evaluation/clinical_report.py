"""The clinical part of a report: Table 1, odds-ratio tables, selection, readers and the nomogram.

It reads the run's ``clinical.json`` (written by ``server/clinical_stage.py``): every number in it is
a federated aggregate (counts, moments, fitted coefficients) or a site's own scalar statistic. The
clinical models' per-site rows and comparisons are the ordinary ``classification`` and
``comparisons`` rows of the report.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any

from evaluation.nomogram import build_nomogram, nomogram_png
from evaluation.text import number as _num
from evaluation.text import p_value as _p
from models.federated_logit import INTERCEPT

NOMOGRAM = "nomogram.png"
READER_FIELDS = (("sensitivity", "sensitivity"), ("specificity", "specificity"), ("kappa", "kappa"), ("auc", "AUC"))


def clinical_section(run_dir: Path) -> dict[str, Any] | None:
    """``report.json["clinical"]``: the run's clinical.json without the histogram bin edges (None when the run fitted none)."""
    path = Path(run_dir) / "clinical.json"
    if not path.exists():
        return None
    section = json.loads(path.read_text(encoding="utf-8"))
    for row in (section.get("table1") or {}).get("rows", []):
        row.pop("bins", None)
    return section


def nomogram_figure(clinical: dict[str, Any]) -> dict[str, bytes]:
    """``nomogram.png`` of the combined model, when the run fitted one."""
    spec = clinical.get("nomogram")
    if not spec:
        return {}
    ranges = {name: (low, high) for name, (low, high) in spec["ranges"].items()}
    nomogram = build_nomogram(spec["coef"], ranges, spec["binary"], spec["levels"], spec.get("categorical"))
    return {NOMOGRAM: nomogram_png(nomogram, f"Nomogram of the {spec['model']} model (federated fit)")}


def _ratio(value: Any) -> str:
    """An odds ratio: two decimals, three significant digits when very large or small (an overflowed bound reads inf)."""
    if not isinstance(value, (int, float)) or value != value:
        return "n/a"
    return f"{value:.2f}" if 0.01 <= value < 1000 else f"{value:.3g}"


def _or(row: dict[str, Any]) -> str:
    """``OR (95% CI)``."""
    return f"{_ratio(row['or'])} ({_ratio(row['ci_low'])}-{_ratio(row['ci_high'])})"


def _continuous(cell: dict[str, Any]) -> str:
    """``mean +/- SD; median [Q1, Q3]``."""
    return f"{_num(cell['mean'], 1)} +/- {_num(cell['sd'], 1)}; {_num(cell['median'], 1)} [{_num(cell['q1'], 1)}, {_num(cell['q3'], 1)}]"


def table1_rows(clinical: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Table 1 as a header and text rows: variable, level, each site, overall, N0, N+, and both tests' p."""
    table = clinical.get("table1") or {}
    sites = list(table.get("sites", []))
    head = ["variable", "level", *sites, "overall", "N0", "N+", "p (sites)", "p (N0 vs N+)"]
    body = []
    for row in table.get("rows", []):
        tests = [f"{_p(row['p_cohorts'])} ({row['test_cohorts']})", f"{_p(row['p_groups'])} ({row['test_groups']})"]
        cells = [row["sites"].get(s) for s in sites] + [row["overall"], row["groups"].get("0"), row["groups"].get("1")]
        if row["type"] == "continuous":
            body.append([row["variable"], "mean +/- SD; median [IQR]", *("n/a" if c is None else _continuous(c) for c in cells), *tests])
        else:
            for i, level in enumerate(row["levels"]):
                body.append([row["variable"] if i == 0 else "", level, *("n/a" if c is None else c[level] for c in cells), *(tests if i == 0 else ["", ""])])
        missing = row.get("missing") or {}
        if any(missing.values()):
            body.append(["", "missing", *(str(missing.get(s, 0)) for s in sites), str(sum(missing.values())), "", "", "", ""])
    return head, body


def odds_ratio_rows(clinical: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Seed 000's Table 2: univariable OR (95% CI) and p, then each multivariable model's, per design column."""
    uni = clinical.get("univariable") or {}
    multi = clinical.get("multivariable") or clinical.get("models") or {}
    head = ["variable", "univariable OR (95% CI)", "p", *(h for name in multi for h in (f"{name} OR (95% CI)", "p"))]
    by_model = {name: {c["variable"]: c for c in fit["columns"]} for name, fit in multi.items()}
    body = []
    for variable, fit in uni.items():
        if "error" in fit:
            body.append([variable, "not estimable", "", *([""] * 2 * len(multi))])
            continue
        for column in fit["columns"]:
            if column["variable"] == INTERCEPT:
                continue
            cells = [column["variable"], _or(column), _p(column["p"])]
            for name in multi:
                other = by_model[name].get(column["variable"])
                cells += [_or(other), _p(other["p"])] if other else ["", ""]
            body.append(cells)
    listed = {row[0] for row in body}
    for name, columns in by_model.items():  # a model's own columns (post-fusion's scores)
        for variable, column in columns.items():
            if variable != INTERCEPT and variable not in listed:
                listed.add(variable)
                cells = [variable, "", ""]
                for other_name in multi:
                    other = by_model[other_name].get(variable)
                    cells += [_or(other), _p(other["p"])] if other else ["", ""]
                body.append(cells)
    return head, body


def model_summary_rows(clinical: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Each fitted model: n, N+, log-likelihood, AIC and the columns it kept."""
    fits = clinical.get("multivariable") or clinical.get("models") or {}
    head = ["model", "n", "N+", "log-likelihood", "AIC", "columns (VIF)", "selection"]
    body = []
    for name, fit in fits.items():
        vif = fit.get("vif") or {}
        columns = [c["variable"] for c in fit["columns"] if c["variable"] != INTERCEPT]
        shown = ", ".join(f"{c} ({vif[c]:.2f})" if c in vif else c for c in columns)
        steps = [f"entered {', '.join(fit['entered'])}"] if "entered" in fit else []
        steps += [f"VIF dropped {d['variable']} ({d['vif']:.1f})" for d in fit.get("vif_dropped", [])]
        steps += [f"AIC dropped {s['dropped']} ({s['aic']:.2f})" for s in fit.get("steps", []) if s.get("dropped")]
        body.append([name, str(fit["n"]), str(fit["n_positive"]), _num(fit["loglik"]), _num(fit["aic"]), shown, "; ".join(steps) or "refit of the selected features"])
    return head, body


def selection_rows(clinical: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Seed 004's selection: the features left after each step, with their counts."""
    sel = clinical.get("selection")
    if not sel:
        return [], []
    counts = sel["counts"]
    body = [
        ["candidates", str(counts["start"]), ", ".join(sel["tests"])],
        [f"univariate t-test p < {sel['screen_p']}", str(counts["univariate"]), ", ".join(sel["screened"])],
        [f"correlation pruning at Pearson r beyond +/-{sel['prune_r']}", str(counts["correlation"]), ", ".join(p["dropped"] + f" (r {p['r']:+.2f} with {p['kept']})" for p in sel["pruned"]) or "none dropped"],
        [f"LASSO, penalty by {sel['folds']}-fold site-stratified CV", str(counts["lasso"]), ", ".join(sel["lasso"]["selected"]) or "none"],
    ]
    return ["step", "features", "which"], body


def reader_rows(clinical: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Each reader against the model at every test site: sensitivity, specificity, kappa (SE), AUC, McNemar p."""
    rows = clinical.get("reader_rows") or []
    head = ["site", "reader", "n", "sensitivity", "specificity", "kappa (SE)", "AUC (95% CI)", "McNemar p sens.", "McNemar p spec.", "model", "reader-model kappa (SE)"]
    body = []
    for r in rows:
        auc = f"{_num(r['auc'])} ({_num(r.get('auc_ci_lo'), 2)}-{_num(r.get('auc_ci_hi'), 2)})" if "auc" in r else "n/a"
        body.append([
            r["site"], r["reader"], str(r.get("n", "n/a")), _num(r.get("sensitivity")), _num(r.get("specificity")),
            f"{_num(r.get('kappa'))} ({_num(r.get('kappa_se'))})", auc, _p(r.get("mcnemar_sensitivity_p")), _p(r.get("mcnemar_specificity_p")),
            r["model"], f"{_num(r.get('model_kappa'))} ({_num(r.get('model_kappa_se'))})",
        ])  # fmt: skip
    return head, body


SECTIONS: tuple[tuple[str, str, Callable[[dict[str, Any]], tuple[list[str], list[list[str]]]]], ...] = (
    ("table1", "Table 1: baseline characteristics", table1_rows),
    ("odds-ratios", "Logistic regression: odds ratios (as seed 000's Table 2)", odds_ratio_rows),
    ("clinical-models", "Clinical models fitted", model_summary_rows),
    ("selection", "Feature selection (as seed 004)", selection_rows),
    ("readers", "Readers against the model", reader_rows),
)


def _intro(clinical: dict[str, Any]) -> list[str]:
    """The lines that say how the clinical models were made, and what stopped them."""
    table = clinical.get("table1") or {}
    lines = [
        f"Clinical models ({clinical.get('mode')}): fitted on the {clinical.get('fit_split', 'train')} split of "
        f"{', '.join(clinical.get('training_sites', []))} from summed per-site statistics (Newton-Raphson on summed gradients and "
        f"Hessians: equal to a pooled fit of the same rows); {clinical.get('message_rounds', 0)} message rounds. {clinical.get('signature', '')}.",
    ]
    for modality, names in (clinical.get("image_features") or {}).items():
        lines.append(
            f"Image features among the candidate variables: {len(names)} {modality} features ({names[0]} ... {names[-1]}), the final image model's "
            f"{modality} encoder's embedding of each case, computed at its site; a case without {modality} is incomplete for them."
        )
    if table:
        lines.append(f"Table 1: {table.get('continuous', '')}; counts below {table.get('small_cell')} shown as \"<{table.get('small_cell')}\".")
    if clinical.get("stopped"):
        lines.append(f"STOPPED: {clinical['stopped']}")
    for site, why in (clinical.get("excluded") or {}).items():
        lines.append(f"Left out of the clinical models: {site}: {why}")
    lines += [f"Note: {n}" for n in clinical.get("notes", [])]
    lines += [f"Univariable {name}: {fit['error']}" for name, fit in (clinical.get("univariable") or {}).items() if "error" in fit]
    return lines


def clinical_markdown(report: dict[str, Any]) -> list[str]:
    """The clinical sections of report.md."""
    clinical = report.get("clinical")
    if not clinical:
        return []
    out = ["", "## Clinical models", "", *(f"{line}  " for line in _intro(clinical))]
    for _, title, rows_of in SECTIONS:
        head, body = rows_of(clinical)
        if not body:
            continue
        out += ["", f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(cells) + " |" for cells in body]
    return out


def clinical_html(report: dict[str, Any], figures: dict[str, bytes], figure: Callable[[str, bytes, str, bool], str]) -> str:
    """The clinical sections of report.html, with the nomogram; ``figure`` embeds a PNG."""
    clinical = report.get("clinical")
    if not clinical:
        return ""
    parts = ['<h2 id="clinical">Clinical models</h2>', *(f'<p class="meta">{escape(line)}</p>' for line in _intro(clinical))]
    if NOMOGRAM in figures:
        parts += ['<h3 id="nomogram">Nomogram</h3><div class="figs">', figure(NOMOGRAM, figures[NOMOGRAM], "Nomogram of the combined model", True), "</div>"]
    for anchor, title, rows_of in SECTIONS:
        head, body = rows_of(clinical)
        if not body:
            continue
        heads = "".join(f'<th class="l">{escape(h)}</th>' if i < 2 else f"<th>{escape(h)}</th>" for i, h in enumerate(head))
        rows = "".join("<tr>" + "".join(f'<td class="l">{escape(c)}</td>' if i < 2 else f"<td>{escape(c)}</td>" for i, c in enumerate(cells)) + "</tr>" for cells in body)
        parts.append(f'<h3 id="{anchor}">{escape(title)}</h3><div class="scroll"><table><thead><tr>{heads}</tr></thead><tbody>{rows}</tbody></table></div>')
    return "\n".join(parts)
