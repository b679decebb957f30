"""Central DP (DP-FedAvg, fixed clipping): clipping, the noisy uniform mean, Flower's accountant, the schedule check."""

from __future__ import annotations

import numpy as np
import pytest
from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

from models.run_config import RunConfig, RunConfigError
from strategies.central_dp import CentralDP, CentralDPError, clip_update
from strategies.update_checks import change_norm

REFERENCE = {"w": np.zeros(4, dtype=np.float32), "b": np.zeros(2, dtype=np.float32), "count": np.array([3], dtype=np.int64)}


def _update(*values: float) -> dict[str, np.ndarray]:
    return {"w": np.array(values[:4], dtype=np.float32), "b": np.array(values[4:], dtype=np.float32), "count": np.array([5], dtype=np.int64)}


def test_an_update_above_the_clipping_norm_is_scaled_to_it_and_one_below_is_kept() -> None:
    big = _update(3, 4, 0, 0, 0, 0)  # norm 5
    clipped = clip_update(big, REFERENCE, 1.0)
    assert change_norm(clipped, REFERENCE) == pytest.approx(1.0)
    np.testing.assert_allclose(clipped["w"], [0.6, 0.8, 0, 0])
    assert clipped["count"][0] == 5 and clipped["w"].dtype == np.float32  # integer arrays untouched, dtypes kept
    small = _update(0.3, 0, 0, 0, 0, 0.4)
    np.testing.assert_array_equal(clip_update(small, REFERENCE, 1.0)["w"], small["w"])


def test_the_aggregate_is_the_uniform_mean_of_clipped_updates_over_all_training_sites_plus_noise_of_sigma_c_over_m() -> None:
    quiet = CentralDP("server-clipping", 1e-9, 1.0, 1e-5, 0.0, sites=3)
    updates = [_update(3, 4, 0, 0, 0, 0), _update(0, 0, 0.5, 0, 0, 0)]  # the third site sent nothing: it adds nothing
    mean = quiet.aggregate(updates, REFERENCE)
    np.testing.assert_allclose(mean["w"], [0.6 / 3, 0.8 / 3, 0.5 / 3, 0], atol=1e-6)  # not weighted by cases
    central = CentralDP("server-clipping", 2.0, 0.5, 1e-5, 0.0, sites=4)
    big = {"w": np.zeros(200_000, dtype=np.float32)}
    noisy = central.aggregate([big], big)["w"]
    assert noisy.std() == pytest.approx(2.0 * 0.5 / 4, rel=0.02) and abs(noisy.mean()) < 0.005
    assert not np.array_equal(noisy, central.aggregate([big], big)["w"])  # fresh noise every release


def test_epsilon_is_flowers_rdp_accountant_and_equals_opacus_for_the_unsampled_gaussian_mechanism() -> None:
    central = CentralDP("client-clipping", 1.1, 1.0, 1e-5, 0.0, sites=3)
    orders = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
    for rounds in (1, 8, 40):
        reference, _ = get_privacy_spent(orders=orders, rdp=compute_rdp(q=1.0, noise_multiplier=1.1, steps=rounds, orders=orders), delta=1e-5)
        assert central.epsilon(rounds) == pytest.approx(float(reference), rel=1e-6)
    assert central.epsilon(0) == 0.0 and central.epsilon(2) < central.epsilon(3)


def test_a_schedule_past_the_epsilon_cap_is_refused_naming_both_figures() -> None:
    central = CentralDP("server-clipping", 1.0, 1.0, 1e-5, 10.0, sites=3)
    central.check_schedule(3)  # within the cap
    with pytest.raises(CentralDPError, match=r"8 rounds at noise multiplier 1 spend epsilon 16\.51\d.*above central-dp-max-epsilon = 10"):
        central.check_schedule(8)


def test_client_clipping_refuses_an_update_above_the_norm_and_server_clipping_takes_it() -> None:
    big = _update(3, 4, 0, 0, 0, 0)
    assert "above the central-DP clipping norm 1" in CentralDP("client-clipping", 1.0, 1.0, 1e-5, 0.0, 2).over_norm(change_norm(big, REFERENCE))
    assert CentralDP("client-clipping", 1.0, 1.0, 1e-5, 0.0, 2).over_norm(change_norm(clip_update(big, REFERENCE, 1.0), REFERENCE)) is None
    assert CentralDP("server-clipping", 1.0, 1.0, 1e-5, 0.0, 2).over_norm(change_norm(big, REFERENCE)) is None


@pytest.mark.parametrize("key, value", [("central-dp", "local"), ("central-dp-noise-multiplier", 0.0), ("central-dp-clipping-norm", -1.0), ("central-dp-delta", 1.0), ("central-dp-max-epsilon", -2.0)])
def test_central_dp_settings_are_range_checked(key: str, value: object) -> None:
    with pytest.raises(RunConfigError, match=key):
        RunConfig.from_mapping({key: value})
