"""A synthetic axilla.report/1 dict: 2 training sites, 1 external, pooled "all", 3 models, curves from random data."""

from __future__ import annotations

from typing import Any

import numpy as np

SITES = (("hospital_a", "train", 0.35), ("hospital_b", "train", 0.25), ("hospital_ext", "external", 0.30))
MODELS = ("federated", "pooled", "local:hospital_a")
EXCLUDED_REASON = "manifest row 5: label is not 0 or 1 (got <none> & 2)"


def make_report(seed: int = 0) -> dict[str, Any]:
    """A realistic report; some keys are missing on purpose (a band, CIs, metrics, comparison fields)."""
    rng = np.random.default_rng(seed)
    report: dict[str, Any] = {
        "schema": "axilla.report/1",
        "run": {
            "id": "run-fixture", "task": "classification", "model": "small", "strategy": "fedavg", "rounds": 5,
            "local_epochs": 2, "image_size": 96, "seed": seed, "threshold_rule": "youden",
        },
        "sites": [],
        "excluded": {"node-3": EXCLUDED_REASON},
        "classification": [],
        "comparisons": [],
        "curves": [],
        "pooling": {"method": "sum of per-site score histograms", "bins": 200, "resolution": 0.005},
        "missing": [
            {"round": 3, "model": "federated", "site": "hospital_b", "split": "val", "reason": "no reply before the round timeout"},
        ],
        "phantom": {"bayes_auc": {"hospital_a": 0.874, "hospital_ext": 0.861}},
    }
    pooled: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray]]] = {}
    for name, role, prevalence in SITES:
        splits = {"train": 0, "val": 0, "test": 60} if role == "external" else {"train": 120, "val": 30, "test": 40}
        total = sum(splits.values())
        positive = round(total * prevalence)
        report["sites"].append({"name": name, "role": role, "n_cases": total, "n_positive": positive, "splits": splits})
        for split in ("test", "val"):
            if splits[split] == 0:
                continue
            y = (rng.random(splits[split]) < prevalence).astype(int)
            y[:2] = [0, 1]
            for k, model in enumerate(MODELS):
                p = _scores(rng, y, separation=1.6 - 0.4 * k)
                pooled.setdefault((model, split), []).append((y, p))
                report["classification"].append(_row(model, name, split, y, p))
                report["curves"].append(_curves(model, name, split, y, p, band=name != "hospital_b"))
    for (model, split), parts in pooled.items():
        y, p = np.concatenate([a for a, _ in parts]), np.concatenate([b for _, b in parts])
        report["classification"].append(_row(model, "all", split, y, p))
        report["curves"].append(_curves(model, "all", split, y, p, band=False))
    _drop_some_keys(report)
    report["comparisons"] = _comparisons(report)
    return report


def _scores(rng: np.random.Generator, y: np.ndarray, separation: float) -> np.ndarray:
    """Predicted risks: a logistic of a label-shifted normal."""
    return 1.0 / (1.0 + np.exp(-(rng.normal(0.0, 1.0, len(y)) + separation * (y - 0.5) - 0.6)))


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    """Mann-Whitney AUC."""
    pos, neg = p[y == 1], p[y == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


def _wilson(k: int, n: int) -> list[float]:
    """Wilson 95% interval of k successes in n trials."""
    z, phat = 1.96, k / n
    centre = (phat + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [float(centre - half), float(centre + half)]


def _row(model: str, site: str, split: str, y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """A classification row with every metric defined."""
    t = 0.4
    pred = (p >= t).astype(int)
    tp, fp = int(((pred == 1) & (y == 1)).sum()), int(((pred == 1) & (y == 0)).sum())
    tn, fn = int(((pred == 0) & (y == 0)).sum()), int(((pred == 0) & (y == 1)).sum())
    n = len(y)
    auc = _auc(y, p)
    row: dict[str, Any] = {
        "model": model, "site": site, "split": split, "n": n, "n_positive": int(y.sum()),
        "auc": auc, "auc_ci": [max(0.0, auc - 0.09), min(1.0, auc + 0.07)], "pr_auc": float(np.clip(auc - 0.15, 0, 1)),
        "brier": float(np.mean((p - y) ** 2)), "threshold": t,
    }
    ratios = {"accuracy": (tp + tn, n), "sensitivity": (tp, tp + fn), "specificity": (tn, tn + fp), "ppv": (tp, tp + fp), "npv": (tn, tn + fn)}
    for key, (k, m) in ratios.items():
        if m:
            row[key], row[f"{key}_ci"] = k / m, _wilson(k, m)
    expected = ((tp + fp) * (tp + fn) + (tn + fn) * (tn + fp)) / (n * n)
    row.update({
        "f1": 2 * tp / (2 * tp + fp + fn), "kappa": ((tp + tn) / n - expected) / (1 - expected),
        "calibration_slope": 0.92, "calibration_intercept": -0.12, "hl_stat": 7.3,
        "hl_p": 0.0004 if model == "pooled" else 0.51,
    })
    return row


def _curves(model: str, site: str, split: str, y: np.ndarray, p: np.ndarray, band: bool) -> dict[str, Any]:
    """ROC (with a band), calibration and decision curves of one model at one site and split."""
    order = np.argsort(-p, kind="stable")
    tps, fps = np.cumsum(y[order]), np.cumsum(1 - y[order])
    fpr = np.concatenate([[0.0], fps / max(fps[-1], 1)])
    tpr = np.concatenate([[0.0], tps / max(tps[-1], 1)])
    curve: dict[str, Any] = {"model": model, "site": site, "split": split}
    curve["roc"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
    if band:
        grid = np.linspace(0.0, 1.0, 51)
        mid = np.interp(grid, fpr, tpr)
        lo, hi = np.clip(mid - 0.1, 0, 1), np.clip(mid + 0.1, 0, 1)
        curve["roc_band"] = {"fpr": grid.tolist(), "tpr_lo": lo.tolist(), "tpr_hi": hi.tolist()}
    edges = np.quantile(p, np.linspace(0, 1, 6))
    bins = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, 4)
    cal = [(float(p[bins == b].mean()), float(y[bins == b].mean()), int((bins == b).sum())) for b in np.unique(bins)]
    curve["calibration"] = {"predicted": [c[0] for c in cal], "observed": [c[1] for c in cal], "n": [c[2] for c in cal]}
    thresholds = np.round(np.arange(0.01, 1.0, 0.01), 2)
    prev = y.mean()
    odds = thresholds / (1 - thresholds)
    net = [float((((p >= t) & (y == 1)).sum() - ((p >= t) & (y == 0)).sum() * o) / len(y)) for t, o in zip(thresholds, odds)]
    treat_all = (prev - (1 - prev) * odds).tolist()
    curve["decision"] = {"thresholds": thresholds.tolist(), "net_benefit": net, "treat_all": treat_all}
    return curve


def _drop_some_keys(report: dict[str, Any]) -> None:
    """Omit what a real run may leave undefined: a PPV, a CI, an AUC, a calibration fit."""
    for row in report["classification"]:
        if (row["model"], row["site"], row["split"]) == ("local:hospital_a", "hospital_b", "test"):
            for key in ("ppv", "ppv_ci", "hl_p", "calibration_slope"):
                row.pop(key, None)
        if (row["model"], row["site"], row["split"]) == ("local:hospital_a", "hospital_ext", "test"):
            row.pop("auc", None)
            row.pop("auc_ci", None)
        if (row["model"], row["site"]) == ("pooled", "all"):
            row.pop("specificity_ci", None)


def _comparisons(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Federated against each other model at every site's test split (NRI missing at the external site)."""
    auc = {(r["model"], r["site"]): r.get("auc") for r in report["classification"] if r["split"] == "test"}
    out = []
    for site in [s["name"] for s in report["sites"]] + ["all"]:
        for other in MODELS[1:]:
            row: dict[str, Any] = {"site": site, "split": "test", "model_a": "federated", "model_b": other}
            row["auc_a"] = auc[("federated", site)]
            if auc.get((other, site)) is not None:
                row["auc_b"] = auc[(other, site)]
            row.update({"delong_z": 1.27, "delong_p": 0.204, "nri": 0.113, "nri_p": 0.041, "idi": 0.021, "idi_p": 0.33})
            if site == "hospital_ext":
                row.pop("nri")
                row.pop("nri_p")
            out.append(row)
    return out
