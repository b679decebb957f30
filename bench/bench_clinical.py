"""Benchmark: a clinical run's models against a pooled analysis of the same rows, and their external AUCs.

Run: ``python bench/bench_clinical.py RUN_DIR SITES_DIR [--json FILE]`` after
``axilla-simulate run --sites SITES_DIR --run-config experiments/seed000_combined.toml``. Figures, not pass/fail tests.

What no federation may do, the benchmark does, since in simulation it can read every site: it pools
the training sites' training rows (the manifest's clinical values, and each case's deep-learning
signature from the site's own signature cache, written by the run), codes them by the run's
``clinical.json`` (reference-level indicators, ordinal ranks) with pandas, fits every univariable
and multivariable model with statsmodels' ``Logit`` and reports the largest absolute and relative
differences of the federated coefficients and standard errors. Then, from ``report.json``, every
site's test AUC of the image, clinical and combined models with DeLong's p against the image model.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import statsmodels.api as sm  # noqa: E402

from client.site_config import load_site_config  # noqa: E402
from client.site_index import read_cases  # noqa: E402


def pooled_rows(sites_dir: Path, clinical: dict[str, Any]) -> pd.DataFrame:
    """The training sites' training rows: clinical values as the manifest holds them and the signature from the site cache."""
    frames = []
    for site in clinical["training_sites"]:
        config = load_site_config(sites_dir / site / "site.yaml")
        cases, splits = read_cases(config)
        manifest = pd.read_csv(config.data.manifest, dtype=str, keep_default_na=False).set_index("case_id")
        caches = sorted((Path(config.output_dir) / "cache" / "signature").glob("*.npz"), key=lambda p: p.stat().st_mtime)
        saved = np.load(caches[-1])  # the run's: written when its clinical stage asked for the signature
        signature = {(str(c), str(s)): float(v) for c, s, v in zip(saved["case_ids"], saved["splits"], saved["logits"])}
        train = [c.case_id for c in cases if splits[c.case_id] == "train"]
        frame = manifest.loc[train].copy()
        frame["dl_signature"] = [signature[(c, "train")] for c in train]
        frames.append(frame)
    return pd.concat(frames)


def coded(rows: pd.DataFrame, clinical: dict[str, Any]) -> pd.DataFrame:
    """Complete cases coded as the design codes them, by pandas."""
    variables = clinical["variables"]
    missing = {"", "na", "n/a", "nan", "not available", "unknown", "missing"}
    keep = np.ones(len(rows), dtype=bool)
    for v in variables:
        keep &= ~rows[v["name"]].str.strip().str.lower().isin(missing).to_numpy()
    rows = rows[keep]
    x = pd.DataFrame(index=rows.index)
    x["intercept"] = 1.0
    for v in variables:
        values = rows[v["name"]].str.strip()
        if v["kind"] == "categorical":
            for level in v["levels"][1:]:
                x[f"{v['name']}[{level}]"] = (values == level).astype(float)
        elif v["kind"] == "ordinal":
            x[v["name"]] = values.map({level: float(i) for i, level in enumerate(v["levels"])})
        else:
            x[v["name"]] = values.astype(float)
    x["dl_signature"] = rows["dl_signature"].astype(float)
    x["label"] = rows["label"].astype(float)
    return x


def compare(fits: dict[str, dict[str, Any]], x: pd.DataFrame) -> dict[str, Any]:
    """Each federated fit against statsmodels on the pooled rows: largest coefficient and SE differences."""
    out = {}
    for name, fit in fits.items():
        if "columns" not in fit:
            continue
        columns = [c["variable"] for c in fit["columns"]]
        pooled = sm.Logit(x["label"], x[columns]).fit(disp=0, tol=1e-12, maxiter=100)
        coef, se = np.array([c["coef"] for c in fit["columns"]]), np.array([c["se"] for c in fit["columns"]])
        out[name] = {
            "n_federated": fit["n"], "n_pooled": int(len(x)),
            "max_abs_coef_diff": float(np.max(np.abs(coef - pooled.params.to_numpy()))),
            "max_rel_coef_diff": float(np.max(np.abs(coef - pooled.params.to_numpy()) / np.maximum(np.abs(pooled.params.to_numpy()), 1e-12))),
            "max_rel_se_diff": float(np.max(np.abs(se - pooled.bse.to_numpy()) / pooled.bse.to_numpy())),
            "loglik_diff": float(fit["loglik"] - pooled.llf),
        }  # fmt: skip
    return out


def external_aucs(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Every site's test AUC of the image and clinical models, and DeLong's p against the image model."""
    rows = []
    models = [m for m in ("federated", "clinical", "combined", "deep", "pre-fusion", "post-fusion") if any(r["model"] == m for r in report["classification"])]
    for site in [s["name"] for s in report["sites"]]:
        row: dict[str, Any] = {"site": site}
        for r in report["classification"]:
            if r["site"] == site and r["split"] == "test" and r["model"] in models:
                row[f"auc_{r['model']}"] = r.get("auc")
        for c in report["comparisons"]:
            if c["site"] == site and c["split"] == "test" and c["model_b"] == "federated" and c["model_a"] in models:
                row[f"delong_p_{c['model_a']}_vs_image"] = c["delong_p"]
        row["bayes_auc"] = (report.get("phantom") or {}).get("bayes_auc", {}).get(site)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("sites_dir", type=Path)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    clinical = json.loads((args.run_dir / "clinical.json").read_text())
    report = json.loads((args.run_dir / "report.json").read_text())
    x = coded(pooled_rows(args.sites_dir, clinical), clinical)
    fits = {f"univariable:{k}": v for k, v in clinical["univariable"].items()}
    fits |= {f"multivariable:{k}": v for k, v in (clinical.get("multivariable") or clinical.get("models") or {}).items() if not k.startswith("post-")}
    result = {
        "machine": f"{platform.node()} ({platform.processor() or platform.machine()})", "date": time.strftime("%Y-%m-%d"),
        "run": str(args.run_dir), "mode": clinical["mode"], "message_rounds": clinical["message_rounds"],
        "federated_vs_pooled": compare(fits, x), "test_auc": external_aucs(report),
    }  # fmt: skip
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
