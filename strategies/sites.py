"""Who is who: the sites known from the handshake, and a grid view restricted to some of them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterable

from flwr.serverapp import Grid


class TooFewSitesError(RuntimeError):
    """Fewer training sites than ``min-train-sites`` are connected, or sent usable updates, in a round."""


ROLES = ("train", "external", "validate", "pooled")


@dataclass(frozen=True)
class NodeSite:
    """A node as it described itself at the handshake, with its role in this federation.

    A site's own role is ``train`` (trains, is validated and tested) or ``external`` (tested
    only). The baselines give two more: ``validate`` (a training site that is validated and
    tested but does not train this model) and ``pooled`` (the pooled baseline's node, which
    trains only).
    """

    node_id: int
    name: str
    role: str
    counts: dict[str, dict[int, int]]
    fingerprint: str = ""
    version: str = ""
    dp: bool = False  # trains only with DP-SGD

    @property
    def trains(self) -> bool:
        """Whether the site takes part in training rounds."""
        return self.role in ("train", "pooled")

    @property
    def validates(self) -> bool:
        """Whether the site's validation split chooses the operating point (and is reported)."""
        return self.role in ("train", "validate")

    @property
    def tests(self) -> bool:
        """Whether the site's test split is evaluated."""
        return self.role != "pooled"

    @property
    def n_train(self) -> int:
        """Training cases (the FedAvg weight)."""
        return sum(self.counts.get("train", {}).values())


def wait_for_nodes(grid: Grid, count: int, timeout: float) -> list[int]:
    """Wait until ``count`` nodes are connected (or the timeout passes); return the connected node ids."""
    deadline = time.monotonic() + timeout
    while len(nodes := list(grid.get_node_ids())) < count and time.monotonic() < deadline:
        time.sleep(0.5)
    return nodes


class NodeSubset:
    """A Grid whose ``get_node_ids`` lists only some nodes; everything else is the wrapped grid's."""

    def __init__(self, grid: Grid, node_ids: Iterable[int]) -> None:
        self._grid = grid
        self._node_ids = sorted(node_ids)

    def get_node_ids(self) -> list[int]:
        """The allowed nodes that are still connected."""
        connected = set(self._grid.get_node_ids())
        return [n for n in self._node_ids if n in connected]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)
