"""One learner run over one skillbook: group, pick ready episodes, reflect, apply, account.

Each episode's outcome (skill changes, its new status, the reflection, the tokens and cost it
took) goes to the store as one unit of work, so a crash repeats at most the reflection in
flight and never applies anything twice. A lease keeps a second learner (another process,
another machine on the same database) off a skillbook while this one works. Caps on tokens
per run and per UTC day stop a run early; they are checked before each episode.

Nothing is lost to a bad hour. Each model call is retried with backoff (`learner.llm`); an
episode that still could not be reflected stays open with its attempts counted and is tried
again by a later run, until `learner.max_attempts`, when it is failed with its reason (an
outage and a malformed answer say which they were). A run in which every reflection failed
is itself `failed`, with the last reason, so `learn --once` can say so and exit non-zero.

With `privacy.learner` on (the default) nothing personal reaches the learner's model: each
episode's messages, threads and feedback are redacted (`core.redaction`: e-mail addresses,
phone, card and IBAN numbers, the operator's patterns) before either reflector sees them, the
recursive one's sandbox data included; `RunSummary.redactions` counts the replacements. Skill
texts are not personal and go as they are.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from core.config import Config
from core.formats.base import Message
from core.redaction import Counts, Redactor, redactor_for, total
from core.tokens import count_tokens
from learner.close_lessons import judge_close_pairs, similarity_for
from learner.episodes import EpisodeConversation, episode_conversation, group_new_traces
from learner.llm import Completion, LLMError, complete
from learner.manager import ACTOR, plan_reflection
from learner.patterns import KIND, MIN_EPISODES, find_patterns, plan_patterns
from learner.recursive import recursive_reflect
from learner.reflection import InvalidAnswer
from learner.reflector import ReflectionFailed, Spend, describe, reflect
from learner.sandbox import SandboxError
from learner.transcript import tools_of
from store.interfaces import Store
from store.records import Episode, Feedback, ProposeSkill, ReflectedEpisode, RunCounts

Ask = Callable[[list[dict[str, Any]]], Completion]
Progress = Callable[[int, int, str], None]


@dataclass
class RunSummary:
    skillbook: str
    run: int | None = None
    episodes: int = 0
    reflections: int = 0
    failures: int = 0
    skipped: int = 0
    proposals: int = 0
    merged: int = 0
    tags: int = 0
    llm_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    stopped: str | None = None
    deferred: int = 0
    """Episodes whose reflection failed this time and wait for a later run."""
    patterns: int = 0
    """Failures the cross-episode pass found recurring."""
    failure: str | None = None
    """The last reason a reflection failed, when one did."""
    refused: list[str] = field(default_factory=list)
    redactions: int = 0
    """Personal data replaced before the learner's model saw it (`privacy.learner`)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def owner_name() -> str:
    """Unique per learner run: two runs in one process (the schedule and an admin's run-now)
    must not share a lease."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def group_all(store: Store, config: Config, now: float | None = None) -> int:
    """Catch the episode grouping up with every settled trace; returns traces seen."""
    seen = 0
    while True:
        result = group_new_traces(store, settle_s=config.learner.settle_s, now=now)
        seen += result.traces_seen
        if result.traces_seen == 0:
            return seen


def run_skillbook(
    store: Store,
    config: Config,
    skillbook: str,
    *,
    ask: Ask | None = None,
    owner: str | None = None,
    progress: Progress | None = None,
    now: float | None = None,
) -> RunSummary:
    settings = config.learner
    ask = ask or (lambda messages: complete(settings, messages))
    owner = owner or owner_name()
    summary = RunSummary(skillbook)
    if not store.learner.acquire_lease(skillbook, owner, settings.lease_s):
        summary.stopped = "another learner holds this skillbook's lease"
        return summary
    try:
        ready = store.episodes.ready(
            skillbook, idle_s=settings.episode_idle_s, now=now, limit=settings.max_episodes_per_run
        )
        if not ready:
            summary.stopped = "no finished episodes"
            return summary
        summary.run = store.learner.start_run(skillbook)
        status = "done"
        try:
            _reflect_all(store, config, skillbook, ready, ask, summary, progress)
            if summary.reflections:
                _pattern_pass(store, config, skillbook, ask, summary)
            if summary.reflections == 0 and summary.failures + summary.deferred > 0:
                status = "failed"
                summary.stopped = summary.stopped or f"every reflection failed: {summary.failure}"
        except BaseException as exc:
            status, summary.stopped = "crashed", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            store.learner.finish_run(summary.run, status, summary.stopped)
    finally:
        store.learner.release_lease(skillbook, owner)
    return summary


def _reflect_all(
    store: Store,
    config: Config,
    skillbook: str,
    ready: list[Episode],
    ask: Ask,
    summary: RunSummary,
    progress: Progress | None,
) -> None:
    settings = config.learner
    auto_approve = _auto_approves(store, config, skillbook)
    similar, threshold = similarity_for(settings)  # once a run: the model loads once a process
    run = summary.run
    assert run is not None
    for index, row in enumerate(ready):
        if progress:
            progress(index, len(ready), row.id)
        stop = _cap_reached(store, config, summary)
        if stop:
            summary.stopped = stop
            break
        summary.episodes += 1
        if settings.signal_only and not row.signal and not _sampled(row.id, settings.sample_rest):
            reason = "no signal, not sampled"
            store.learner.close_episode(row.id, run, "skipped", reason, RunCounts(episodes=1))
            summary.skipped += 1
            continue
        episode = episode_conversation(store, row.id)
        if config.privacy.learner:
            found: Counts = {}
            episode = redact_episode(episode, redactor_for(config.privacy), found)
            summary.redactions += total(found)
        known = store.skills.find(skillbook)
        texts = {s.id: s.content for s in known}
        in_effect = {sid: texts[sid] for sid in episode.skill_ids if sid in texts}
        spend = Spend()
        try:
            tools = tools_of(trace.request_json for trace in store.episodes.traces(row.id))
            if settings.recursive and _long(episode, settings.recursive_threshold_tokens):
                reflection = recursive_reflect(
                    ask, episode, in_effect, settings, spend, tools=tools
                )
            else:
                reflection = reflect(
                    ask,
                    episode,
                    in_effect,
                    settings.max_context_tokens,
                    spend,
                    tools=tools,
                    max_lessons=settings.max_lessons_per_episode,
                )
        except (ReflectionFailed, LLMError, SandboxError) as exc:
            reason = f"{_failure_kind(exc)}: {exc}"[:500]
            counts = _spent(spend, summary, episodes=1, failures=1)
            now_status = store.learner.defer_episode(
                row.id, run, reason, counts, max_attempts=settings.max_attempts
            )
            summary.failure = reason
            if now_status == "failed":
                summary.failures += 1
            else:
                summary.deferred += 1
            continue
        verdicts = judge_close_pairs(ask, settings, reflection, known, similar, threshold, spend)
        plan = plan_reflection(
            reflection,
            episode,
            known,
            auto_approve=auto_approve,
            threshold=threshold,
            verdicts=verdicts,
            similar=similar.most_similar,
            max_lessons=settings.max_lessons_per_episode,
        )
        counts = _spent(
            spend,
            summary,
            episodes=1,
            reflections=1,
            proposals=plan.proposals,
            merged=plan.merged,
            tags=plan.tags,
        )
        store.learner.commit_reflection(
            ReflectedEpisode(
                row.id, skillbook, run, ACTOR, plan.operations, describe(reflection), counts
            )
        )
        summary.reflections += 1
        summary.proposals += plan.proposals
        summary.merged += plan.merged
        summary.tags += plan.tags
        summary.refused += plan.refused
    if progress:
        progress(len(ready), len(ready), "")


def redact_episode(
    episode: EpisodeConversation, redactor: Redactor, counts: Counts
) -> EpisodeConversation:
    """The episode as the learner's model may see it: every text a user, the agent, a tool or
    a feedback comment wrote, redacted (`counts` says of what); roles and ids untouched. A text
    met again (`threads` repeat the messages) is redacted once and counted once."""
    if not redactor.active:
        return episode
    done: dict[str, str] = {}

    def text(value: str) -> str:
        if value not in done:
            done[value] = redactor.text(value, counts)
        return done[value]

    def message(m: Message) -> Message:
        calls = tuple(replace(c, arguments=text(c.arguments)) for c in m.tool_calls)
        return replace(m, content=text(m.content), tool_calls=calls)

    def feedback(f: Feedback) -> Feedback:
        comment = text(f.comment) if f.comment else f.comment
        session = text(f.session_id) if f.session_id else f.session_id
        return replace(f, comment=comment, session_id=session)

    return replace(
        episode,
        messages=[message(m) for m in episode.messages],
        threads=[[message(m) for m in thread] for thread in episode.threads],
        feedback=[feedback(f) for f in episode.feedback],
    )


def _spent(spend: Spend, summary: RunSummary, **counts: int) -> RunCounts:
    """The run counters one episode adds, its LLM spend included; the spend is counted into
    `summary` here (the caller counts the rest once the store has them)."""
    summary.llm_calls += spend.calls
    summary.input_tokens += spend.input_tokens
    summary.output_tokens += spend.output_tokens
    summary.cost_usd += spend.cost_usd
    return RunCounts(
        llm_calls=spend.calls,
        input_tokens=spend.input_tokens,
        output_tokens=spend.output_tokens,
        cost_usd=spend.cost_usd,
        **counts,
    )


def _pattern_pass(
    store: Store, config: Config, skillbook: str, ask: Ask, summary: RunSummary
) -> None:
    """Every `pattern_every` new reflections, look across the last `pattern_window` for a
    failure that recurs (`learner.patterns`). Its failure costs this run nothing else: it is
    logged in the summary and tried again after the next reflections."""
    settings = config.learner
    if not settings.pattern_every or _cap_reached(store, config, summary):
        return
    recent = store.learner.recent_reflections(skillbook, limit=settings.pattern_window)
    if len(recent) < MIN_EPISODES:
        return
    upto = recent[-1].reflection.seq
    fresh = sum(1 for r in recent if r.reflection.seq > store.learner.mark(skillbook, KIND))
    if fresh < settings.pattern_every:
        return
    spend = Spend()
    try:
        patterns = find_patterns(ask, recent, spend)
    except (InvalidAnswer, LLMError) as exc:
        summary.refused.append(f"pattern pass: {exc}")
        patterns = []
    similar, threshold = similarity_for(settings)
    operations = plan_patterns(
        patterns,
        recent,
        store.skills.find(skillbook),
        auto_approve=_auto_approves(store, config, skillbook),
        threshold=threshold,
        similar=similar.most_similar,
    )
    proposals = sum(isinstance(op, ProposeSkill) for op in operations)
    counts = _spent(spend, summary, proposals=proposals)
    assert summary.run is not None
    store.learner.commit_pass(skillbook, summary.run, KIND, upto, operations, counts, actor=ACTOR)
    summary.proposals += proposals
    summary.patterns += len(patterns)


def _auto_approves(store: Store, config: Config, skillbook: str) -> bool:
    """The skillbook's own auto-approve setting, else the configured default."""
    own = store.skillbooks.get(skillbook).settings.auto_approve
    return config.skillbook.auto_approve if own is None else bool(own)


def _failure_kind(exc: Exception) -> str:
    """An outage is not the model's fault and will pass; a malformed answer may not."""
    if isinstance(exc, LLMError):
        return "model unreachable"
    if isinstance(exc, ReflectionFailed):
        return "malformed answer"
    return "sandbox failed"


def _cap_reached(store: Store, config: Config, summary: RunSummary) -> str | None:
    settings = config.learner
    spent = summary.input_tokens + summary.output_tokens
    if settings.run_token_cap and spent >= settings.run_token_cap:
        return f"run token cap reached ({spent} >= {settings.run_token_cap})"
    if settings.daily_token_cap:
        midnight = time.time() - time.time() % 86400
        today = store.learner.tokens_since(midnight)
        if today >= settings.daily_token_cap:
            return f"daily token cap reached ({today} >= {settings.daily_token_cap})"
    return None


def _long(episode: EpisodeConversation, threshold: int) -> bool:
    text = "\n".join(message.content for message in episode.messages)
    # a token is at least one character: short texts need no tokenizer
    return len(text) > threshold and count_tokens(text, "cl100k_base") > threshold


def _sampled(episode_id: str, rate: float) -> bool:
    """Deterministic: the same episode is always in or out of the sample."""
    digest = hashlib.blake2b(episode_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rate


def skillbooks_with_ready_episodes(
    store: Store, config: Config, now: float | None = None
) -> dict[str, int]:
    settings = config.learner
    counts: dict[str, int] = {}
    for book in store.skillbooks.list_all():
        ready = store.episodes.ready(
            book.name, idle_s=settings.episode_idle_s, now=now, limit=settings.max_episodes_per_run
        )
        if ready:
            counts[book.name] = len(ready)
    return counts
