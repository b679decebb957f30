"""The public-dataset adapters by their CLI names (``axilla-simulate prepare --dataset NAME=PATH``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from simulation.public import bcnb, breast_lesions_usg, breastmnist, bus_bra, bus_uc, bus_uclm, busi, qamebi, udiat_b
from simulation.public.cohort import PublicDataError, PublicDataset

ADAPTERS: dict[str, Callable[[Path, Path], PublicDataset]] = {
    "busi": busi.read,
    "bus-bra": bus_bra.read,
    "breast-lesions-usg": breast_lesions_usg.read,
    "udiat-b": udiat_b.read,
    "bus-uclm": bus_uclm.read,
    "bus-uc": bus_uc.read,
    "qamebi": qamebi.read,
    "breastmnist": breastmnist.read,
    "bcnb": bcnb.read,
}


def read_dataset(name: str, root: Path, derived: Path) -> PublicDataset:
    """Read the dataset ``name`` (a CLI name; '_' is read as '-') from ``root``; ``derived`` takes files an adapter must make."""
    key = name.strip().lower().replace("_", "-")
    if key not in ADAPTERS:
        raise PublicDataError(f"unknown dataset {name!r}; known: {', '.join(ADAPTERS)}")
    root = Path(root).expanduser()
    if not root.exists():
        raise PublicDataError(f"{key}: {root} does not exist")
    return ADAPTERS[key](root, Path(derived))
