"""`skillproxy eval tau2`: the command line of the τ²-bench harness.

Everything that can be refused without spending is checked first (the plan, then the τ²
fixture), each refusal one line with exit status 2. A run that fails midway exits 1, one
stopped at `--max-cost` (or while waiting for a review) 3, one interrupted 143; each resumes
with the same command.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

from skillproxy.eval.plan import ARMS, DEFAULT_ARMS, DOMAINS, PlanError, make_plan

EXIT_FAILED, EXIT_REFUSED, EXIT_STOPPED, EXIT_TERMINATED = 1, 2, 3, 143


def add_eval_command(commands: Any) -> None:
    evaluate = commands.add_parser("eval", help="measure whether learned skills help an agent")
    benches = evaluate.add_subparsers(dest="bench", required=True)
    tau2 = benches.add_parser(
        "tau2",
        help="τ²-bench: learn on the train split, then test baseline, learned and placebo arms",
        description="Learn skills on τ²-bench's train split through a skillproxy on loopback, "
        "freeze them, run the held-out test split in each arm, and write report.json, report.md "
        "and plots into --out. Interrupted runs resume from --out.",
    )
    tau2.add_argument("--domain", required=True, help=f"τ² domain: {' or '.join(DOMAINS)}")
    tau2.add_argument("--agent-model", help="litellm model string of the agent (proxied)")
    tau2.add_argument("--user-model", help="litellm model string of the user simulator")
    tau2.add_argument("--reflector-model", help="litellm model string of the learner")
    tau2.add_argument(
        "--scripted",
        action="store_true",
        help="scripted models on loopback, no key: checks the mechanics, not learning quality",
    )
    tau2.add_argument("--trials", type=int, default=4, help="trials per task (default 4)")
    tau2.add_argument(
        "--arms",
        default=",".join(DEFAULT_ARMS),
        help=f"comma-separated, from {', '.join(ARMS)} (default {','.join(DEFAULT_ARMS)})",
    )
    tau2.add_argument("--epochs", type=int, default=1, help="passes over the train split")
    tau2.add_argument("--review", action="store_true", help="wait for a person to review")
    tau2.add_argument("--max-cost", type=float, help="stop once this many US dollars are spent")
    tau2.add_argument("--seed", type=int, default=300, help="τ²'s seed (the same for every arm)")
    tau2.add_argument("--concurrency", type=int, default=4, help="simulations at once")
    tau2.add_argument("--max-steps", type=int, default=100, help="τ²'s steps per simulation")
    tau2.add_argument(
        "--tasks", type=int, help="only the first N tasks of each split (a smoke run)"
    )
    tau2.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples")
    tau2.add_argument(
        "--out", default=os.environ.get("EVAL_OUT"), help="the run folder ($EVAL_OUT)"
    )


def run_eval(args: argparse.Namespace) -> int:
    import httpx

    from skillproxy.admin_client import AdminAPIError
    from skillproxy.eval.fixture import FixtureError, describe
    from skillproxy.eval.harness import CostCapReached, Harness, PhaseFailed, ReviewInterrupted
    from skillproxy.eval.services import ServiceError

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network on import
    if not args.out:
        return _refuse("give --out DIR (or set EVAL_OUT): the run folder for the store and report")
    try:
        plan = make_plan(
            domain=args.domain,
            out=args.out,
            agent_model=args.agent_model,
            user_model=args.user_model,
            reflector_model=args.reflector_model,
            scripted=args.scripted,
            arms=args.arms,
            trials=args.trials,
            epochs=args.epochs,
            seed=args.seed,
            review=args.review,
            max_cost=args.max_cost,
            concurrency=args.concurrency,
            max_steps=args.max_steps,
            task_limit=args.tasks,
            resamples=args.resamples,
        )
        domain = describe(plan.domain)
    except (PlanError, FixtureError) as exc:
        return _refuse(str(exc))
    if plan.scripted:
        _say("scripted models: this run checks the mechanics, not learning quality")
    signal.signal(signal.SIGTERM, _terminated)  # stop the helpers too, then exit 143
    try:
        report = Harness(plan, domain, _say).run()
    except PlanError as exc:  # the folder holds another run: nothing was started
        return _refuse(str(exc))
    except (CostCapReached, ReviewInterrupted) as exc:
        print(f"skillproxy eval: {exc}", file=sys.stderr)
        return EXIT_STOPPED
    except (PhaseFailed, ServiceError, FixtureError) as exc:
        print(f"skillproxy eval: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (AdminAPIError, httpx.HTTPError) as exc:
        print(f"skillproxy eval: the run's proxy failed: {exc}; see {plan.out}/proxy.log and "
              "run the same command to resume", file=sys.stderr)  # fmt: skip
        return EXIT_FAILED
    except (KeyboardInterrupt, Terminated):
        print(
            f"skillproxy eval: interrupted; finished simulations are kept in {plan.out}: run the "
            "same command to resume",
            file=sys.stderr,
        )
        return EXIT_TERMINATED
    headline = report.get("headline")
    if headline:
        lo, hi = headline["ci95"]
        _say(
            f"learned - placebo pass^1: {headline['delta']:+.3f} (95% CI {lo:+.3f} to {hi:+.3f}, "
            f"p = {headline['p_value']:.3g})"
        )
    return 0


class Terminated(Exception):
    """SIGTERM, raised where the run is, so every helper process is stopped on the way out."""


def _terminated(signum: int, frame: object) -> None:
    raise Terminated


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _refuse(message: str) -> int:
    print(f"skillproxy eval: {message}", file=sys.stderr)
    return EXIT_REFUSED
