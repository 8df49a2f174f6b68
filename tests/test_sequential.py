"""core/sequential.py: the confidence sequence against hand-computed values, and a simulation
over many neutral rules, looked at after every session, whose false promotion rate must stay
at or under alpha (a longer one: `bench/canary_sim.py`)."""

from __future__ import annotations

import math
import random

import pytest

from core.sequential import (
    arm_interval,
    boundary,
    compare,
    lambert_w_lower,
    mean_radius,
    observations_needed,
    tuned_rho,
)


def test_lambert_w_lower_branch_matches_published_values() -> None:
    # W_{-1}(-0.1) and W_{-1}(-0.01), as tabulated (e.g. scipy.special.lambertw(z, -1))
    assert lambert_w_lower(-0.1) == pytest.approx(-3.5771520639572972, abs=1e-12)
    assert lambert_w_lower(-0.01) == pytest.approx(-6.4727751243940046, abs=1e-12)
    assert lambert_w_lower(-1 / math.e) == -1.0
    for z in (-0.3, -1e-3, -1e-8):
        w = lambert_w_lower(z)
        assert w <= -1 and w * math.exp(w) == pytest.approx(z, rel=1e-12)
    with pytest.raises(ValueError):
        lambert_w_lower(0.1)


def test_the_boundary_is_the_normal_mixture_formula() -> None:
    # sqrt((v + rho) * ln((v + rho) / (rho * a^2))) at v = 10, rho = 1, a = 0.05:
    # sqrt(11 * ln(11 / 0.0025)) = sqrt(11 * ln 4400) = sqrt(11 * 8.389359819) = 9.606401929
    assert boundary(10, 1, 0.05) == pytest.approx(9.606401929, abs=1e-9)
    assert mean_radius(0, 1.0, 0.05) == math.inf


def test_rho_is_tuned_where_the_radius_is_smallest() -> None:
    # planned 20 observations, a = 0.025: v = 20 / 4 = 5, W_{-1}(-a^2 / e) = -10.75293792,
    # rho = 5 / (10.75293792 - 1) = 0.5126660336
    rho = tuned_rho(20, 0.025)
    assert rho == pytest.approx(0.5126660336, abs=1e-9)
    radius = mean_radius(20, rho, 0.025)
    # (5 + rho) = 5.512666034; ln(5.512666034 / (rho * 0.000625)) = 9.752937920
    # sqrt(5.512666034 * 9.752937920) / 20 = 0.3666220452
    assert radius == pytest.approx(0.3666220452, abs=1e-9)
    for other in (rho * 0.5, rho * 2):  # any other rho is wider at n = 20
        assert mean_radius(20, other, 0.025) > radius


def test_compare_builds_the_difference_interval_from_the_two_arms() -> None:
    # 18 of 20 with, 6 of 20 without, alpha 0.05 (a = 0.025 per arm), planned 20: both
    # radii are 0.3666220452 (above); treatment [0.9 - r, 1] clipped, control [0, 0.3 + r]
    result = compare(18, 20, 6, 20, alpha=0.05, planned=20)
    r = 0.3666220452
    assert result.difference == pytest.approx(0.6)
    assert result.treatment is not None and result.control is not None
    assert result.treatment.low == pytest.approx(0.9 - r) and result.treatment.high == 1.0
    assert result.control.low == 0.0 and result.control.high == pytest.approx(0.3 + r)
    assert result.interval is not None
    assert result.interval.low == pytest.approx(0.9 - r - (0.3 + r))
    assert result.interval.high == pytest.approx(1.0 - 0.0)
    assert result.verdict == "none"  # 0.6 seen, but 20 a side cannot yet rule out 0
    assert compare(36, 40, 12, 40, alpha=0.05, planned=20).verdict == "better"
    assert compare(12, 40, 36, 40, alpha=0.05, planned=20).verdict == "worse"
    assert compare(0, 0, 5, 9, alpha=0.05, planned=20).verdict == "no data"


def test_arm_interval_is_none_without_data() -> None:
    assert arm_interval(0, 0, 1.0, 0.05) is None


def test_sessions_needed_is_where_the_radii_first_fit_the_effect() -> None:
    needed = observations_needed(0.2, 1.0, alpha=0.05, planned=20)
    assert needed is not None
    rho, a = tuned_rho(20, 0.025), 0.025
    assert 2 * mean_radius(needed, rho, a) < 0.2 <= 2 * mean_radius(needed - 1, rho, a)
    # a smaller effect needs more; a bigger control arm needs fewer treatment sessions
    assert observations_needed(0.1, 1.0, alpha=0.05, planned=20) > needed  # type: ignore[operator]
    assert observations_needed(0.2, 4.0, alpha=0.05, planned=20) < needed  # type: ignore[operator]
    assert observations_needed(1e-6, 1.0, alpha=0.05, planned=20, limit=1000) is None


def false_promotions(
    rules: int, sessions: int, alpha: float, seed: int, *, naive: bool = False
) -> float:
    """The share of neutral rules (the same success chance with and without) promoted at
    some look, looking after every rated session, promotion needing 20 canary sessions."""
    rng = random.Random(seed)
    promoted = 0
    least = 20
    a = alpha / 2
    rho = tuned_rho(least, a)
    for _ in range(rules):
        chance = rng.uniform(0.1, 0.9)
        share = rng.choice((0.1, 0.2, 0.5))
        sums, counts = [0.0, 0.0], [0, 0]
        for _ in range(sessions):
            arm = 0 if rng.random() < share else 1
            sums[arm] += rng.random() < chance
            counts[arm] += 1
            if counts[0] < least or counts[1] == 0:
                continue
            mean_t, mean_c = sums[0] / counts[0], sums[1] / counts[1]
            if naive:  # a fixed-sample 95% interval, peeked at every session
                se = math.sqrt(
                    max(mean_t * (1 - mean_t), 1e-9) / counts[0]
                    + max(mean_c * (1 - mean_c), 1e-9) / counts[1]
                )
                low = mean_t - mean_c - 1.96 * se
            else:
                low = (mean_t - mean_radius(counts[0], rho, a)) - (
                    mean_c + mean_radius(counts[1], rho, a)
                )
            if low > 0:
                promoted += 1
                break
    return promoted / rules


def test_peeking_after_every_session_keeps_false_promotions_under_alpha() -> None:
    for alpha in (0.05, 0.2):
        rate = false_promotions(rules=400, sessions=400, alpha=alpha, seed=21)
        assert rate <= alpha, f"false promotion rate {rate} above alpha {alpha}"


def test_the_simulation_would_catch_a_test_that_peeking_breaks() -> None:
    """The same looks with a fixed-sample interval promote far more neutral rules than 5%: the
    simulation is sharp enough to see what the sequential boundary prevents."""
    assert false_promotions(rules=200, sessions=400, alpha=0.05, seed=22, naive=True) > 0.1
