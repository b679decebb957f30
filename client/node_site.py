"""Which site a node is: its site config(s), from Flower's node config (no torch, no image decoding).

A deployed SuperNode names its site config (``site-config``); a simulated node is the
``partition-id``-th site folder of the run's ``sim-sites-dir``; the pooled baseline's in-process
node holds several training sites' data (``pooled-sites``, site configs joined by ``os.pathsep``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client.errors import SiteDataError
from client.site_config import SiteConfig, load_site_config

SITE_CONFIG = "site-config"
PARTITION_ID = "partition-id"
POOLED_SITES = "pooled-sites"
POOLED = "pooled"


@dataclass(frozen=True)
class LocalSite:
    """The site a node speaks for: one site config, or the pooled baseline's members."""

    name: str
    members: tuple[SiteConfig, ...]

    @property
    def config(self) -> SiteConfig:
        """The config whose role, privacy settings and ``output_dir`` the node uses (the first member's when pooled)."""
        return self.members[0]

    @property
    def pooled(self) -> bool:
        """Whether the node holds several sites' data (simulation's pooled baseline)."""
        return len(self.members) > 1 or self.name == POOLED

    @property
    def output_dir(self) -> Path:
        """Where the node keeps its local artifacts (cache, held models, audit log)."""
        return self.config.output_dir / POOLED if self.pooled else self.config.output_dir


def node_site(node_config: Mapping[str, Any], run: Mapping[str, Any]) -> LocalSite:
    """The node's site from its node config (and, for a simulated node, the run's ``sim-sites-dir``)."""
    if POOLED_SITES in node_config:
        paths = [Path(p) for p in str(node_config[POOLED_SITES]).split(os.pathsep) if p]
        return LocalSite(POOLED, tuple(load_site_config(p) for p in paths))
    if SITE_CONFIG in node_config:
        path = Path(str(node_config[SITE_CONFIG]))
    elif PARTITION_ID in node_config:
        path = site_path_for_partition(Path(str(run.get("sim-sites-dir", ""))), int(node_config[PARTITION_ID]))
    else:
        raise SiteDataError(f"node config has no '{SITE_CONFIG}' key", f"node config has no '{SITE_CONFIG}' key")
    config = load_site_config(path)
    return LocalSite(config.site, (config,))


def site_path_for_partition(sites_dir: Path, partition_id: int) -> Path:
    """The site config of a simulated node: the ``partition_id``-th site folder, sorted by name."""
    folders = discover_sites(sites_dir)
    if partition_id >= len(folders):
        raise SiteDataError(
            f"simulation node {partition_id} has no site: {sites_dir} holds {len(folders)} site folders",
            "simulation: no site for this node",
        )
    return folders[partition_id]


SITES_RUN_CONFIG = "run-config.toml"  # a sites folder's own run config, applied by `axilla-simulate run --sites` (prepare writes the endpoint there)


def discover_sites(sites_dir: Path) -> list[Path]:
    """Site config files of a federation folder: ``<dir>/<site>/site.yaml``, sorted by folder name."""
    return sorted(p for p in Path(sites_dir).glob("*/site.yaml") if not p.parent.name.startswith("_"))
