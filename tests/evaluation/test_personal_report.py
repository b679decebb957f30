"""The report's personalisation table: global vs personalised test AUC per training site, the external site as global only, the missing with why."""

from __future__ import annotations

import json
from pathlib import Path

from evaluation.personal_report import personal_html, personal_markdown, personal_missing, personal_section

CLASSIFICATION = [
    {"model": "federated", "site": "a", "split": "test", "auc": 0.70, "auc_ci": [0.6, 0.8]},
    {"model": "federated", "site": "a", "split": "val", "auc": 0.99},
    {"model": "federated", "site": "ext", "split": "test", "auc": 0.65},
    {"model": "local:a", "site": "a", "split": "test", "auc": 0.10},
]


def _run_dir(tmp_path: Path) -> Path:
    lines = [
        {"site": "a", "model": "federated", "status": "ok", "metrics": {"auc": 0.78, "auc_ci": [0.7, 0.86], "n": 40, "epochs": 2}, "comparison": {"delong_z": 2.1, "delong_p": 0.0004}},
        {"site": "dp", "model": "federated", "status": "missing", "reason": "a DP site keeps no personalised model"},
        {"site": "ext", "model": "federated", "status": "global only"},
    ]
    (tmp_path / "personalisation.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return tmp_path


def test_each_site_gets_one_row_with_both_aucs_from_their_own_sources(tmp_path: Path) -> None:
    rows = {r["site"]: r for r in personal_section(_run_dir(tmp_path), CLASSIFICATION)}
    a = rows["a"]
    assert (a["global_auc"], a["global_auc_ci"], a["personal_auc"], a["personal_auc_ci"]) == (0.70, [0.6, 0.8], 0.78, [0.7, 0.86])
    assert abs(a["auc_difference"] - 0.08) < 1e-12 and (a["epochs"], a["delong_p"]) == (2, 0.0004)
    assert rows["ext"]["status"] == "global only" and rows["ext"]["global_auc"] == 0.65 and "personal_auc" not in rows["ext"]
    assert personal_missing(list(rows.values())) == [
        {"round": "final", "model": "personalised", "site": "dp", "split": "test", "reason": "a DP site keeps no personalised model"}
    ]
    assert personal_section(tmp_path / "absent", CLASSIFICATION) == []


def test_markdown_and_html_show_one_table_with_the_external_site_as_global_only(tmp_path: Path) -> None:
    report = {"run": {"personalise": "finetune"}, "personalisation": personal_section(_run_dir(tmp_path), CLASSIFICATION)}
    md = "\n".join(personal_markdown(report))
    assert md.count("## Personalisation") == 1 and md.count("| site | status |") == 1
    assert "| a | personalised | 0.700 (0.600-0.800) | 0.780 (0.700-0.860) | +0.080 | 2 | <0.001 |" in md
    assert "| ext | external: global model only | 0.650 | n/a | n/a | n/a | n/a |" in md
    assert "| dp | missing: a DP site keeps no personalised model |" in md and "epoch count chosen on the site's validation split" in md
    html = personal_html(report)
    assert html.count("<table>") == 1 and "external: global model only" in html and "0.780 (0.700-0.860)" in html
    assert personal_markdown({"run": {}}) == [] and personal_html({"run": {}}) == ""
