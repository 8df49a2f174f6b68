"""One evaluation, phase by phase: learn on the train split, freeze, test every arm, report.

Skillbooks in the run's store: `train` (where learning happens), `learned` (a frozen copy of
what was approved), `placebo` (as many irrelevant skills, frozen), `baseline` (injection off)
and, for `noop`, none: the do-nothing agent is called directly. Each simulation is its own
session (`{phase}:{task}:{trial}`) and posts its τ² reward as feedback when it ends.

Everything a phase finishes is on disk in the run folder before the next starts (the results
files line by line, `state.json` per phase), so an interrupted run resumes where it stopped and
never repeats a finished simulation; the plan's fingerprint must match to resume.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from skillproxy.admin_client import AdminClient
from skillproxy.eval import services
from skillproxy.eval.checks import Phase, run_checks
from skillproxy.eval.fixture import (
    Domain,
    read_results,
    run_simulations,
    tau2_metrics,
)
from skillproxy.eval.placebo import placebo_for
from skillproxy.eval.plan import NOOP_MODEL, EvalPlan, PlanError, provider_of
from skillproxy.eval.report import ArmResult, build_report, write_report

ARM_SKILLBOOK = {"baseline": "baseline", "learned": "learned", "placebo": "placebo"}
INJECTION_OFF = {"X-Skillproxy-Inject": "off"}
SCRIPTED_KEY = "scripted"
OPENAI_UPSTREAM = "https://api.openai.com/v1"
ANTHROPIC_UPSTREAM = "https://api.anthropic.com"
COMPARISONS = (("learned", "placebo"), ("learned", "baseline"), ("placebo", "baseline"),
               ("baseline", "noop"), ("learned", "noop"))  # fmt: skip


class CostCapReached(Exception):
    """The run stopped at `--max-cost`; what is finished stays in the run folder."""


class PhaseFailed(RuntimeError):
    """Simulations or the learner failed; the message says which and how to go on."""


class ReviewInterrupted(Exception):
    """The person reviewing the proposals stopped the run (Ctrl-C); resume to go on."""


class Harness:
    def __init__(self, plan: EvalPlan, domain: Domain, say: Callable[[str], None]) -> None:
        self.plan, self.domain, self.say = plan, domain, say
        self.out = plan.out
        self.state_path = self.out / "state.json"
        self.state: dict[str, Any] = {}
        self.proxy_url = ""
        self.scripted_url = ""
        self._spent_so_far = 0.0

    # the whole run

    def run(self) -> dict[str, Any]:
        self.out.mkdir(parents=True, exist_ok=True)
        self._load_state()
        with self._services():
            if self.plan.learns:
                for epoch in range(1, self.plan.epochs + 1):
                    self._learn_epoch(epoch)
                self._freeze_learned()
                if "placebo" in self.plan.arms:
                    self._make_placebo()
            if "baseline" in self.plan.arms:
                self._ensure_skillbook("baseline")
            for arm in self.plan.arms:
                self._simulate(f"test-{arm}", self._tasks("test"), arm)
            report = self._report()
        paths = write_report(self.out, report)
        self.say("report: " + ", ".join(str(p) for p in paths))
        failed = {n: c["detail"] for n, c in report["checks"].items() if not c["passed"]}
        for name, detail in failed.items():
            self.say(f"check failed: {name}: {detail}")
        if failed and self.plan.scripted:
            raise PhaseFailed(f"the scripted run's checks failed: {', '.join(failed)}")
        return report

    # state and resume

    def _load_state(self) -> None:
        fingerprint = self.plan.fingerprint()
        if self.state_path.exists():
            self.state = json.loads(self.state_path.read_text())
            if self.state.get("fingerprint") != fingerprint:
                raise PlanError(
                    f"{self.out} holds a run with other settings "
                    f"({_differences(self.state.get('fingerprint', {}), fingerprint)}); "
                    "resume it with the same ones, or choose another --out"
                )
            self.say(f"resuming the run in {self.out}")
        else:
            self.state = {"fingerprint": fingerprint, "done": []}
            self._save_state()

    def _save_state(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2))
        os.replace(tmp, self.state_path)

    def _done(self, step: str) -> bool:
        return step in self.state["done"]

    def _mark(self, step: str, **facts: Any) -> None:
        self.state["done"].append(step)
        self.state.update(facts)
        self._save_state()

    # the processes

    @contextmanager
    def _services(self) -> Iterator[None]:
        started: list[services.Service] = []
        try:
            needs_scripted = self.plan.scripted or "noop" in self.plan.arms
            if needs_scripted:
                port = services.free_port()
                started.append(
                    services.start_scripted(
                        self.out, self.domain.name, self.domain.tasks_path, port
                    )
                )
                self.scripted_url = f"http://127.0.0.1:{port}"
            port = services.free_port()
            self.config_path = self.out / "eval.toml"
            services.write_config(self.config_path, self._proxy_config(port))
            started.append(services.start_proxy(self.out, self.config_path, port))
            self.proxy_url = f"http://127.0.0.1:{port}"
            yield
        finally:
            for service in reversed(started):
                service.stop()

    def _proxy_config(self, port: int) -> dict[str, dict[str, Any]]:
        scripted = self.plan.scripted
        return services.proxy_config(
            self.out,
            port,
            openai_upstream=f"{self.scripted_url}/v1" if scripted else OPENAI_UPSTREAM,
            anthropic_upstream=ANTHROPIC_UPSTREAM,
            learner_model=_litellm_name(self.plan.reflector_model, scripted),
            learner_api_base=f"{self.scripted_url}/v1" if scripted else "",
            learner_key_env=services.SCRIPTED_KEY_ENV if scripted else "",
        )

    def _admin(self) -> AdminClient:
        return services.admin(self.proxy_url)

    # learning

    def _learn_epoch(self, epoch: int) -> None:
        phase = f"train-e{epoch}"
        self._simulate(phase, self._tasks("train"), "train")
        if not self._done(f"{phase}:learned"):
            self._check_cap(f"{phase}'s learning")
            services.wait_for_traces(self.proxy_url)
            self.say(f"[{phase}] the learner reflects on the train conversations")
            env = dict(os.environ, **{services.SCRIPTED_KEY_ENV: SCRIPTED_KEY})
            status = services.run_learner(self.out, self.config_path, "train", env)
            if status != 0:
                raise PhaseFailed(
                    f"the learner failed on {phase} (exit {status}; see "
                    f"{self.out / 'learn.log'}); run the same command to try it again"
                )
            self._mark(f"{phase}:learned")
        if not self._done(f"{phase}:approved"):
            approved = self._review(phase) if self.plan.review else self._approve_all(phase)
            self._mark(f"{phase}:approved", **{f"{phase}_approved": approved})

    def _pending(self) -> list[dict[str, Any]]:
        with self._admin() as admin:
            return admin.list_skills("train", status="pending")

    def _approve_all(self, phase: str) -> list[str]:
        ids = [s["id"] for s in self._pending()]
        if ids:
            with self._admin() as admin:
                admin.bulk("train", ids, "approve")
        self.say(f"[{phase}] approved {len(ids)} proposed skills automatically")
        return ids

    def _active(self) -> list[str]:
        with self._admin() as admin:
            return [s["id"] for s in admin.list_skills("train", status="active")]

    def _review(self, phase: str) -> list[str]:
        before = set(self._active())
        pending = self._pending()
        if not pending:
            self.say(f"[{phase}] the learner proposed nothing to review")
            return []
        self.say(
            f"[{phase}] {len(pending)} proposed skills wait for your review: open "
            f"{self.proxy_url}/ui/ (skillbook train) or run `skillproxy skills list train "
            f"--status pending --url {self.proxy_url}` and approve or reject each; the run goes "
            "on when none is pending"
        )
        try:
            while pending := self._pending():
                time.sleep(2)
        except KeyboardInterrupt:
            raise ReviewInterrupted("stopped while waiting for the review") from None
        approved = [i for i in self._active() if i not in before]
        self.say(f"[{phase}] reviewed: {len(approved)} approved")
        return approved

    def _freeze_learned(self) -> None:
        if self._done("frozen"):
            return
        with self._admin() as admin:
            if "learned" not in {b["name"] for b in admin.list_skillbooks()}:
                admin.copy_skillbook("train", "learned")
            admin.update_settings("learned", {"frozen": True})
            prompt = admin.prompt("learned")
        self.say(f"froze {len(prompt['skill_ids'])} learned skills ({prompt['tokens']} tokens)")
        if not prompt["skill_ids"]:
            self.say(
                "warning: no skill was approved, so the learned and placebo arms are the "
                "baseline with nothing injected; the comparison can only show no difference"
            )
        self._mark("frozen", learned_ids=prompt["skill_ids"], learned_tokens=prompt["tokens"])

    def _make_placebo(self) -> None:
        if self._done("placebo"):
            return
        with self._admin() as admin:
            texts = [admin.get_skill(i)["content"] for i in self.state["learned_ids"]]
            placebo = placebo_for(self.domain.name, self.domain.policy_path, texts, self.plan.seed)
            self._ensure_skillbook("placebo")
            admin.update_settings("placebo", {"frozen": False})  # a crash may have frozen it
            for existing in admin.list_skills("placebo"):
                admin.delete_skill(existing["id"])  # a half-made placebo from a crash
            ids = [admin.create_skill("placebo", "placebo", t)["id"] for t in placebo.texts]
            if ids:
                admin.bulk("placebo", ids, "approve")
            admin.update_settings("placebo", {"frozen": True})
            prompt = admin.prompt("placebo")
        self.say(
            f"placebo: {len(ids)} skills from {placebo.source}, {prompt['tokens']} tokens "
            f"(learned: {self.state['learned_tokens']})"
        )
        self._mark("placebo", placebo_ids=prompt["skill_ids"], placebo_tokens=prompt["tokens"])

    def _ensure_skillbook(self, name: str) -> None:
        with self._admin() as admin:
            if name not in {b["name"] for b in admin.list_skillbooks()}:
                admin.update_settings(name, {})  # creates it, empty

    # simulations

    def _tasks(self, split: str) -> list[str]:
        tasks = list(self.domain.splits[split])
        return tasks[: self.plan.task_limit] if self.plan.task_limit else tasks

    def results_path(self, phase: str) -> Path:
        return self.out / "results" / f"{phase}.jsonl"

    def _simulate(self, phase: str, tasks: list[str], arm: str) -> None:
        out = self.results_path(phase)
        total = len(tasks) * self.plan.trials
        if sum(1 for r in read_results(out) if not r.get("error")) >= total:
            return
        out.parent.mkdir(exist_ok=True)
        self._spent_so_far = self._spent()
        trials = self.plan.trials
        self.say(f"[{phase}] {total} simulations ({len(tasks)} tasks, {trials} trials each)")
        self._check_cap(phase)
        run_simulations(
            self._spec(phase, tasks, arm, out),
            self.out / "specs" / f"{phase}.json",
            lambda p: self._progress(phase, p),
            self.out / "tau2.log",
        )
        failed = [r for r in read_results(out) if r.get("error")]
        if failed:
            raise PhaseFailed(
                f"{len(failed)} of {total} simulations of {phase} failed (the first: "
                f"{failed[0]['error']}); they are not scored as the agent's failures: fix the "
                "cause and run the same command, which runs only those again"
            )

    def _spec(self, phase: str, tasks: list[str], arm: str, out: Path) -> dict[str, Any]:
        (self.out / "specs").mkdir(exist_ok=True)
        scripted = self.plan.scripted
        user_args: dict[str, Any] = {"temperature": 0}
        if scripted:
            user_args |= {"api_base": f"{self.scripted_url}/v1", "api_key": SCRIPTED_KEY}
        if arm == "noop":
            agent_model = f"openai/{NOOP_MODEL}"
            agent_args: dict[str, Any] = {"api_base": f"{self.scripted_url}/v1",
                                          "api_key": SCRIPTED_KEY, "temperature": 0}  # fmt: skip
            headers: dict[str, str] = {}
            feedback = None
        else:
            book = "train" if arm == "train" else ARM_SKILLBOOK[arm]
            agent_model = _litellm_name(self.plan.agent_model, scripted)
            agent_args = {"api_base": self._agent_base(book, agent_model), "temperature": 0}
            if scripted:
                agent_args["api_key"] = SCRIPTED_KEY
            headers = dict(INJECTION_OFF) if arm == "baseline" else {}
            feedback = f"{self.proxy_url}/sb/{book}/v1/feedback"
        return {
            "domain": self.domain.name,
            "tasks": tasks,
            "trials": self.plan.trials,
            "seed": self.plan.seed,
            "max_steps": self.plan.max_steps,
            "max_errors": 10,
            "max_concurrency": self.plan.concurrency,
            "processes": os.cpu_count() or 1,
            "agent": {"model": agent_model, "llm_args": agent_args},
            "user": {"model": _litellm_name(self.plan.user_model, scripted), "llm_args": user_args},
            "headers": headers,
            "session_prefix": phase,
            "feedback_url": feedback,
            "out": str(out),
        }

    def _agent_base(self, book: str, model: str) -> str:
        """litellm adds `/v1/messages` to an Anthropic base and `/chat/completions` to an
        OpenAI one, so the skillbook's path prefix is given in each provider's own shape."""
        base = f"{self.proxy_url}/sb/{book}"
        return base if provider_of(model) == "anthropic" else f"{base}/v1"

    def _progress(self, phase: str, progress: dict[str, Any]) -> None:
        self._spent_so_far += _cost(progress)
        spent = self._spent_so_far
        self.say(
            f"[{phase}] {progress['done']}/{progress['total']} simulations · spend so far "
            f"${spent:.4f}"
        )
        if self.plan.max_cost is not None and spent >= self.plan.max_cost:
            raise CostCapReached(
                f"spend ${spent:.4f} reached --max-cost ${self.plan.max_cost:g} during {phase}; "
                f"what finished is kept in {self.out}: run the same command with a higher "
                "--max-cost to resume"
            )

    def _check_cap(self, what: str) -> None:
        """Before a phase or a learner run: a resumed run already over the cap stops here."""
        if self.plan.max_cost is not None and (spent := self._spent()) >= self.plan.max_cost:
            raise CostCapReached(
                f"spend ${spent:.4f} has reached --max-cost ${self.plan.max_cost:g} before "
                f"{what}; what finished is kept in {self.out}: run the same command with a "
                "higher --max-cost to go on"
            )

    def _spent(self) -> float:
        """Dollars spent so far: every finished simulation, and the learner's runs."""
        total = self._learner_spend()
        for path in (self.out / "results").glob("*.jsonl"):
            total += sum(_cost(r) for r in read_results(path))
        return total

    def _learner_spend(self) -> float:
        if not self.proxy_url:
            return 0.0
        with self._admin() as admin:
            runs = admin.learner_runs("train", limit=500)
        return sum(float(r.get("cost_usd") or 0.0) for r in runs)

    # the report

    def _report(self) -> dict[str, Any]:
        arms = {}
        tau2_values = {}
        for arm in self.plan.arms:
            path = self.results_path(f"test-{arm}")
            rows = read_results(path)
            rewards: dict[str, list[float]] = {}
            for row in sorted(rows, key=lambda r: (r["task_id"], r["trial"])):
                rewards.setdefault(str(row["task_id"]), []).append(float(row["reward"]))
            arms[arm] = ArmResult(
                rewards=rewards,
                tokens=sum(int(r.get("agent_tokens") or 0) for r in rows),
                cost_usd=sum(_cost(r) for r in rows),
                user_tokens=sum(int(r.get("user_tokens") or 0) for r in rows),
            )
            metrics = tau2_metrics(path, self.plan.trials)
            tau2_values[arm] = {int(k): float(v) for k, v in metrics["pass_hat_k"].items()}
        learning = self._learning()
        report = build_report(
            models={
                "agent": self.plan.agent_model,
                "user": self.plan.user_model,
                "reflector": self.plan.reflector_model,
                "scripted": self.plan.scripted,
            },
            domain=self.domain.name,
            split="test",
            arms=arms,
            learning=learning,
            comparisons=[c for c in COMPARISONS if c[0] in arms and c[1] in arms],
            tau2_pass_hat_k=tau2_values,
            resamples=self.plan.resamples,
            seed=self.plan.seed,
        )
        report["fixture"] = {"tau2_version": self.domain.version, "seed": self.plan.seed}
        evidence = {s["id"]: s["evidence"] for s in learning["skills"]}
        with self._admin() as admin:
            report["checks"] = run_checks(admin, self._phases(), self.plan.trials, evidence)
        return report

    def _phases(self) -> list[Phase]:
        """Every phase that ran, with the skills each test arm's requests had to carry."""
        phases = []
        if self.plan.learns:
            for epoch in range(1, self.plan.epochs + 1):
                rows = read_results(self.results_path(f"train-e{epoch}"))
                phases.append(Phase(f"train-e{epoch}", "train", self._tasks("train"), rows))
        carried = {
            "baseline": frozenset(),
            "learned": frozenset(self.state.get("learned_ids", [])),
            "placebo": frozenset(self.state.get("placebo_ids", [])),
        }
        for arm in self.plan.arms:
            rows = read_results(self.results_path(f"test-{arm}"))
            book = ARM_SKILLBOOK.get(arm)
            phases.append(Phase(f"test-{arm}", book, self._tasks("test"), rows, carried.get(arm)))
        return phases

    def _learning(self) -> dict[str, Any]:
        if not self.plan.learns:
            return {"episodes": 0, "skills": [], "tokens": 0, "cost_usd": 0.0}
        with self._admin() as admin:
            runs = admin.learner_runs("train", limit=500)
            skills = []
            for skill_id in self.state["learned_ids"]:
                copy = admin.get_skill(skill_id)
                source = admin.get_skill(copy["origin"]) if copy.get("origin") else copy
                skills.append(
                    {
                        "id": skill_id,
                        "learned_as": source["id"],
                        "text": copy["content"],
                        "evidence": [e["trace_id"] for e in source.get("evidence", [])],
                    }
                )
        return {
            "episodes": sum(int(r["episodes"]) for r in runs),
            "skills": skills,
            "tokens": sum(int(r["input_tokens"]) + int(r["output_tokens"]) for r in runs),
            "cost_usd": sum(float(r.get("cost_usd") or 0.0) for r in runs),
            "placebo_tokens": self.state.get("placebo_tokens"),
            "learned_tokens": self.state.get("learned_tokens"),
        }


def _litellm_name(model: str, scripted: bool) -> str:
    return f"openai/{model}" if scripted else model


def _cost(row: dict[str, Any]) -> float:
    return float(row.get("agent_cost") or 0.0) + float(row.get("user_cost") or 0.0)


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return ", ".join(f"{k}: {old.get(k)!r} then, {new.get(k)!r} now" for k in changed)
