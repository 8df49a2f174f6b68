"""The typed records that cross the store's boundary, in and out, whatever the engine.

Frozen dataclasses, so a caller cannot mistake a read for a handle on the row. `as_json`
turns any of them (or a list of them) into the plain JSON the admin API has always answered
with: field names are the column names, nested records become objects.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["pending", "active", "rejected", "archived"]
Tag = Literal["helpful", "harmful", "neutral"]
EpisodeStatus = Literal["open", "reflected", "failed", "skipped"]
Cursor = tuple[float, str]
"""Where episode grouping stands: the (created_at, id) of the last trace it has seen."""


def as_json(value: Any) -> Any:
    """A record, a list of records or a plain value, as JSON-ready data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, list | tuple):
        return [as_json(item) for item in value]
    return value


# Skillbooks and skills


@dataclass(frozen=True, slots=True)
class SkillbookSettings:
    """A skillbook's own settings; `None` means "the configured default"."""

    token_budget: int | None = None
    ranking: str | None = None
    auto_approve: bool | None = None
    max_active: int | None = None
    """A cap on active skills: past it, the least useful is proposed for retirement."""


@dataclass(frozen=True, slots=True)
class SkillCounts:
    pending: int = 0
    active: int = 0
    rejected: int = 0
    archived: int = 0


@dataclass(frozen=True, slots=True)
class Skillbook:
    name: str
    version: int
    settings: SkillbookSettings
    skills: SkillCounts
    created_at: float
    """When it was created: for one made by traffic, when it was first seen."""
    updated_at: float
    created_by: str = "unknown"
    """`traffic` (a request named it), `admin`, `import`, `copy`, or `unknown` (older)."""
    deleted_at: float | None = None
    frozen_version: int | None = None
    """Set while frozen: the version whose injected set is served until unfrozen."""


@dataclass(frozen=True, slots=True)
class SkillbookEvent:
    """One line of a skillbook's history: created, settings, frozen, deleted, imported..."""

    action: str
    actor: str
    at: float
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class FrozenSet:
    """What a frozen skillbook injects: the effective settings and active skills at freezing."""

    version: int
    token_budget: int
    ranking: str
    skills: list[Skill]


@dataclass(frozen=True, slots=True)
class SkillOutcome:
    """Episodes that had the skill injected against comparable ones that did not.

    Comparable: the same skillbook's episodes since the skill was created. A score is a
    feedback's `score`, or its label's (`store.feedback_labels.label_score`); an episode's
    score is the mean of its feedback; None means no data, never zero."""

    skill_id: str
    since: float
    with_skill: OutcomeArm
    without_skill: OutcomeArm
    difference: float | None
    note: str


@dataclass(frozen=True, slots=True)
class OutcomeArm:
    episodes: int
    with_feedback: int
    mean_score: float | None


@dataclass(frozen=True, slots=True)
class BulkResult:
    action: str
    changed: list[SkillDetail]


@dataclass(frozen=True, slots=True)
class Skill:
    id: str
    skillbook: str
    section: str
    content: str
    status: Status
    helpful: int
    harmful: int
    neutral: int
    revision: int
    created_at: float
    updated_at: float
    supersedes: str | None = None
    """The skill this one rewords: approving this one archives that one."""
    superseded_by: str | None = None
    prior_status: Status | None = None
    """What it was before it was archived: `restore` returns it there."""
    deleted_at: float | None = None
    """Soft-deleted: hidden from lists and never injected, until restored."""
    retire_reason: str | None = None
    """Set when the learner proposes retiring it (a REMOVE, harmful votes, the cap): archiving
    it is approving that; the reason stays for the record until then."""
    retire_proposed_at: float | None = None
    contradicts: str | None = None
    """A proposal that says the opposite of this existing skill: never merged, for a person."""


@dataclass(frozen=True, slots=True)
class Evidence:
    trace_id: str
    reason: str
    source: str
    created_at: float
    reflection: int | None = None
    """The reflection (its seq) whose diagnosis produced this evidence, for the reviewer."""


@dataclass(frozen=True, slots=True)
class SkillEvent:
    """One line of a skill's history; `before`/`after` are the state snapshots it moved between."""

    revision: int
    action: str
    actor: str
    at: float
    before: dict[str, Any] | None
    after: dict[str, Any]
    note: str | None = None
    """What the person who made the change said of it (a rejection's reason, say)."""
    detail: dict[str, Any] | None = None
    """Figures behind an automatic decision (a canary's report at that moment), else None."""


CanaryStatus = Literal["running", "promoted", "withdrawn", "stopped"]
Assignment = Literal["disjoint", "independent"]


@dataclass(frozen=True, slots=True)
class Canary:
    """One canary rollout of a skill: injected into `share` percent of sessions only.

    `bucket_lo`..`bucket_hi` is the range of session buckets (of `proxy.assignment.BUCKETS`)
    it owns, fixed when it starts: disjoint canaries of a skillbook own ranges that never
    overlap, on one hash of the session; an independent one hashes the session with its own
    skill id. `prior_status` is what the skill was when it started (pending or active): a
    stopped canary leaves it there."""

    seq: int
    skill_id: str
    skillbook: str
    share: float
    assignment: Assignment
    bucket_lo: int
    bucket_hi: int
    status: CanaryStatus
    prior_status: Status
    started_at: float
    started_by: str
    ended_at: float | None = None
    ended_by: str | None = None
    end_reason: str | None = None
    verdict: str | None = None
    """The last verdict recorded in the skill's history (better, worse), None before one."""
    alpha: float | None = None
    """The sequential test's error rate, fixed when it started (None: started before it was
    kept, so the skillbook's rules are read)."""
    min_sessions: int | None = None
    """Rated sessions its boundary is tuned for and promotion waits for, fixed likewise."""


@dataclass(frozen=True, slots=True)
class CanaryRules:
    """A skillbook's canary rules; `None` means the default (`store.canary_rules.DEFAULTS`)."""

    share: float | None = None
    """Percent of sessions: set, every approval of a pending skill starts a canary instead."""
    assignment: Assignment | None = None
    min_sessions: int | None = None
    """Sessions with feedback the canary arm needs before an automatic promotion."""
    on_win: Literal["promote", "notify"] | None = None
    on_loss: Literal["withdraw", "notify"] | None = None
    alpha: float | None = None
    """The sequential test's error rate: the confidence sequence covers at 1 - alpha."""


@dataclass(frozen=True, slots=True)
class CanarySession:
    """One conversation since a canary started, as the comparison reads it.

    `key` is `s:<session id>` for one the client named, `e:<episode id>` for one the learner
    grouped; `arm` is `treatment` when a trace of it carried the skill, `control` when none
    did (and, for a disjoint canary, none carried another canary running beside it)."""

    key: str
    arm: Literal["treatment", "control"]
    started_at: float
    turns: int
    tokens: int
    feedback: int
    score: float | None
    """The mean of its feedback (a label counts as its `label_score`), None without any."""
    first_feedback: int | None
    """The seq of its first feedback: the order sessions enter the sequential test."""


@dataclass(frozen=True, slots=True)
class SkillDetail(Skill):
    evidence: list[Evidence] = field(default_factory=list)
    history: list[SkillEvent] = field(default_factory=list)
    canary: Canary | None = None
    """Its latest canary rollout, running or ended; None if it never had one."""


@dataclass(frozen=True, slots=True)
class ImportSummary:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    archived: int = 0
    remapped: dict[str, str] = field(default_factory=dict)
    """Document id -> the id it was given here, for ids another skillbook already uses."""


# Traces


@dataclass(frozen=True, slots=True)
class TraceSummary:
    """A trace without its bodies: what a listing shows."""

    id: str
    created_at: float
    skillbook: str
    format: str | None
    method: str
    path: str
    model: str | None
    stream: bool
    status: int | None
    latency_ms: float | None
    ttfb_ms: float | None
    input_tokens: int | None
    output_tokens: int | None
    key_fingerprint: str | None
    error: str | None
    client_disconnected: bool
    session_id: str | None
    episode_id: str | None
    skillbook_version: int | None
    injected_skill_ids: Any
    skill_tokens: int | None
    cost_usd: float | None = None
    """USD from the model's published prices; None when the price or usage is unknown, and
    for traces stored before costs were recorded."""


@dataclass(frozen=True, slots=True)
class Trace(TraceSummary):
    """One whole exchange; bodies are parsed JSON, or the stored text when it is not JSON."""

    request_json: Any = None
    response_json: Any = None
    source: str | None = None
    """Where an imported trace came from (`import:claude-code`, the OTLP receiver's...); None:
    proxied."""


@dataclass(frozen=True, slots=True)
class ActivityBucket:
    start: float
    """The bucket's first second (Unix time)."""
    requests: int
    errors: int
    cost_usd: float = 0.0
    """Of the bucket's traces whose cost is known."""


@dataclass(frozen=True, slots=True)
class DailyTraffic:
    """One UTC day of a skillbook's proxied traffic and what it cost."""

    day: str
    """UTC date, `YYYY-MM-DD`."""
    requests: int
    priced: int
    """Requests whose cost is known (a known model, usage reported); only these are summed."""
    input_tokens: int
    output_tokens: int
    cost_usd: float


@dataclass(frozen=True, slots=True)
class TrafficSpend:
    """What a skillbook's proxied traffic cost since `since`: the total, and per UTC day
    (days without traffic left out)."""

    skillbook: str
    since: float
    requests: int
    priced: int
    cost_usd: float
    days: list[DailyTraffic] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DailySpend:
    day: str
    """UTC date, `YYYY-MM-DD`."""
    runs: int
    llm_calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


@dataclass(frozen=True, slots=True)
class LearnerTotals:
    """Every run of one skillbook that ended with one status, added up (for /metrics)."""

    skillbook: str
    status: str
    runs: int
    episodes: int
    reflections: int
    failures: int
    proposals: int
    llm_calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


@dataclass(frozen=True, slots=True)
class DailySkills:
    day: str
    """UTC date, `YYYY-MM-DD`."""
    proposed: int
    approved: int
    retired: int
    """Archived or deleted that day."""


@dataclass(frozen=True, slots=True)
class TracePage:
    """A page of traces; ask for the next with `before=next_before` (null on the last)."""

    data: list[TraceSummary]
    next_before: float | None


@dataclass(frozen=True, slots=True)
class TraceDetail(Trace):
    """A trace with the feedback on it and on its session, oldest first."""

    feedback: list[Feedback] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class GroupingTrace:
    """What episode grouping reads of a trace: its keys and its bodies as stored (text)."""

    id: str
    created_at: float
    skillbook: str
    format: str | None
    status: int | None
    error: str | None
    client_disconnected: bool
    session_id: str | None
    request_json: str | None
    response_json: str | None
    key_fingerprint: str | None
    """The client's API key, fingerprinted: different keys never share an episode."""


# Episodes, feedback and the learner


@dataclass(frozen=True, slots=True)
class Episode:
    id: str
    skillbook: str
    session_key: str | None
    first_at: float
    last_at: float
    trace_count: int
    status: EpisodeStatus
    reflected_at: float | None
    error: str | None
    signal: bool
    """Something went wrong: an error, a hang-up, negative feedback (read live)."""
    attempts: int = 0
    """Reflections tried and failed; it waits open until `learner.max_attempts`."""


@dataclass(frozen=True, slots=True)
class StoredReflection:
    seq: int
    episode_id: str
    run: int
    created_at: float
    reflection: dict[str, Any]
    """Every field the reflector answered (diagnosis, tags, lessons, correct approach...)."""


@dataclass(frozen=True, slots=True)
class RefusedProposal:
    """A lesson the skill rules refused, kept with the rule so a reviewer can see it."""

    seq: int
    skillbook: str
    episode_id: str
    reflection: int | None
    trace_id: str
    section: str
    content: str
    rule: str
    created_at: float


@dataclass(frozen=True, slots=True)
class EpisodeDetail(Episode):
    traces: list[TraceSummary] = field(default_factory=list)
    feedback: list[Feedback] = field(default_factory=list)
    reflections: list[StoredReflection] = field(default_factory=list)
    refused: list[RefusedProposal] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class EpisodePage:
    """A page of episodes; ask for the next with `before=next_before` (null on the last)."""

    data: list[Episode]
    next_before: float | None


@dataclass(frozen=True, slots=True)
class Waiting:
    """What a learner run cannot use yet, and when the first of it becomes ready."""

    settling_traces: int
    """Traces newer than `learner.settle_s`, not yet grouped into episodes."""
    open_episodes: int
    """Episodes grouped but not idle for `learner.episode_idle_s` yet."""
    first_ready_at: float | None


@dataclass(slots=True)
class EpisodeChange:
    """A new episode, or what a grouping batch adds to an existing one."""

    id: str
    skillbook: str
    session_key: str | None
    new: bool
    first_at: float | None = None
    last_at: float | None = None
    count: int = 0
    signal: bool = False


@dataclass(slots=True)
class GroupingPlan:
    """One grouping batch's writes: episodes, (episode, trace) links, (skillbook, head, episode)."""

    episodes: dict[str, EpisodeChange] = field(default_factory=dict)
    links: list[tuple[str, str]] = field(default_factory=list)
    heads: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class NewFeedback:
    skillbook: str
    trace_id: str | None
    session_id: str | None
    score: float | None
    label: str | None
    comment: str | None


@dataclass(frozen=True, slots=True)
class Feedback:
    seq: int
    trace_id: str | None
    session_id: str | None
    skillbook: str
    score: float | None
    label: str | None
    comment: str | None
    created_at: float


@dataclass(frozen=True, slots=True)
class LearnerRun:
    seq: int
    skillbook: str
    started_at: float
    finished_at: float | None
    status: str
    episodes: int
    reflections: int
    failures: int
    proposals: int
    merged: int
    tags: int
    llm_calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    error: str | None


@dataclass(frozen=True, slots=True)
class RunCounts:
    """What one episode adds to its run's counters."""

    episodes: int = 0
    reflections: int = 0
    failures: int = 0
    proposals: int = 0
    merged: int = 0
    tags: int = 0
    llm_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


# The skill manager's delta operations, applied by the store in one transaction


@dataclass(frozen=True, slots=True)
class TagSkill:
    """Count one helpful/harmful/neutral vote, with the trace that earned it as evidence."""

    skill_id: str
    tag: Tag
    trace_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class ProposeSkill:
    """Create a skill (`pending`, or `active` where the skillbook auto-approves)."""

    section: str
    content: str
    status: Status
    trace_id: str
    reason: str
    supersedes: str | None = None
    """The skill it rewords (a reflection's UPDATE): approving it archives that one."""
    contradicts: str | None = None
    """An existing skill it says the opposite of: kept pending for a person, never merged."""
    more_evidence: tuple[tuple[str, str], ...] = ()
    """Further (trace id, reason) pairs: a pattern seen across several episodes."""


@dataclass(frozen=True, slots=True)
class RefuseProposal:
    """Keep a lesson the rules refused, with the rule it broke."""

    section: str
    content: str
    rule: str
    trace_id: str


@dataclass(frozen=True, slots=True)
class ProposeRetire:
    """Propose retiring a live skill (a REMOVE, outweighing harmful votes, the active cap)."""

    skill_id: str
    reason: str
    trace_id: str


@dataclass(frozen=True, slots=True)
class AddEvidence:
    """Link a trace to an existing skill: a merged duplicate, a suggested removal."""

    skill_id: str
    trace_id: str
    reason: str


SkillOperation = TagSkill | ProposeSkill | AddEvidence | RefuseProposal | ProposeRetire


@dataclass(frozen=True, slots=True)
class RecentReflection:
    """A reflection with the last trace of its episode (what a pattern cites as evidence)."""

    reflection: StoredReflection
    last_trace_id: str


@dataclass(frozen=True, slots=True)
class ReflectedEpisode:
    """Everything one reflection changes, committed together or not at all."""

    episode_id: str
    skillbook: str
    run: int
    actor: str
    operations: list[SkillOperation]
    reflection: dict[str, Any]
    counts: RunCounts


# Imported conversations


@dataclass(frozen=True, slots=True)
class ImportedTurn:
    """One assistant turn of an imported conversation, as the trace the proxy would have
    logged for it: the request up to that turn and the turn as the response, JSON text in the
    wire format's own shape (`format`: chat, messages)."""

    format: str
    path: str
    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    request_json: str
    response_json: str
    cost_usd: float | None = None
    """From the model's published prices and the turn's usage, as a proxied trace's; None
    when either is unknown (fine-tuning lines carry no usage)."""


@dataclass(frozen=True, slots=True)
class ImportedConversation:
    """One line of an imported file: its turns, the session they share, and its verdict.

    `source_id` names the line whatever file it came in (its own id, or a hash of its JSON),
    so a second import of it is skipped; `source` says where it came from
    (`import:openai-jsonl`)."""

    source: str
    source_id: str
    session_id: str
    turns: tuple[ImportedTurn, ...]
    score: float | None = None
    label: str | None = None


@dataclass(frozen=True, slots=True)
class ImportedTrace:
    """A trace an import wrote, with the line it came from."""

    trace_id: str
    source: str
    source_id: str
    session_id: str | None
    created_at: float
