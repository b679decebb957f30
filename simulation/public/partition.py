"""Split public cohorts into federation sites: by natural center, Dirichlet label skew or quantity skew.

Partitions are of cases (patients), never of images, so one patient's images stay at one site.
Dirichlet and quantity skew are flwr-datasets' ``DirichletPartitioner`` over a table of cases
(partitioned by label for label skew; by a constant column for quantity skew, which draws the
sites' shares of all cases from Dirichlet(alpha)), seeded, so a partition is the same for the
same datasets, options and seed. A training site needs both labels, so draws with seeds
``seed + 7919 k`` (k = 0 .. 19) are tried in order and the first in which every site holds both is
kept (a partition conditioned on trainable sites); when none does, it is refused. A held-out center (``external``) is never partitioned: all its
cases form the external test site, which never trains.
"""

from __future__ import annotations

import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from simulation.public.cohort import PublicCase, PublicDataError, PublicDataset

PARTITIONS = ("center", "dirichlet", "quantity")
DRAWS = 20  # seeded draws tried, in order, for one where every training site holds both labels
SEED_STRIDE = 7919  # draw k uses seed + SEED_STRIDE * k


@dataclass(frozen=True)
class Member:
    """One case at a site, with the dataset it comes from."""

    dataset: PublicDataset
    case: PublicCase


@dataclass
class SitePlan:
    """One site to write: its name, role and cases."""

    name: str
    role: str
    members: list[Member] = field(default_factory=list)

    def counts(self) -> Counter[int]:
        """Cases per label."""
        return Counter(m.case.label for m in self.members)


@dataclass(frozen=True)
class PartitionOptions:
    """How to partition: the method, the held-out center, and the skewed partitioners' settings."""

    method: str = "center"
    external: str = ""  # a dataset name, center or site name held out as the external site ("" none)
    num_sites: int = 3  # dirichlet and quantity: training sites
    alpha: float = 0.5  # dirichlet and quantity: concentration (smaller: more skew)
    min_cases: int = 10  # dirichlet and quantity: fewest cases per training site
    seed: int = 0


def site_slug(text: str) -> str:
    """A valid site name from a center's name: lower case, runs of other characters as '-', at most 64 characters."""
    slug = re.sub(r"[^a-z0-9_.]+", "-", text.lower()).strip("-._")
    slug = re.sub(r"\.{2,}", ".", slug)[:64].rstrip("-._")
    return slug or "site"


def center_sites(datasets: list[PublicDataset]) -> dict[str, list[Member]]:
    """Every natural center's cases, keyed by its site name (the dataset's slug, with the center's when they differ)."""
    sites: dict[str, list[Member]] = {}
    for data in datasets:
        for case in data.cases:
            name = site_slug(data.name) if case.center == data.name else site_slug(f"{data.name}_{case.center}")
            sites.setdefault(name, []).append(Member(data, case))
    return sites


def partition(datasets: list[PublicDataset], options: PartitionOptions) -> list[SitePlan]:
    """The sites of a federation over ``datasets``: training sites, then the external site if one is held out."""
    if options.method not in PARTITIONS:
        raise PublicDataError(f"partition {options.method!r}: expected one of {', '.join(PARTITIONS)}")
    centers = center_sites(datasets)
    held = _held_out(datasets, centers, options.external) if options.external else []
    pool = {name: members for name, members in centers.items() if name not in held}
    if options.method == "center":
        plans = [SitePlan(name, "train", members) for name, members in pool.items()]
    else:
        plans = _skewed([m for members in pool.values() for m in members], options)
    if held:
        name = site_slug(f"external_{options.external}") if len(held) > 1 else held[0]
        plans.append(SitePlan(name, "external", [m for h in held for m in centers[h]]))
    _check_plans(plans, options)
    return plans


def _held_out(datasets: list[PublicDataset], centers: dict[str, list[Member]], external: str) -> list[str]:
    """The site names of the held-out center: every center of a dataset named so, or one center or site so named."""
    wanted = site_slug(external)
    by_dataset = [name for name, members in centers.items() if site_slug(members[0].dataset.name) == wanted]
    by_center = [name for name, members in centers.items() if name == wanted or site_slug(members[0].case.center) == wanted]
    held = by_dataset or by_center
    if not held:
        known = sorted({site_slug(d.name) for d in datasets} | set(centers))
        raise PublicDataError(f"--external {external!r} names no dataset, center or site; known: {', '.join(known)}")
    return held


def _skewed(members: list[Member], options: PartitionOptions) -> list[SitePlan]:
    """Dirichlet label skew or quantity skew over the pooled training cases, by flwr-datasets' DirichletPartitioner."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # partitioning reads nothing from a hub
    from datasets import Dataset  # noqa: PLC0415 (pyarrow and datasets load only for these partitions)

    if options.num_sites < 2:
        raise PublicDataError(f"--num-sites {options.num_sites}: a {options.method} partition needs at least 2 training sites")
    if not options.alpha > 0:
        raise PublicDataError(f"--alpha {options.alpha:g} must be > 0")
    if len(members) < options.num_sites * options.min_cases:
        raise PublicDataError(
            f"{len(members)} training cases cannot give {options.num_sites} sites of at least {options.min_cases} cases (--min-cases)"
        )
    ordered = sorted(members, key=lambda m: (m.dataset.name, m.case.case_id))
    table = Dataset.from_dict({
        "row": list(range(len(ordered))),
        "label": [m.case.label for m in ordered],
        "all": [0] * len(ordered),
    })
    labels = [m.case.label for m in ordered]
    rows, first = None, None
    for k in range(DRAWS):  # stop at the first draw whose every site holds both labels
        draw = _draw(table, options, options.seed + SEED_STRIDE * k)
        first = first or draw
        if draw is not None and all(len({labels[r] for r in part}) == 2 for part in draw):
            rows = draw
            break
    rows = rows or first  # else _check_plans names a site of the first draw without both labels
    if rows is None:
        raise PublicDataError(
            f"{options.method} partition: no draw of {DRAWS} gave every site at least {options.min_cases} cases "
            "(lower --min-cases or --num-sites, or raise --alpha)"
        )
    return [SitePlan(f"site_{i + 1}", "train", [ordered[r] for r in sorted(part)]) for i, part in enumerate(rows)]


def _draw(table: Any, options: PartitionOptions, seed: int) -> list[list[int]] | None:
    """One seeded draw of DirichletPartitioner (each site's rows of ``table``); None when it cannot give every site ``min_cases``."""
    from flwr_datasets.partitioner import DirichletPartitioner  # noqa: PLC0415

    partitioner = DirichletPartitioner(
        num_partitions=options.num_sites, partition_by="label" if options.method == "dirichlet" else "all",
        alpha=options.alpha, min_partition_size=options.min_cases, self_balancing=False, shuffle=True, seed=seed,
    )  # fmt: skip
    partitioner.dataset = table
    try:
        with warnings.catch_warnings():  # its notices of redrawing until every site has min_cases: a normal step here
            warnings.filterwarnings("ignore", message="The specified min_partition_size", category=UserWarning)
            return [list(partitioner.load_partition(i)["row"]) for i in range(options.num_sites)]
    except ValueError:  # flwr-datasets gives up after its own attempts to meet min_partition_size
        return None


def _check_plans(plans: list[SitePlan], options: PartitionOptions) -> None:
    """A federation needs two training sites, each with both labels."""
    training = [p for p in plans if p.role == "train"]
    if len(training) < 2:
        raise PublicDataError(
            f"the {options.method} partition gives {len(training)} training site(s) ({', '.join(p.name for p in training) or 'none'}); "
            "a federation needs at least 2: add a dataset, partition by dirichlet or quantity, or hold out no center"
        )
    for plan in plans:
        counts = plan.counts()
        if plan.role == "train" and min(counts[0], counts[1]) == 0:
            raise PublicDataError(
                f"site {plan.name} of the {options.method} partition has {counts[1]} positive and {counts[0]} negative cases; "
                "a training site needs both (raise --alpha, lower --num-sites, or try another --seed)"
            )
