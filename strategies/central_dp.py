"""Central differential privacy: each site's update clipped, a uniform mean, Gaussian noise, Flower's RDP accountant.

DP-FedAvg with fixed clipping (McMahan et al., 2018), the mechanism of Flower's
``DifferentialPrivacyServerSideFixedClipping`` and ``...ClientSideFixedClipping`` wrappers: every
training site's update (its model minus the global one) is clipped to L2 norm ``C``, the clipped
updates are summed and divided by the number of training sites ``m`` (a missing site adds
nothing), and Gaussian noise of standard deviation ``sigma * C / m`` is added to every
floating-point parameter. With ``server-clipping`` the server clips (it sees each site's raw
update); with ``client-clipping`` each site clips before its update leaves it and the server
refuses an update above ``C``. Every round is one release of the Gaussian mechanism with
sensitivity ``C / m`` under adding or removing one site, and every training site takes part in
every round (no sampling amplification): Flower's ``RdpAccountant`` composes them.

The guarantee is site-level (each hospital's whole dataset is the unit) for everything released
from the aggregation (every round's global model and the final one), against whoever sees those
models, with a trusted server. Flower's wrappers themselves are not used: their accounting needs
FedAvg's own, case-weighted aggregation unchanged, while axilla aggregates packed models after
rejecting bad updates, and the mechanism needs the uniform mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.run_config import RunConfig
from strategies.update_checks import change_norm, float_keys

ACCOUNTANT = "Flower RdpAccountant (no sampling amplification, add or remove one site)"


class CentralDPError(ValueError):
    """The run's central DP settings cannot hold its schedule."""


def clip_update(update: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray], clipping_norm: float) -> dict[str, np.ndarray]:
    """``update`` with its change from ``reference`` scaled down to L2 norm ``clipping_norm`` when above it (other arrays as given)."""
    norm = change_norm(update, reference)
    scale = min(1.0, clipping_norm / norm) if norm > 0 else 1.0
    out = dict(update)
    for key in float_keys(reference):
        out[key] = (reference[key] + scale * (update[key] - reference[key])).astype(reference[key].dtype)
    return out


@dataclass(frozen=True)
class CentralDP:
    """One run's central DP: mode, noise multiplier, clipping norm, delta, optional epsilon cap, training sites per round."""

    mode: str
    noise_multiplier: float
    clipping_norm: float
    delta: float
    max_epsilon: float
    sites: int

    @classmethod
    def of(cls, cfg: RunConfig, train_sites: int) -> CentralDP | None:
        """The run config's central DP over ``train_sites`` sites, or None when it is off."""
        if cfg.central_dp == "off":
            return None
        return cls(cfg.central_dp, cfg.central_dp_noise_multiplier, cfg.central_dp_clipping_norm, cfg.central_dp_delta, cfg.central_dp_max_epsilon, max(1, train_sites))

    def epsilon(self, releases: int) -> float:
        """Epsilon at ``delta`` after ``releases`` rounds, by Flower's RDP accountant."""
        if releases < 1:
            return 0.0
        from flwr.serverapp import GaussianPrivacyEvent, NeighboringRelation, PrivacyConfig, RdpAccountant, SamplingMethod

        config = PrivacyConfig(self.delta, self.sites, NeighboringRelation.ADD_OR_REMOVE_ONE, SamplingMethod.NO_AMPLIFICATION)
        accountant = RdpAccountant(config)
        accountant.compose(GaussianPrivacyEvent(self.noise_multiplier, self.sites, self.sites), count=releases)
        return float(accountant.get_epsilon(self.delta))

    def check_schedule(self, rounds: int) -> None:
        """Refuse a schedule whose rounds would pass ``central-dp-max-epsilon``, naming both figures."""
        planned = self.epsilon(rounds)
        if self.max_epsilon and planned > self.max_epsilon:
            raise CentralDPError(
                f"central DP: {rounds} rounds at noise multiplier {self.noise_multiplier:g} spend epsilon {planned:.3f} "
                f"(delta {self.delta:g}, {self.sites} training sites), above central-dp-max-epsilon = {self.max_epsilon:g}; "
                "raise central-dp-noise-multiplier or plan fewer rounds"
            )

    def over_norm(self, norm: float) -> str | None:
        """With client clipping: why an update of L2 norm ``norm`` above the clipping norm is refused (None when within it, or server clipping)."""
        if self.mode != "client-clipping":
            return None
        if norm > self.clipping_norm * (1 + 1e-5):
            return f"update norm {norm:.4g} is above the central-DP clipping norm {self.clipping_norm:g} the site must clip to"
        return None

    def aggregate(self, updates: Sequence[Mapping[str, np.ndarray]], reference: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The global model plus the noisy uniform mean of the clipped updates (non-float arrays: the first update's)."""
        rng = np.random.default_rng()  # fresh OS entropy: noise nobody can regenerate
        out = dict(updates[0]) if updates else dict(reference)
        std = self.noise_multiplier * self.clipping_norm / self.sites
        clipped = [clip_update(u, reference, self.clipping_norm) for u in updates]
        for key in float_keys(reference):
            ref = reference[key].astype(np.float64)
            total = sum((c[key].astype(np.float64) - ref for c in clipped), np.zeros_like(ref))
            out[key] = (ref + total / self.sites + rng.normal(0.0, std, ref.shape)).astype(reference[key].dtype)
        return out

    def describe(self, releases: int) -> dict[str, Any]:
        """What the report states: the mechanism, its settings, the releases and the epsilon spent."""
        spent = self.epsilon(releases)
        return {
            "mechanism": f"DP-FedAvg, fixed clipping at the {'server' if self.mode == 'server-clipping' else 'sites'}",
            "mode": self.mode, "noise_multiplier": self.noise_multiplier, "clipping_norm": self.clipping_norm,
            "noise_std": self.noise_multiplier * self.clipping_norm / self.sites, "sites_per_round": self.sites,
            "releases": releases, "delta": self.delta, "epsilon": spent, "accountant": ACCOUNTANT,
            "max_epsilon": self.max_epsilon or None,
            "guarantee": (
                f"site-level ({spent:.3g}, {self.delta:g})-DP for every global model released by the aggregation "
                "(each hospital's whole data is the unit), against anyone who sees those models; the server is trusted"
                + (" and sees each site's raw update" if self.mode == "server-clipping" else " and sees only clipped updates")
            ),
        }  # fmt: skip
