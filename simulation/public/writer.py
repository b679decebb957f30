"""Write partitioned public cohorts as site folders that ``axilla-simulate run --sites DIR`` takes directly.

``DIR/<site>/site.yaml`` and ``DIR/<site>/manifest.csv`` (one row per image, absolute paths to the
user's files, which are never copied), ``DIR/<site>/masks/`` for the masks merged from a case's
several mask files (logical OR of non-zero pixels), ``DIR/run-config.toml`` with the endpoint the
report names, and ``DIR/_prepare/prepare.json`` recording what was read and written.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np
import tomli_w
import yaml
from PIL import Image

from client.errors import SiteDataError
from client.images import read_image
from client.node_site import SITES_RUN_CONFIG
from client.site_config import site_config_mapping
from simulation.public.cohort import Endpoint, PublicDataError, PublicDataset, PublicImage
from simulation.public.partition import PartitionOptions, SitePlan

PREPARE_DIR = "_prepare"
BASE_COLUMNS = ("case_id", "label", "image", "pathology", "mask", "split", "scanner", "dataset", "center")


def endpoint_of(datasets: list[PublicDataset]) -> Endpoint:
    """The one endpoint of a federation; datasets that label different things are refused."""
    endpoints = {d.endpoint for d in datasets}
    if len(endpoints) > 1:
        named = "; ".join(f"{d.name}: {d.endpoint.name} ({d.endpoint.positive} vs {d.endpoint.negative})" for d in datasets)
        raise PublicDataError(f"these datasets label different endpoints, and a federation trains one: {named}")
    return endpoints.pop()


def write_sites(out: Path, plans: list[SitePlan], datasets: dict[str, tuple[PublicDataset, Path]], options: PartitionOptions) -> dict[str, object]:
    """Write every site folder, the run config and the record; return the record."""
    out = Path(out).resolve()
    endpoint = endpoint_of([d for d, _ in datasets.values()])
    _clear_previous(out, [p.name for p in plans])
    sites = {plan.name: _write_site(out / plan.name, plan) for plan in plans}
    (out / SITES_RUN_CONFIG).write_text(
        "# written by axilla-simulate prepare: what the label means (the report names it)\n"
        + tomli_w.dumps({"endpoint": endpoint.name, "endpoint-positive": endpoint.positive, "endpoint-negative": endpoint.negative}),
        encoding="utf-8",
    )
    record: dict[str, object] = {
        "datasets": {name: {"root": str(root), "name": d.name, "cases": len(d.cases), "notes": d.notes} for name, (d, root) in datasets.items()},
        "partition": asdict(options),
        "endpoint": asdict(endpoint),
        "sites": sites,
    }
    (out / PREPARE_DIR).mkdir(parents=True, exist_ok=True)
    (out / PREPARE_DIR / "prepare.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def _write_site(folder: Path, plan: SitePlan) -> dict[str, object]:
    """One site's folder; returns its counts."""
    folder.mkdir(parents=True)
    members = plan.members
    with_split = all(m.case.split for m in members) and plan.role == "train"
    extra = sorted({k for m in members for k in m.case.columns} - set(BASE_COLUMNS))
    rows = []
    for member in members:
        data, case = member.dataset, member.case
        case_id = f"{_prefix(data.name)}_{case.case_id}"
        for index, image in enumerate(case.images):
            rows.append({
                "case_id": case_id,
                "label": str(case.label),
                "image": str(image.path.resolve()),
                "pathology": str(image.path.resolve()) if data.modality == "pathology" else "",
                "mask": _mask_path(folder, case_id, index, image),
                "split": case.split if with_split else "",
                "scanner": case.columns.get("scanner") or data.scanner,
                "dataset": data.name,
                "center": case.center,
                **{k: case.columns.get(k, "") for k in extra},
            })  # fmt: skip
    pathology = any(m.dataset.modality == "pathology" for m in members)
    columns = [c for c in BASE_COLUMNS if (c != "split" or with_split) and (c != "pathology" or pathology)] + extra
    with (folder / "manifest.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    crops = {m.dataset.crop for m in members}
    crop = crops.pop() if len(crops) == 1 else "auto"
    (folder / "site.yaml").write_text(yaml.safe_dump(site_config_mapping(plan.name, plan.role, crop), sort_keys=False, default_flow_style=None), encoding="utf-8")
    counts = plan.counts()
    return {
        "role": plan.role,
        "cases": len(members),
        "images": len(rows),
        "positive": counts[1],
        "negative": counts[0],
        "datasets": dict(Counter(m.dataset.name for m in members)),
        "official_split": with_split,
    }


def _prefix(name: str) -> str:
    """A dataset's case-id prefix: its name in lower case, letters and digits only."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _mask_path(folder: Path, case_id: str, index: int, image: PublicImage) -> str:
    """The manifest's mask: the user's file when there is one, a merged file in the site folder when there are several."""
    if not image.masks:
        return ""
    if len(image.masks) == 1:
        return str(image.masks[0].resolve())
    merged = None
    for path in image.masks:
        try:
            layer = read_image(path) > 0  # as the site reads a mask
        except SiteDataError as err:
            raise PublicDataError(str(err)) from err
        if merged is not None and layer.shape != merged.shape:
            raise PublicDataError(f"mask {path}: size {layer.shape[::-1]} differs from {image.masks[0]}'s {merged.shape[::-1]}; masks of one image cannot be merged")
        merged = layer if merged is None else merged | layer
    assert merged is not None
    target = folder / "masks" / f"{case_id}_{index}.png"
    target.parent.mkdir(exist_ok=True)
    Image.fromarray(merged.astype(np.uint8) * 255).save(target)
    return str(target)


def _clear_previous(out: Path, names: list[str]) -> None:
    """Remove the site folders of an earlier prepare in ``out``; refuse to overwrite anything else."""
    record = out / PREPARE_DIR / "prepare.json"
    previous = list(json.loads(record.read_text(encoding="utf-8")).get("sites", {})) if record.is_file() else []
    for name in dict.fromkeys(previous + names):
        folder = out / name
        if name in previous and (folder / "site.yaml").is_file():
            shutil.rmtree(folder)
        elif folder.exists():
            raise PublicDataError(f"{folder} exists and was not written by axilla-simulate prepare; not overwriting it (choose another --out)")
    if (out / PREPARE_DIR).is_dir():
        shutil.rmtree(out / PREPARE_DIR)
