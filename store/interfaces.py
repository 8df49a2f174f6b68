"""What a store backend provides: one repository per area, typed records in and out.

`proxy/`, `learner/` and the admin API are written against these protocols only, so a second
engine (PostgreSQL, for several proxies sharing one store) is a new package beside
`store/sqlite/` that implements them, with no change above the store. Every method is one
unit of work: it commits everything it changes or nothing, and callers never open
transactions of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from store.records import (
    ActivityBucket,
    BulkResult,
    Canary,
    CanaryRules,
    CanarySession,
    Cursor,
    DailySkills,
    DailySpend,
    Episode,
    EpisodeDetail,
    Evidence,
    Feedback,
    FrozenSet,
    GroupingPlan,
    GroupingTrace,
    ImportedConversation,
    ImportedTrace,
    ImportSummary,
    LearnerRun,
    LearnerTotals,
    NewFeedback,
    RecentReflection,
    ReflectedEpisode,
    RefusedProposal,
    RunCounts,
    Skill,
    Skillbook,
    SkillbookEvent,
    SkillDetail,
    SkillEvent,
    SkillOperation,
    SkillOutcome,
    Status,
    StoredReflection,
    Tag,
    Trace,
    TraceSummary,
    TrafficSpend,
    Waiting,
)


class TraceRepository(Protocol):
    def insert_values(self, values: Sequence[tuple[Any, ...]]) -> None:
        """Rows in `store.columns.PRICED_COLUMNS` order (the sink's, with their cost) or in
        `TRACE_COLUMNS` order (cost NULL), one length per call; all or none; a row already
        stored is skipped (the trace sink retries a batch whole)."""

    def import_conversations(
        self,
        skillbook: str,
        conversations: Sequence[ImportedConversation],
        *,
        settle_s: float,
    ) -> list[bool]:
        """Each conversation's turns as 200 traces of `skillbook` sharing its session, marked
        with its source, and its score or label as session feedback; True for each stored,
        False for each whose source id the skillbook already imported. All or none. Placed at
        the commit's time less `settle_s` (as far back as grouping may not yet have read)
        and past the grouping cursor, so grouping sees them on its next pass."""
        ...

    def imported(self, skillbook: str, *, limit: int = 1000) -> list[ImportedTrace]:
        """The skillbook's imported traces, oldest first."""
        ...

    def get(self, trace_id: str) -> Trace | None: ...

    def newest(
        self,
        *,
        skillbook: str | None = None,
        limit: int = 50,
        before: float | None = None,
        after: float | None = None,
        outcome: str | None = None,
        model: str | None = None,
        session_id: str | None = None,
    ) -> list[TraceSummary]:
        """Newest first; page with `before` = the last row's `created_at`. `outcome` is `ok`
        (under 400, no error) or `error`."""
        ...

    def count(self) -> int: ...

    def activity(
        self, *, skillbook: str | None, since: float, bucket_s: int
    ) -> list[ActivityBucket]:
        """Requests, errors and known cost per bucket since `since`, oldest first (empty ones
        left out)."""
        ...

    def spend(self, skillbook: str, *, since: float) -> TrafficSpend:
        """The skillbook's traffic and its known cost per UTC day since `since`, and the
        totals; traces without a cost (unknown price or usage) are counted, not summed."""
        ...

    def exists(self, trace_id: str) -> bool: ...

    def session_exists(self, session_id: str) -> bool:
        """A trace or an episode carries this session id."""
        ...

    def skillbook_of(self, trace_id: str) -> str | None:
        """The skillbook a stored trace belongs to; None when there is no such trace."""
        ...

    def session_skillbooks(self, session_id: str) -> list[str]:
        """The skillbooks whose traces or episodes carry this session id, sorted."""
        ...


class SkillbookRepository(Protocol):
    def ensure(self, name: str, *, by: str = "admin", actor: str = "admin") -> bool:
        """Create `name` if new, recording who (`by`: admin, traffic...); True if it was."""
        ...

    def versions(self) -> dict[str, int]:
        """Every skillbook's version: a cache re-renders only those whose number moved."""
        ...

    def get(self, name: str) -> Skillbook:
        """Deleted ones too (their `deleted_at` is set)."""
        ...

    def list_all(self, *, deleted: bool = False) -> list[Skillbook]:
        """Live skillbooks by name; `deleted=True` lists the deleted ones instead."""
        ...

    def update_settings(
        self, name: str, changes: dict[str, Any], *, actor: str = "admin"
    ) -> Skillbook:
        """`None` returns a setting to the configured default; unknown keys are refused."""
        ...

    def freeze(
        self,
        name: str,
        *,
        actor: str,
        default_budget: int,
        default_ranking: str,
        active: Callable[[], list[Skill]],
    ) -> Skillbook:
        """Keep injecting what `name` injects now until `unfreeze`, whatever changes."""
        ...

    def unfreeze(self, name: str, *, actor: str) -> Skillbook: ...

    def frozen_set(self, name: str) -> FrozenSet | None:
        """What a frozen skillbook injects; None while it is not frozen."""
        ...

    def delete(self, name: str, *, actor: str) -> Skillbook:
        """Soft: it injects nothing and leaves listings; its skills are kept as they are."""
        ...

    def restore(self, name: str, *, actor: str) -> Skillbook: ...

    def history(self, name: str) -> list[SkillbookEvent]: ...


class SkillRepository(Protocol):
    def create(
        self,
        skillbook: str,
        section: str,
        content: str,
        *,
        actor: str,
        status: Status = "pending",
        evidence: Iterable[tuple[str, str]] = (),
        supersedes: str | None = None,
    ) -> SkillDetail:
        """`evidence` is (trace id, reason) pairs; `supersedes` the skill this one rewords."""
        ...

    def get(self, skill_id: str) -> SkillDetail: ...

    def find(
        self,
        skillbook: str,
        *,
        status: str | None = None,
        section: str | None = None,
        text: str | None = None,
        deleted: bool = False,
        newest_first: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Skill]:
        """Skills not deleted (`deleted=True`: only the deleted ones), oldest first unless
        `newest_first`; all of them, or a page of `limit` from `offset`."""
        ...

    def active(self, skillbook: str) -> list[Skill]: ...

    def transition(
        self, skill_id: str, action: str, *, actor: str, note: str | None = None
    ) -> SkillDetail:
        """One of `store.rules.ACTIONS`, by `store.rules.TRANSITIONS`; `note` goes into the
        history with it."""
        ...

    def bulk(
        self, skillbook: str, ids: list[str], action: str, *, actor: str, note: str | None = None
    ) -> BulkResult:
        """`action` on every id or on none (`BulkRefused` says why, per id)."""
        ...

    def delete(self, skill_id: str, *, actor: str) -> SkillDetail:
        """Soft: hidden and never injected until `transition(..., "restore")`."""
        ...

    def edit(
        self,
        skill_id: str,
        *,
        actor: str,
        content: str | None = None,
        section: str | None = None,
    ) -> SkillDetail: ...

    def rollback(self, skill_id: str, revision: int, *, actor: str) -> SkillDetail: ...

    def tag(
        self, skill_id: str, tag: Tag, *, actor: str, trace_id: str | None = None, reason: str = ""
    ) -> SkillDetail: ...

    def evidence(self, skill_id: str) -> list[Evidence]: ...

    def history(self, skill_id: str) -> list[SkillEvent]: ...

    def by_day(self, skillbook: str, *, since: float) -> list[DailySkills]:
        """Per UTC day: skills proposed, approved, archived or deleted."""
        ...

    def outcomes(self, skill_id: str) -> SkillOutcome:
        """Episodes it was injected into against comparable ones, with their feedback."""
        ...


class CanaryRepository(Protocol):
    """Canary rollouts of skills and each skillbook's rules for them (`store.canary_rules`)."""

    def rules(self, skillbook: str) -> CanaryRules:
        """The skillbook's own rules (None: the default); `NotFound` for an unknown one."""
        ...

    def update_rules(
        self, skillbook: str, changes: dict[str, Any], *, actor: str = "admin"
    ) -> CanaryRules:
        """`None` returns a rule to its default; unknown rules and bad values are refused;
        `NotFound` for an unknown skillbook (rules never create one)."""
        ...

    def start(self, skill_id: str, share: float, *, actor: str, note: str | None = None) -> Canary:
        """Inject a pending or active skill into `share` percent of sessions only."""
        ...

    def stop(self, skill_id: str, *, actor: str, note: str | None = None) -> Canary:
        """End its running canary, leaving the skill as it was before the canary."""
        ...

    def latest(self, skill_id: str) -> Canary | None: ...

    def get(self, seq: int) -> Canary: ...

    def running(self, skillbook: str | None = None) -> list[Canary]: ...

    def running_skills(self, skillbook: str) -> list[tuple[Canary, Skill]]: ...

    def beside(self, canary: Canary) -> list[Canary]:
        """Other canaries of its skillbook whose run overlapped its own."""
        ...

    def sessions(self, seq: int) -> list[CanarySession]:
        """The conversations canary `seq` is judged on, by arm, with their feedback."""
        ...

    def feedback_mark(self) -> tuple[int, int, float]:
        """The newest feedback and canary seqs and the latest change of canary rules, so a
        watcher re-reads only when one moved."""
        ...

    def books_with_feedback_after(self, seq: int) -> set[str]:
        """Skillbooks that got feedback past the seq `seq`: the ones whose canaries moved."""
        ...

    def decide(
        self, seq: int, action: str, verdict: str, *, actor: str, detail: dict[str, Any]
    ) -> bool:
        """`promote`, `withdraw` or `notify` a running canary's verdict, into the skill's
        history with `detail`; False when there was nothing to do."""
        ...


class TransferRepository(Protocol):
    def export_json(self, name: str) -> dict[str, Any]:
        """The `skillproxy.skillbook/1` document: a file format, so plain JSON."""
        ...

    def export_markdown(self, name: str) -> str: ...

    def import_json(
        self, name: str, document: object, *, actor: str, mode: str = "merge"
    ) -> ImportSummary: ...

    def copy(self, source: str, target: str, *, actor: str) -> ImportSummary:
        """A new skillbook `target` holding all of `source` under new skill ids."""
        ...


class EpisodeRepository(Protocol):
    """Traces grouped into conversations; the grouping rules are the learner's."""

    def cursor(self) -> Cursor | None: ...

    def traces_after(
        self, cursor: Cursor | None, *, horizon: float, limit: int
    ) -> list[GroupingTrace]:
        """Traces past `cursor` created before `horizon`, in (created_at, id) order."""
        ...

    def heads(self, skillbook: str, keys: Iterable[str]) -> dict[str, str]:
        """Conversation-head key -> episode id, for the keys that are stored."""
        ...

    def sessions(self, skillbook: str, keys: Iterable[str]) -> dict[str, str]:
        """Session key -> episode id, for the keys that have an episode."""
        ...

    def negatively_rated(
        self, trace_ids: Iterable[str], session_keys: Iterable[str]
    ) -> tuple[set[str], set[tuple[str, str]]]:
        """Of these, the trace ids and (skillbook, session) pairs with negative feedback."""
        ...

    def commit_grouping(self, plan: GroupingPlan, *, read_at: Cursor | None, to: Cursor) -> bool:
        """Apply a batch and move the cursor from `read_at` to `to`; False (nothing written)
        when another grouper moved the cursor since the batch was read."""
        ...

    def ready(
        self, skillbook: str, *, idle_s: float, now: float | None = None, limit: int = 100
    ) -> list[Episode]:
        """Open episodes idle for `idle_s` up to the grouping cursor, oldest first."""
        ...

    def get(self, episode_id: str) -> Episode: ...

    def signal(self, episode_id: str) -> bool: ...

    def traces(self, episode_id: str) -> list[Trace]:
        """Oldest first."""
        ...

    def feedback(self, episode_id: str) -> list[Feedback]:
        """Feedback on any of the episode's traces or on its session."""
        ...


class FeedbackRepository(Protocol):
    def add(self, feedback: NewFeedback) -> int: ...

    def for_trace(self, trace_id: str) -> list[Feedback]:
        """Feedback on this trace and on its session (within its skillbook), oldest first."""
        ...


class LearnerRepository(Protocol):
    """Runs with their spend, leases, and each episode's outcome."""

    def start_run(self, skillbook: str) -> int: ...

    def finish_run(self, run: int, status: str, error: str | None = None) -> None: ...

    def list_runs(
        self, *, skillbook: str | None = None, limit: int = 20, run: int | None = None
    ) -> list[LearnerRun]: ...

    def tokens_since(self, since: float) -> int: ...

    def spend_by_day(self, *, skillbook: str | None, since: float) -> list[DailySpend]:
        """The learner's calls, tokens and cost per UTC day."""
        ...

    def totals(self) -> list[LearnerTotals]:
        """Every run ever, added up per skillbook and status."""
        ...

    def acquire_lease(self, skillbook: str, owner: str, seconds: float) -> bool:
        """Take or renew the skillbook's lease; False while another owner holds it."""
        ...

    def release_lease(self, skillbook: str, owner: str) -> None: ...

    def close_episode(
        self, episode_id: str, run: int, status: str, error: str | None, counts: RunCounts
    ) -> None:
        """Mark an episode skipped or failed, with what it cost, in one unit."""
        ...

    def commit_reflection(self, outcome: ReflectedEpisode) -> list[str]:
        """Apply the skill operations, save the reflection, mark the episode reflected and
        count the run, all or nothing; returns the ids of the skills it created."""
        ...

    def defer_episode(
        self, episode_id: str, run: int, error: str, counts: RunCounts, *, max_attempts: int
    ) -> str:
        """Count a failed attempt: open for a later run, or `failed` after `max_attempts`."""
        ...

    def retry_episodes(
        self, *, skillbook: str | None = None, episode_ids: list[str] | None = None
    ) -> list[str]:
        """Re-queue failed episodes (these ids, or all of `skillbook`'s); their ids."""
        ...

    def list_episodes(
        self,
        *,
        skillbook: str | None = None,
        status: str | None = None,
        limit: int = 50,
        before: float | None = None,
    ) -> list[Episode]: ...

    def episode_detail(self, episode_id: str) -> EpisodeDetail:
        """The episode with its traces, feedback, reflections and refused lessons."""
        ...

    def reflections(self, episode_id: str) -> list[StoredReflection]: ...

    def reflection(self, seq: int) -> StoredReflection: ...

    def refused(
        self, *, skillbook: str | None = None, episode_id: str | None = None, limit: int = 100
    ) -> list[RefusedProposal]: ...

    def recent_reflections(self, skillbook: str, *, limit: int) -> list[RecentReflection]:
        """The newest `limit`, oldest first, each with its episode's last trace."""
        ...

    def mark(self, skillbook: str, kind: str) -> int:
        """How far a periodic pass of `kind` has read (a reflection seq; 0 at first)."""
        ...

    def commit_pass(
        self,
        skillbook: str,
        run: int,
        kind: str,
        upto: int,
        operations: list[SkillOperation],
        counts: RunCounts,
        *,
        actor: str,
    ) -> list[str]:
        """Apply a periodic pass's proposals and move its mark, all or nothing."""
        ...

    def waiting(self, skillbook: str, *, settle_s: float, idle_s: float, now: float) -> Waiting:
        """What a run cannot use yet, and when the first of it is ready."""
        ...


class Store(Protocol):
    """One connection's worth of repositories; open one with `store.open_store(url)`."""

    @property
    def url(self) -> str: ...

    @property
    def traces(self) -> TraceRepository: ...

    @property
    def skillbooks(self) -> SkillbookRepository: ...

    @property
    def skills(self) -> SkillRepository: ...

    @property
    def transfer(self) -> TransferRepository: ...

    @property
    def episodes(self) -> EpisodeRepository: ...

    @property
    def feedback(self) -> FeedbackRepository: ...

    @property
    def learner(self) -> LearnerRepository: ...

    @property
    def canaries(self) -> CanaryRepository: ...

    def migrate(self) -> list[str]:
        """Apply pending schema migrations; returns the names applied now."""
        ...

    def serving(self, *, lock_wait_s: float) -> AbstractContextManager[None]:
        """Around one call of a caller (`store.worker` wraps every function it runs in it):
        wait at most `lock_wait_s` for a lock another process holds, and raise the engine's
        failures that mean the store cannot serve now (locked past that wait, damaged,
        deleted, disk full) as `store.errors.StoreUnavailable` (`StoreCorrupt` for damage),
        leaving the connection ready for the next call. Other errors pass unchanged."""
        ...

    def check(self) -> None:
        """A cheap probe for health checks: raise `StoreUnavailable` unless the store can
        serve reads and writes now. Writes nothing."""
        ...

    def close(self) -> None: ...


class WatchedStore(Protocol):
    """A store whose file may be deleted or replaced while it is open (`store.open_watched`)."""

    path: str | None
    noticed: bool
    """Set by the caller when it has seen `trouble()` once (it acts on the second look)."""

    def trouble(self) -> str | None:
        """Why the open file is no longer the store's, or None while it is."""
        ...

    def ready(self) -> Store:
        """The store to write to: the open one, or a fresh one if its file went away."""
        ...

    def take_reopened(self) -> int:
        """How many times a fresh file was opened since the last call."""
        ...

    def close(self) -> None: ...
