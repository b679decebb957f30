"""Partitioners: natural centers, Dirichlet label skew, quantity skew, a held-out external center."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol.messages import valid_site_name
from simulation.public.cohort import MALIGNANCY, PublicCase, PublicDataError, PublicDataset, PublicImage
from simulation.public.partition import PartitionOptions, partition, site_slug


def _dataset(name: str, n: int, centers: tuple[str, ...] = (), positive_every: int = 2) -> PublicDataset:
    """A dataset of ``n`` one-image cases spread over ``centers`` (default: the dataset is its one center)."""
    centers = centers or (name,)
    cases = [
        PublicCase(f"c{i:03d}", int(positive_every > 0 and i % positive_every == 0), (PublicImage(Path(f"/data/{name}/{i}.png")),), centers[i % len(centers)])
        for i in range(n)
    ]
    return PublicDataset(name, MALIGNANCY, cases)


def _ids(plans: list) -> list[list[tuple[str, str]]]:
    return [[(m.dataset.name, m.case.case_id) for m in p.members] for p in plans]


def test_center_partition_one_site_per_natural_center_and_a_held_out_dataset() -> None:
    busbra = _dataset("BUS-BRA", 40, ("GE Logiq 7 @10-14MHz", "Toshiba Aplio 300 @12-14 MHz"), positive_every=3)
    plans = partition([busbra, _dataset("BUSI", 20), _dataset("UDIAT-B", 12)], PartitionOptions("center", external="udiat-b"))
    names = [(p.name, p.role, len(p.members)) for p in plans]
    assert names == [
        ("bus-bra_ge-logiq-7-10-14mhz", "train", 20), ("bus-bra_toshiba-aplio-300-12-14-mhz", "train", 20),
        ("busi", "train", 20), ("udiat-b", "external", 12),
    ]  # fmt: skip
    assert all(valid_site_name(p.name) for p in plans)
    assert {m.case.center for m in plans[0].members} == {"GE Logiq 7 @10-14MHz"}


def test_external_may_name_one_center_of_a_dataset() -> None:
    busbra = _dataset("BUS-BRA", 30, ("GE Logiq 7 @10-14MHz", "GE Logiq 5 @10-12MHz", "U-Systems @10-14MHz"))
    plans = partition([busbra], PartitionOptions("center", external="U-Systems @10-14MHz"))
    assert [(p.name, p.role) for p in plans][-1] == ("bus-bra_u-systems-10-14mhz", "external")
    assert sum(p.role == "train" for p in plans) == 2


def test_dirichlet_is_deterministic_per_seed_covers_every_case_once_and_skews_labels() -> None:
    data = [_dataset("BUSI", 120), _dataset("BUS_UC", 60, positive_every=3)]
    options = PartitionOptions("dirichlet", num_sites=4, alpha=0.3, min_cases=10, seed=3)
    first, again = partition(data, options), partition(data, options)
    assert _ids(first) == _ids(again)
    other = partition(data, PartitionOptions("dirichlet", num_sites=4, alpha=0.3, min_cases=10, seed=4))
    assert _ids(other) != _ids(first)
    every = [case for site in _ids(first) for case in site]
    assert len(every) == len(set(every)) == 180
    assert all(len(p.members) >= 10 for p in first)
    fractions = [p.counts()[1] / len(p.members) for p in first]
    assert max(fractions) - min(fractions) > 0.2  # label skew at alpha 0.3


def test_quantity_skew_gives_unequal_sizes_deterministically() -> None:
    data = [_dataset("BUSI", 200)]
    plans = partition(data, PartitionOptions("quantity", num_sites=3, alpha=0.5, min_cases=10, seed=0))
    sizes = sorted(len(p.members) for p in plans)
    assert sum(sizes) == 200 and sizes[-1] > 2 * sizes[0]
    assert _ids(plans) == _ids(partition(data, PartitionOptions("quantity", num_sites=3, alpha=0.5, min_cases=10, seed=0)))


def test_a_skewed_partition_keeps_the_external_center_whole() -> None:
    plans = partition([_dataset("BUSI", 80), _dataset("QAMEBI", 16)], PartitionOptions("dirichlet", external="qamebi", num_sites=2, alpha=5.0, min_cases=10))
    assert [p.role for p in plans] == ["train", "train", "external"]
    assert {m.dataset.name for m in plans[-1].members} == {"QAMEBI"} and len(plans[-1].members) == 16
    assert {m.dataset.name for p in plans[:2] for m in p.members} == {"BUSI"}


@pytest.mark.parametrize(
    ("datasets", "options", "message"),
    [
        ([_dataset("BUSI", 20)], PartitionOptions("center"), "gives 1 training site"),
        ([_dataset("BUSI", 20), _dataset("QAMEBI", 20)], PartitionOptions("center", external="nowhere"), "--external 'nowhere' names no dataset"),
        ([_dataset("BUSI", 15)], PartitionOptions("dirichlet", num_sites=2, min_cases=10), "cannot give 2 sites of at least 10"),
        ([_dataset("BUSI", 20), _dataset("QAMEBI", 20, positive_every=0)], PartitionOptions("center"), "site qamebi of the center partition has 0 positive"),
        ([_dataset("BUSI", 40)], PartitionOptions("dirichlet", num_sites=1), "needs at least 2 training sites"),
        ([_dataset("BUSI", 40)], PartitionOptions("random"), "expected one of center, dirichlet, quantity"),
    ],
)
def test_partitions_that_cannot_make_a_federation_are_refused_with_the_reason(datasets: list, options: PartitionOptions, message: str) -> None:
    with pytest.raises(PublicDataError, match=message.replace("(", r"\(")):
        partition(datasets, options)


def test_site_slug_makes_valid_site_names() -> None:
    assert site_slug("Toshiba Aplio 300 @12-14 MHz") == "toshiba-aplio-300-12-14-mhz"
    assert site_slug("..//") == "site"
    assert valid_site_name(site_slug("x" * 100 + "..y"))


def test_a_strongly_skewed_draw_is_redrawn_until_every_site_holds_both_labels() -> None:
    data = [_dataset("BUSI", 200)]
    options = PartitionOptions("dirichlet", num_sites=5, alpha=0.2, min_cases=10, seed=0)
    plans = partition(data, options)
    assert all(min(p.counts()[0], p.counts()[1]) >= 1 for p in plans)
    assert _ids(plans) == _ids(partition(data, options))
