"""Federated z-scoring: the pooled means and SDs from the sites' sums, and which standardisers are still unset."""

from __future__ import annotations

import numpy as np
import torch

from models.run_config import RunConfig
from models.task import build_network
from server.standardisation import pooled_moments, unset_standardisers


def _sums(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    finite = np.isfinite(x)
    values = np.where(finite, x, 0.0)
    return finite.sum(0).astype(float), values.sum(0), (values**2).sum(0)


def test_the_sites_sums_give_exactly_the_pooled_mean_and_sd() -> None:
    rng = np.random.default_rng(0)
    sites = [rng.normal(loc, 2.0, size=(n, 4)) for loc, n in ((0.0, 30), (5.0, 12), (-3.0, 20))]
    sites[1][3, 2] = np.nan  # a feature one case could not give
    mean, sd, n = pooled_moments([_sums(x) for x in sites])
    pooled = np.concatenate(sites)
    np.testing.assert_allclose(mean, np.nanmean(pooled, axis=0), rtol=1e-5)
    np.testing.assert_allclose(sd, np.nanstd(pooled, axis=0, ddof=1), rtol=1e-5)
    assert n.tolist() == [62, 62, 61, 62]
    empty = pooled_moments([_sums(np.full((3, 2), np.nan))])
    assert empty[0].tolist() == [0.0, 0.0] and empty[1].tolist() == [1.0, 1.0]  # no value anywhere: left as the identity


def test_only_standardisers_no_earlier_model_has_set_are_asked_for() -> None:
    net = build_network(RunConfig(task="fusion", modalities="ultrasound,radiomics", image_size=32))
    assert list(unset_standardisers(net)) == ["encoders.radiomics.standardise"]
    with torch.no_grad():
        net.encoders["radiomics"].standardise.mean[0] = 1.5
    assert unset_standardisers(net) == {}
