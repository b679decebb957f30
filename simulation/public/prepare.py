"""``axilla-simulate prepare``: read downloaded public datasets, partition them into sites, write the site folders."""

from __future__ import annotations

from pathlib import Path

from simulation.public.cohort import PublicDataError, PublicDataset
from simulation.public.partition import PartitionOptions, SitePlan, partition, site_slug
from simulation.public.writer import write_sites

DERIVED_DIR = "_derived"  # files an adapter had to make (BreastMNIST's PNGs from its .npz); kept across prepares


def parse_dataset_arg(text: str) -> tuple[str, Path]:
    """``NAME=PATH`` as given to ``--dataset``."""
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise PublicDataError(f"--dataset {text!r}: expected NAME=PATH, e.g. busi=~/data/Dataset_BUSI_with_GT")
    return name.strip().lower(), Path(path.strip()).expanduser()


def prepare(specs: list[tuple[str, Path]], options: PartitionOptions, out: Path) -> tuple[list[SitePlan], dict[str, object]]:
    """Read every dataset with its adapter, partition, write; return the sites and the record written."""
    from simulation.public.adapters import read_dataset  # noqa: PLC0415 (the adapters import openpyxl)

    if not specs:
        raise PublicDataError("give at least one --dataset NAME=PATH")
    names = [name for name, _ in specs]
    if len(set(names)) != len(names):
        raise PublicDataError(f"--dataset names a dataset twice: {', '.join(names)}")
    out = Path(out).resolve()
    read: dict[str, tuple[PublicDataset, Path]] = {}
    for name, root in specs:
        read[name] = (read_dataset(name, root.resolve(), out / DERIVED_DIR / site_slug(name)), root.resolve())
    plans = partition([d for d, _ in read.values()], options)
    return plans, write_sites(out, plans, read, options)
