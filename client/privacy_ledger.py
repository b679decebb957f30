"""A site's privacy ledger: every DP-SGD training it did, kept under ``<output_dir>/privacy/ledger.json``.

Flower starts a process per message and a site restarts between runs, so the accountant's state
lives in this file, not in memory: each entry is one local training (run, model, round, noise
multiplier, sample rate, steps, delta). Epsilon is recomputed from the entries with Opacus's RDP
accountant: for one of a run's models (its budget, ``privacy.dp.target_epsilon``) and over all
entries (the lifetime budget, ``privacy.dp.lifetime_epsilon``). Writes are atomic and serialised
by a lock, so a site worker and a ClientApp process never lose each other's entries. The ledger
never leaves the site; a reply carries only the scalar figures of the model it trains.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from client.errors import SiteDataError

ACCOUNTANT = "rdp"  # Opacus's RDP accountant (Mironov 2017; the subsampled Gaussian of Mironov, Talwar and Zhang 2019)


@dataclass(frozen=True)
class Spend:
    """One local DP-SGD training: enough for anyone to recompute its epsilon."""

    run: str
    model: str
    server_round: int
    noise_multiplier: float
    sample_rate: float
    steps: int
    delta: float
    at: float = 0.0


SEARCH_ORDERS = (*range(2, 64), 80, 96, 128, 256)  # integer Renyi orders: fast to evaluate, used to choose the noise


@functools.lru_cache(maxsize=4096)
def _rdp_per_step(sample_rate: float, noise_multiplier: float, orders: tuple[float, ...]) -> tuple[float, ...]:
    """The Renyi DP of one step of the subsampled Gaussian at each order (Opacus's ``compute_rdp``)."""
    from opacus.accountants.analysis.rdp import compute_rdp  # noqa: PLC0415

    return tuple(compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=list(orders)))


def default_orders() -> tuple[float, ...]:
    """The Renyi orders of Opacus's RDP accountant (what ``RDPAccountant.get_epsilon`` uses)."""
    from opacus.accountants import RDPAccountant  # noqa: PLC0415

    return tuple(RDPAccountant.DEFAULT_ALPHAS)


def training_rdp(sample_rate: float, noise_multiplier: float, steps: int, orders: tuple[float, ...]) -> np.ndarray:
    """The Renyi DP of one training (``steps`` steps) at each order."""
    return np.asarray(_rdp_per_step(sample_rate, noise_multiplier, orders)) * steps


def rdp(spends: list[Spend], orders: tuple[float, ...]) -> np.ndarray:
    """The composed Renyi DP of a sequence of trainings at each order (RDP adds up over steps and trainings)."""
    return sum((training_rdp(s.sample_rate, s.noise_multiplier, s.steps, orders) for s in spends), np.zeros(len(orders)))


def epsilon_of(total_rdp: np.ndarray, orders: tuple[float, ...], delta: float) -> float:
    """Epsilon at ``delta`` from composed Renyi DP (Opacus's ``get_privacy_spent``)."""
    from opacus.accountants.analysis.rdp import get_privacy_spent  # noqa: PLC0415

    return float(get_privacy_spent(orders=list(orders), rdp=total_rdp, delta=delta)[0])


def epsilon(spends: list[Spend], delta: float, orders: tuple[float, ...] | None = None) -> float:
    """The RDP accountant's epsilon at ``delta`` for a sequence of trainings (0 for none); the same as Opacus's ``RDPAccountant``."""
    if not spends:
        return 0.0
    orders = orders or default_orders()
    return epsilon_of(rdp(spends, orders), orders, delta)


def of_model(entries: list[Spend], run: str, model: str) -> list[Spend]:
    """The trainings of one of a run's models."""
    return [s for s in entries if s.run == run and s.model == model]


class PrivacyLedger:
    """The ledger file of one site."""

    def __init__(self, output_dir: Path) -> None:
        self.path = Path(output_dir) / "privacy" / "ledger.json"

    def entries(self) -> list[Spend]:
        """Every recorded training; a damaged ledger is refused, never guessed (SiteDataError names the file)."""
        if not self.path.exists():
            return []
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return [Spend(**entry) for entry in raw["entries"]]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise SiteDataError(
                f"privacy ledger {self.path} is unreadable ({err}); training with DP-SGD stops until it is restored from a backup",
                "privacy ledger unreadable: the site does not train until it is restored",
            ) from err

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the ledger's lock (other processes of the site wait)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def record(self, spend: Spend, entries: list[Spend]) -> None:
        """Append one training to ``entries``, the ledger as read under the same ``locked`` hold."""
        entries = [*entries, Spend(**{**asdict(spend), "at": spend.at or time.time()})]
        staged = self.path.with_name(f".ledger.{os.getpid()}.json")
        staged.write_text(json.dumps({"accountant": ACCOUNTANT, "entries": [asdict(e) for e in entries]}, indent=1), encoding="utf-8")
        os.replace(staged, self.path)
