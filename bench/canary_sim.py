"""The canary test's error rates over many simulated rules, looked at after every session.

Neutral rules (the same success chance with and without, drawn per rule) measure the false
promotion rate, which must stay at or under alpha however often the interval is read; helpful
and harmful ones (a difference of `--effect`) measure how often, and after how many sessions,
the right verdict comes. Outcomes are 0/1, the share and the base rate are drawn per rule.
The unit suite runs a short version (`tests/test_sequential.py`); this one is longer.

    .venv/bin/python bench/canary_sim.py --rules 4000 --sessions 2000 --alpha 0.05
"""

from __future__ import annotations

import argparse
import json
import random

from core.sequential import mean_radius, tuned_rho


def simulate(
    rules: int, sessions: int, alpha: float, effect: float, least: int, seed: int
) -> dict[str, float]:
    rng = random.Random(seed)
    a = alpha / 2
    rho = tuned_rho(least, a)
    promoted = withdrawn = 0
    at: list[int] = []
    for _ in range(rules):
        base = rng.uniform(0.1, 0.9 - max(effect, 0.0))
        share = rng.choice((0.1, 0.2, 0.5))
        chance = (base + effect, base)
        sums, counts = [0.0, 0.0], [0, 0]
        for seen in range(1, sessions + 1):
            arm = 0 if rng.random() < share else 1
            sums[arm] += rng.random() < chance[arm]
            counts[arm] += 1
            if counts[0] == 0 or counts[1] == 0:
                continue
            r_t, r_c = mean_radius(counts[0], rho, a), mean_radius(counts[1], rho, a)
            mean_t, mean_c = sums[0] / counts[0], sums[1] / counts[1]
            if counts[0] >= least and (mean_t - r_t) - (mean_c + r_c) > 0:
                promoted += 1
                at.append(seen)
                break
            if (mean_t + r_t) - (mean_c - r_c) < 0:
                withdrawn += 1
                at.append(seen)
                break
    at.sort()
    return {
        "rules": rules,
        "sessions": sessions,
        "alpha": alpha,
        "effect": effect,
        "promoted": promoted / rules,
        "withdrawn": withdrawn / rules,
        "median_sessions_to_verdict": at[len(at) // 2] if at else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=4000)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--min-sessions", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for effect in (0.0, 0.15, -0.15):
        result = simulate(args.rules, args.sessions, args.alpha, effect, args.min_sessions,
                          args.seed)  # fmt: skip
        print(json.dumps(result))


if __name__ == "__main__":
    main()
