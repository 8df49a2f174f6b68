"""What one `skillproxy eval tau2` run is asked to do, checked before anything is spent.

Every check that can fail without calling a model happens here: the domain, the arms, the model
strings (litellm must know their provider), the keys those providers need, and the agent's
provider, whose calls must go through skillproxy and so must speak a wire format it serves.
A run folder remembers the plan it was started with (`fingerprint`), so resuming with other
settings is refused instead of mixing two experiments in one report.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DOMAINS = ("airline", "retail")
ARMS = ("baseline", "learned", "placebo", "noop")
DEFAULT_ARMS = ("baseline", "learned", "placebo")
AGENT_PROVIDERS = ("openai", "anthropic")
"""The agent's calls are proxied, so its provider must speak a format skillproxy forwards."""

SCRIPTED = {"agent": "scripted-agent", "user": "scripted-user", "reflector": "scripted-reflector"}
NOOP_MODEL = "noop"
"""The do-nothing agent: served by the scripted models' server in every run, real or not."""


def learns(arms: Sequence[str]) -> bool:
    """Whether these arms need the learning phase: the placebo arm is sized on the learned
    skills, so it needs it too."""
    return "learned" in arms or "placebo" in arms


class PlanError(ValueError):
    """The run cannot start as asked; the message names the fix, in one line."""


@dataclass(frozen=True)
class EvalPlan:
    domain: str
    out: Path
    agent_model: str
    user_model: str
    reflector_model: str
    scripted: bool
    arms: tuple[str, ...] = DEFAULT_ARMS
    trials: int = 4
    epochs: int = 1
    seed: int = 300
    review: bool = False
    max_cost: float | None = None
    concurrency: int = 4
    max_steps: int = 100
    task_limit: int | None = None
    resamples: int = 10_000

    @property
    def learns(self) -> bool:
        return learns(self.arms)

    def fingerprint(self) -> dict[str, Any]:
        """What must match for a run folder to be resumed: everything but how it is watched."""
        settings = asdict(self)
        for loose in ("out", "max_cost", "concurrency", "review", "resamples"):
            settings.pop(loose)
        settings["arms"] = sorted(self.arms)
        return settings

    def fingerprint_hash(self) -> str:
        text = json.dumps(self.fingerprint(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_arms(text: str) -> tuple[str, ...]:
    arms = tuple(dict.fromkeys(a.strip() for a in text.split(",") if a.strip()))
    unknown = [a for a in arms if a not in ARMS]
    if unknown or not arms:
        raise PlanError(
            f"unknown arm {', '.join(map(repr, unknown)) or '(none given)'}: choose from "
            f"{', '.join(ARMS)}, comma-separated (e.g. --arms baseline,learned,placebo)"
        )
    return arms


def make_plan(
    *,
    domain: str,
    out: str,
    agent_model: str | None,
    user_model: str | None,
    reflector_model: str | None,
    scripted: bool,
    arms: str,
    trials: int,
    epochs: int = 1,
    seed: int = 300,
    review: bool = False,
    max_cost: float | None = None,
    concurrency: int = 4,
    max_steps: int = 100,
    task_limit: int | None = None,
    resamples: int = 10_000,
    environ: Mapping[str, str] | None = None,
) -> EvalPlan:
    """The plan, or PlanError naming what to change. `environ` is where keys are looked for."""
    if domain not in DOMAINS:
        raise PlanError(f"unknown domain {domain!r}: choose --domain {' or '.join(DOMAINS)}")
    _positive(trials=trials, epochs=epochs, concurrency=concurrency, max_steps=max_steps)
    if task_limit is not None and task_limit < 1:
        raise PlanError("--tasks must be at least 1 (or left out for every task of the split)")
    if resamples < 100:
        raise PlanError("--resamples must be at least 100 (10,000 is the default)")
    if max_cost is not None and not max_cost > 0:
        raise PlanError("--max-cost must be a positive number of US dollars")
    chosen = parse_arms(arms)
    if scripted:
        given = [n for n, m in (("agent", agent_model), ("user", user_model),
                                ("reflector", reflector_model)) if m]  # fmt: skip
        if given:
            raise PlanError(
                f"--scripted uses scripted models; leave out --{given[0]}-model (or drop "
                "--scripted to use real ones)"
            )
        models = dict(SCRIPTED)
    else:
        models = _real_models(agent_model, user_model, reflector_model, chosen, environ)
        if max_cost is not None:
            _priced(models.values())
    if importlib.util.find_spec("matplotlib") is None:
        raise PlanError(
            "the report's plots need matplotlib: install skillproxy with its eval extra "
            "(pip install -e '.[eval]'; `make setup` does)"
        )
    return EvalPlan(
        domain=domain,
        out=Path(out).resolve(),
        agent_model=models["agent"],
        user_model=models["user"],
        reflector_model=models["reflector"],
        scripted=scripted,
        arms=chosen,
        trials=trials,
        epochs=epochs,
        seed=seed,
        review=review,
        max_cost=max_cost,
        concurrency=concurrency,
        max_steps=max_steps,
        task_limit=task_limit,
        resamples=resamples,
    )


def _positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise PlanError(f"--{name.replace('_', '-')} must be at least 1, not {value}")


def _real_models(
    agent: str | None,
    user: str | None,
    reflector: str | None,
    arms: Sequence[str],
    environ: Mapping[str, str] | None,
) -> dict[str, str]:
    needed = {"agent": agent, "user": user, "reflector": reflector}
    missing = [n for n, m in needed.items() if not m and (n != "reflector" or learns(arms))]
    if missing:
        raise PlanError(
            f"give --{missing[0]}-model (a litellm model string such as openai/gpt-4.1-mini), "
            "or --scripted to check the mechanics with scripted models"
        )
    models = {n: m for n, m in needed.items() if m}
    env = os.environ if environ is None else environ
    for role, model in models.items():
        provider = provider_of(model)
        if role == "agent" and provider not in AGENT_PROVIDERS:
            raise PlanError(
                f"the agent's calls go through skillproxy, which forwards the "
                f"{' and '.join(AGENT_PROVIDERS)} wire formats; {model!r} is a {provider} model: "
                "choose an openai/... or anthropic/... agent model"
            )
        if (key := missing_key(model, env)) is not None:
            raise PlanError(f"the {role} model {model!r} needs {key} in the environment")
    models.setdefault("reflector", "")
    return models


def _priced(models: Iterable[str]) -> None:
    """--max-cost counts spend from litellm's prices: a model it has none for would spend
    without counting (and is most often a typo)."""
    import litellm

    for model in filter(None, models):
        try:
            litellm.get_model_info(model)
        except Exception:
            raise PlanError(
                f"litellm has no price for {model!r}, so --max-cost could not count what it "
                "spends: check the name, or leave out --max-cost"
            ) from None


def provider_of(model: str) -> str:
    """litellm's provider for `model`; PlanError when litellm knows none."""
    import litellm  # the eval command only: never on the proxy's import path

    litellm.suppress_debug_info = True  # else it prints its provider list on every miss
    try:
        _, provider, _, _ = litellm.get_llm_provider(model)
    except Exception:
        raise PlanError(
            f"unknown model string {model!r}: litellm knows no provider for it; write it as "
            "provider/model, e.g. openai/gpt-4.1-mini or anthropic/claude-haiku-4-5"
        ) from None
    return str(provider)


def missing_key(model: str, environ: Mapping[str, str]) -> str | None:
    """The environment variable `model`'s provider reads its key from, when it is not set."""
    import litellm

    report = litellm.validate_environment(model=model)
    absent = [k for k in report.get("missing_keys", []) if not environ.get(k)]
    return absent[0] if absent else None
