"""Site config YAML: typed, validated once at start."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from client.clinical import ClinicalVariable, parse_clinical_spec
from client.errors import SiteDataError
from protocol.messages import SITE_ROLES, valid_site_name



@dataclass(frozen=True)
class DPConfig:
    """Differential privacy of a site's training: DP-SGD (``client/dp_training.py``), spent per run's model and in a lifetime.

    ``target_epsilon`` bounds each model of a run this site trains (at ``delta``); the optional
    ``lifetime_epsilon`` (0: none) bounds everything the site ever trained, as its ledger
    (``<output_dir>/privacy/ledger.json``) accounts it.
    """

    enabled: bool = False
    target_epsilon: float = 8.0
    delta: float = 1.0e-5
    max_grad_norm: float = 1.0
    lifetime_epsilon: float = 0.0


@dataclass(frozen=True)
class DataConfig:
    """Where the site's data lies and how to read it."""

    manifest: Path
    crop: str | tuple[int, int, int, int] = "auto"
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    split_seed: int = 0
    clinical: dict[str, ClinicalVariable] = field(default_factory=dict)  # declared clinical column types (client/clinical.py)


@dataclass(frozen=True)
class ComputeConfig:
    """Local compute settings."""

    device: str = "auto"
    batch_size: int = 16
    num_workers: int = 0


@dataclass(frozen=True)
class PrivacyConfig:
    """What the site agrees to send beyond model arrays and scalar metrics."""

    share_case_predictions: bool = False
    dp: DPConfig = field(default_factory=DPConfig)
    min_cell_count: int = 5  # the report shows this site's count cells below it as "<k"; clinical statistics over fewer cases are refused


@dataclass(frozen=True)
class SiteConfig:
    """One hospital's site config; relative paths are resolved against the YAML's folder."""

    path: Path
    site: str
    role: str
    data: DataConfig
    compute: ComputeConfig
    privacy: PrivacyConfig
    output_dir: Path

    @property
    def trains(self) -> bool:
        """Whether the site takes part in training (external sites only evaluate)."""
        return self.role == "train"


_SCHEMA: dict[str, Any] = {
    "site": str,
    "role": str,
    "data": {"manifest": str, "crop": (str, list), "val_fraction": float, "test_fraction": float, "split_seed": int, "clinical": (dict,)},
    "compute": {"device": str, "batch_size": int, "num_workers": int},
    "privacy": {
        "share_case_predictions": bool,
        "min_cell_count": int,
        "dp": {"enabled": bool, "target_epsilon": float, "delta": float, "max_grad_norm": float, "lifetime_epsilon": float},
    },
    "output_dir": str,
}
_REQUIRED = ("site", "role", "data", "data.manifest")


def site_config_mapping(site: str, role: str, crop: str = "auto") -> dict[str, Any]:
    """A site config with every key at its default, for a folder holding ``manifest.csv`` (what the simulation writers write)."""
    return {
        "site": site,
        "role": role,
        "data": {"manifest": "manifest.csv", "crop": crop},
        "compute": {"device": "auto", "batch_size": 16, "num_workers": 0},
        "privacy": {
            "share_case_predictions": False,
            "min_cell_count": 5,
            "dp": {"enabled": False, "target_epsilon": 8.0, "delta": 1.0e-5, "max_grad_norm": 1.0},
        },
        "output_dir": "output",
    }


_LOADED: dict[Path, tuple[tuple[int, int], SiteConfig]] = {}  # path -> (size and mtime_ns it was read at, the config)


def load_site_config(path: str | Path) -> SiteConfig:
    """Read and validate a site config; every problem names the file and the key.

    A file read before and unchanged since (size, mtime) gives the config read then, as long as its
    manifest is still there: every message a site answers names its config.
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise SiteDataError(f"site config {path} not found", "site config file not found")
    stat = path.stat()
    held = _LOADED.get(path)
    if held is not None and held[0] == (stat.st_size, stat.st_mtime_ns) and held[1].data.manifest.is_file():
        return held[1]
    config = _load(path)
    _LOADED[path] = ((stat.st_size, stat.st_mtime_ns), config)
    return config


def _load(path: Path) -> SiteConfig:
    """``load_site_config`` from the file."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise SiteDataError(f"site config {path}: invalid YAML: {err}", "site config: invalid YAML") from err
    if not isinstance(raw, dict):
        raise SiteDataError(f"site config {path}: expected a mapping at the top level", "site config: not a mapping")
    _check(raw, _SCHEMA, path, "")
    for key in _REQUIRED:
        node: Any = raw
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            raise SiteDataError(f"site config {path}: missing required key '{key}'", f"site config: missing key '{key}'")
    if raw["role"] not in SITE_ROLES:
        raise SiteDataError(
            f"site config {path}: key 'role' = {raw['role']!r}, expected one of {', '.join(SITE_ROLES)}",
            "site config: invalid 'role'",
        )
    base = path.parent
    data = raw["data"]
    manifest = (base / data["manifest"]).resolve()
    if not manifest.is_file():
        raise SiteDataError(
            f"site config {path}: key 'data.manifest': file {manifest} not found", "site config: manifest file not found"
        )
    crop = _parse_crop(data.get("crop", "auto"), path)
    fractions = (float(data.get("val_fraction", 0.2)), float(data.get("test_fraction", 0.2)))
    if min(fractions) < 0 or sum(fractions) >= 1:
        raise SiteDataError(
            f"site config {path}: 'data.val_fraction' + 'data.test_fraction' must be in [0, 1)",
            "site config: invalid split fractions",
        )
    privacy = raw.get("privacy", {})
    dp = DPConfig(**{k: float(v) if k != "enabled" else v for k, v in privacy.get("dp", {}).items()})
    _check_dp(dp, path)
    _check_site_name(raw["site"], path)
    compute = ComputeConfig(**raw.get("compute", {}))
    if compute.batch_size < 1:
        raise SiteDataError(f"site config {path}: 'compute.batch_size' must be >= 1", "site config: invalid batch size")
    return SiteConfig(
        path=path,
        site=raw["site"],
        role=raw["role"],
        data=DataConfig(manifest, crop, fractions[0], fractions[1], int(data.get("split_seed", 0)), parse_clinical_spec(data.get("clinical", {}), path)),
        compute=compute,
        privacy=PrivacyConfig(
            share_case_predictions=privacy.get("share_case_predictions", False),
            dp=dp,
            min_cell_count=_min_cell_count(privacy.get("min_cell_count", 5), path),
        ),
        output_dir=(base / raw.get("output_dir", f"site_output/{raw['site']}")).resolve(),
    )


def _min_cell_count(value: int, path: Path) -> int:
    """``privacy.min_cell_count``: at least 1."""
    if value < 1:
        raise SiteDataError(f"site config {path}: 'privacy.min_cell_count' = {value} must be >= 1", "site config: invalid 'privacy.min_cell_count'")
    return value


def _check_dp(dp: DPConfig, path: Path) -> None:
    """Range-check the DP settings (whether or not DP is enabled): a site must never believe in a guarantee that cannot hold."""
    problems = []
    if not dp.target_epsilon > 0:
        problems.append(f"'privacy.dp.target_epsilon' = {dp.target_epsilon:g} must be > 0")
    if not 0 < dp.delta < 1:
        problems.append(f"'privacy.dp.delta' = {dp.delta:g} must lie in (0, 1)")
    if not dp.max_grad_norm > 0:
        problems.append(f"'privacy.dp.max_grad_norm' = {dp.max_grad_norm:g} must be > 0")
    if dp.lifetime_epsilon < 0 or (dp.lifetime_epsilon and dp.lifetime_epsilon < dp.target_epsilon):
        problems.append(f"'privacy.dp.lifetime_epsilon' = {dp.lifetime_epsilon:g} must be 0 (none) or >= target_epsilon")
    if problems:
        raise SiteDataError(f"site config {path}: {'; '.join(problems)}", "site config: invalid 'privacy.dp' settings")


def _check_site_name(name: str, path: Path) -> None:
    """A site name names folders and files: letters, digits, '_', '-', '.', no path separator, no dot segment."""
    if not valid_site_name(name):
        raise SiteDataError(
            f"site config {path}: key 'site' = {name!r}: use 1 to 64 letters, digits, '_', '-' or '.', starting with a letter or "
            "digit (no path separators, no '..')",
            "site config: invalid 'site' name",
        )


def _check(raw: dict[str, Any], schema: dict[str, Any], path: Path, prefix: str) -> None:
    """Reject unknown keys and wrong types, naming the dotted key."""
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in schema:
            raise SiteDataError(
                f"site config {path}: unknown key '{dotted}' (known: {', '.join(sorted(schema))})",
                f"site config: unknown key '{dotted}'",
            )
        expected = schema[key]
        if isinstance(expected, dict):
            if not isinstance(value, dict):
                raise SiteDataError(f"site config {path}: key '{dotted}' must be a mapping", f"site config: '{dotted}' type")
            _check(value, expected, path, f"{dotted}.")
            continue
        ok = isinstance(value, expected) and not (expected in (int, float) and isinstance(value, bool))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            name = expected.__name__ if isinstance(expected, type) else " or ".join(t.__name__ for t in expected)
            raise SiteDataError(
                f"site config {path}: key '{dotted}' = {value!r} should be {name}", f"site config: '{dotted}' type"
            )


def _parse_crop(value: Any, path: Path) -> str | tuple[int, int, int, int]:
    """Accept ``auto``, ``none`` or a box ``[x0, y0, x1, y1]``."""
    if isinstance(value, str) and value in ("auto", "none"):
        return value
    if isinstance(value, list) and len(value) == 4 and all(isinstance(v, int) for v in value):
        x0, y0, x1, y1 = value
        if x0 < x1 and y0 < y1 and min(value) >= 0:
            return (x0, y0, x1, y1)
    raise SiteDataError(
        f"site config {path}: key 'data.crop' = {value!r}: expected auto, none or [x0, y0, x1, y1]",
        "site config: invalid 'data.crop'",
    )
