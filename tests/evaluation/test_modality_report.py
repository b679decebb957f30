"""The report's multimodal section: cases per modality per site, and every model's test AUC at every site."""

from __future__ import annotations

from evaluation.modality_report import modality_html, modality_markdown, modality_section


def _line(model: str, site: str, split: str, **metrics: float) -> dict:
    return {"round": "final", "status": "ok", "model": model, "site": site, "split": split, "metrics": metrics}


def test_the_section_counts_each_sites_cases_per_modality_and_tabulates_the_aucs() -> None:
    lines = [
        _line("federated/fusion-multilayer", "a", "test", n_ultrasound=10, n_pathology=10, auc=0.8),
        _line("federated/fusion-multilayer", "c", "test", n_ultrasound=8, n_pathology=0, auc=0.7),
        _line("federated/pathology", "c", "test", n_pathology=0),  # no case there: no AUC
        _line("federated", "a", "test", auc=0.6),  # a single-input model's row adds no modality counts
        {"round": 3, "status": "ok", "model": "federated/ultrasound", "site": "a", "split": "val", "metrics": {"n_ultrasound": 99}},
    ]
    classification = [
        {"model": "federated/fusion-multilayer", "site": "a", "split": "test", "auc": 0.8, "auc_ci": [0.7, 0.9]},
        {"model": "federated/ultrasound", "site": "a", "split": "test", "auc": 0.75},
        {"model": "federated/fusion-multilayer", "site": "c", "split": "test", "auc": 0.7},
    ]
    section = modality_section(lines, classification)
    assert section["cases"] == {"a": {"test": {"ultrasound": 10, "pathology": 10}}, "c": {"test": {"ultrasound": 8, "pathology": 0}}}
    assert section["models"] == ["federated/ultrasound", "federated/fusion-multilayer"]  # single modalities first
    markdown = "\n".join(modality_markdown({"modalities": section}))
    assert "| c | test | 8 | 0 |" in markdown and "| federated/fusion-multilayer | 0.800 (0.700-0.900) | 0.700 |" in markdown
    assert "| federated/ultrasound | 0.750 | n/a |" in markdown
    assert "<td>0.800 (0.700-0.900)</td>" in modality_html({"modalities": section})
    assert modality_section([_line("federated", "a", "test", auc=0.6)], classification) == {}
