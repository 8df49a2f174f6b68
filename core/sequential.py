"""An always-valid comparison of two arms' mean outcome, safe to look at after every session.

Method: a time-uniform confidence sequence for each arm's mean, the two-sided normal-mixture
boundary of Howard, Ramdas, McAuliffe and Sekhon (2021, "Time-uniform, nonparametric,
nonasymptotic confidence sequences", eq. (3.7)-(3.8)) applied to outcomes in [0, 1], which
are 1/2-sub-Gaussian (Hoeffding). For the sum S_n of n centred outcomes, intrinsic time
v = n/4 and a mixing parameter rho,

    P(exists n: |S_n| >= sqrt((v + rho) * log((v + rho) / (rho * a**2)))) <= a,

so mean_n +- that radius / n holds for every n at once with probability 1 - a. Each arm gets
a = alpha / 2 and the difference interval is [lo_T - hi_C, hi_T - lo_C]: by a union bound it
covers the true difference at every look at once with probability 1 - alpha, however often
it is read, and whenever the looks happen (each day, after each feedback). Promoting when the
lower end passes 0 (or withdrawing when the upper end falls below it) is therefore a test
whose false-positive rate stays at alpha or under without any correction for peeking.

rho is chosen so the boundary is tightest at a planned number of observations m (the rule's
`min_sessions`): rho = (m / 4) / (-W_{-1}(-a**2 / e) - 1), W_{-1} the lower branch of
Lambert's W (the minimiser of the radius at v = m / 4, derived by setting its derivative in
rho to zero). The boundary is conservative: it uses only the [0, 1] bound, not the observed
variance, so it asks for more sessions than a fixed-size test would, in exchange for being
valid at every look.

Stdlib only, pure functions: the proxy's canary watch and the admin report both call them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SUB_GAUSSIAN_VARIANCE = 0.25
"""Of any outcome in [0, 1]: ((1 - 0) / 2) ** 2."""
METHOD = (
    "time-uniform confidence sequence per arm (two-sided normal mixture, Howard et al. 2021, "
    "outcomes in [0, 1] as 1/2-sub-Gaussian), alpha/2 each, combined into an interval for the "
    "difference valid at every look at once"
)


def lambert_w_lower(z: float) -> float:
    """W_{-1}(z) for z in [-1/e, 0): the solution w <= -1 of w * exp(w) = z (Halley's
    iteration from the asymptotic start log(-z) - log(-log(-z)))."""
    if not -1 / math.e <= z < 0:
        raise ValueError(f"W_-1 is defined on [-1/e, 0), not at {z}")
    if z == -1 / math.e:
        return -1.0
    w = (
        math.log(-z) - math.log(-math.log(-z))
        if z > -0.25
        else -1.0 - math.sqrt(2 * (1 + math.e * z))
    )
    for _ in range(50):
        ew = math.exp(w)
        f = w * ew - z
        step = f / (ew * (w + 1) - (w + 2) * f / (2 * w + 2))
        w -= step
        if abs(step) < 1e-14 * (1 + abs(w)):
            break
    return w


def tuned_rho(planned: int, a: float) -> float:
    """The mixing parameter that makes the level-`a` boundary tightest after `planned`
    observations of a [0, 1] outcome."""
    v = max(planned, 1) * SUB_GAUSSIAN_VARIANCE
    return v / (-lambert_w_lower(-(a * a) / math.e) - 1)


def boundary(v: float, rho: float, a: float) -> float:
    """The normal-mixture radius for the sum at intrinsic time `v`: sqrt((v + rho) *
    log((v + rho) / (rho * a**2)))."""
    return math.sqrt((v + rho) * math.log((v + rho) / (rho * a * a)))


def mean_radius(n: int, rho: float, a: float) -> float:
    """Half-width of the confidence sequence for a [0, 1] mean after `n` observations
    (infinite before the first)."""
    if n <= 0:
        return math.inf
    return boundary(n * SUB_GAUSSIAN_VARIANCE, rho, a) / n


@dataclass(frozen=True, slots=True)
class Interval:
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class Comparison:
    """Treatment minus control, with its always-valid interval; None parts without data."""

    difference: float | None
    interval: Interval | None
    treatment: Interval | None
    control: Interval | None
    verdict: str
    """`better` (the interval is above 0), `worse` (below 0), `none`, or `no data`."""


def arm_interval(total: float, n: int, rho: float, a: float) -> Interval | None:
    """The confidence sequence of one arm's mean from the sum and count of its outcomes,
    clipped to [0, 1] (a mean of [0, 1] outcomes is in it)."""
    if n <= 0:
        return None
    mean, radius = total / n, mean_radius(n, rho, a)
    return Interval(max(0.0, mean - radius), min(1.0, mean + radius))


def compare(
    treatment_sum: float,
    treatment_n: int,
    control_sum: float,
    control_n: int,
    *,
    alpha: float,
    planned: int,
) -> Comparison:
    """The difference of the two arms' means and its level-`alpha` confidence sequence, each
    arm's tuned for `planned` observations."""
    a = alpha / 2
    rho = tuned_rho(planned, a)
    t = arm_interval(treatment_sum, treatment_n, rho, a)
    c = arm_interval(control_sum, control_n, rho, a)
    if t is None or c is None:
        return Comparison(None, None, t, c, "no data")
    difference = treatment_sum / treatment_n - control_sum / control_n
    interval = Interval(t.low - c.high, t.high - c.low)
    verdict = "better" if interval.low > 0 else "worse" if interval.high < 0 else "none"
    return Comparison(difference, interval, t, c, verdict)


def observations_needed(
    effect: float, ratio: float, *, alpha: float, planned: int, limit: int = 10_000_000
) -> int | None:
    """The fewest treatment observations (with `ratio` control ones per treatment one) at
    which the two radii add up to less than `effect`: about where a true difference of that
    size would first put the interval clear of 0 (even odds, not a power of 80%). None past
    `limit`."""
    if effect <= 0 or ratio <= 0:
        raise ValueError("the effect and the control/treatment ratio must be positive")
    a = alpha / 2
    rho = tuned_rho(planned, a)

    def clear(n: int) -> bool:
        control = max(1, math.floor(n * ratio))
        return mean_radius(n, rho, a) + mean_radius(control, rho, a) < effect

    high = 1
    while not clear(high):
        high *= 2
        if high > limit:
            return None
    low = high // 2
    while low + 1 < high:  # clear(high), not clear(low) (or low == 0)
        middle = (low + high) // 2
        if clear(middle):
            high = middle
        else:
            low = middle
    return high
