"""The rendered skillbooks every request reads, refreshed from the store in the background.

A request pays a dictionary lookup: `section_for()` returns a `Section` prepared when the
skillbook's version last moved. A background task polls the store's version numbers every
`refresh_interval_ms`, so a change made through any proxy process sharing the database reaches
this one within a second; only skillbooks whose version moved are re-ranked and re-rendered,
on the database thread. If the store fails, the last good copy keeps being served.

A frozen skillbook is prepared from the set the store kept when it was frozen, and serves that
version's number, so its bytes stay put while approvals go on. The last `KEPT_VERSIONS`
versions this process served stay prepared, so a request may pin one it saw earlier
(`X-Skillbook-Version`); a version no longer kept is refused, never silently replaced. A
deleted skillbook injects nothing.

Canaries (issue 21): a running canary's skill is left out of the base ranking and is rendered
into its own arms' sections, ready with the static one (`possible_arms`: k + 1 sections for k
disjoint canaries), so a request in a canary arm pays one hash of its session
(`proxy.assignment`) and one more dictionary lookup, never a render. In its treatment arm a
canary skill goes first, so the budget never leaves it out; skills it displaces at the end of
the budget are told by the trace's injected ids. A frozen or deleted skillbook runs no canary.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial

from core.config import SkillbookConfig
from core.tokens import ENCODINGS, count_tokens, encoding_name_for_model
from proxy.assignment import NO_CANARY, Slot, arm_of, possible_arms
from proxy.ranking import RankedSkill, RelevanceIndex, by_usefulness, words
from proxy.render import EMPTY, HEADER, Section, fit, line_tokens
from store.interfaces import Store
from store.records import Skill
from store.worker import StoreWorker

log = logging.getLogger("skillproxy.skillbooks")
RELEVANCE_CACHE_SIZE = 256
KEPT_VERSIONS = 16
"""Earlier versions of each skillbook kept prepared for requests that pin one."""


class UnknownVersion(LookupError):
    """A request pinned a version of the skillbook this process does not hold."""


@dataclass(slots=True)
class Prepared:
    """One skillbook version, ranked and measured once for each encoding."""

    name: str
    version: int
    budget: int
    ranking: str
    ranked: list[RankedSkill]
    costs: dict[str, list[int]]
    header_tokens: dict[str, int]
    section_tokens: dict[str, dict[str, int]]
    static: dict[str, Section]
    by_query: OrderedDict[tuple[str, frozenset[str]], Section] = field(default_factory=OrderedDict)
    index: RelevanceIndex | None = None
    store_version: int = 0
    """The store's version it was prepared at (`version` is the one served: while frozen,
    the frozen one)."""
    frozen: bool = False
    created_by: str = "unknown"
    withdrawn: frozenset[str] = frozenset()
    """Ids deleted now (or all, for a deleted skillbook: see `deleted`): no earlier version
    holding one of them may be served to a pinned request."""
    deleted: bool = False
    slots: tuple[Slot, ...] = ()
    """Running canaries, as `proxy.assignment` reads them."""
    canaries: list[RankedSkill] = field(default_factory=list)
    """Their skills, in usefulness order: in no section but their own arms'."""
    canary_costs: dict[str, list[int]] = field(default_factory=dict)
    arms: dict[str, dict[frozenset[str], Section]] = field(default_factory=dict)
    """Per encoding, each canary arm's section (control is `static`)."""
    by_arm: OrderedDict[tuple[str, frozenset[str], frozenset[str]], Section] = field(
        default_factory=OrderedDict
    )

    def arm(self, key: Callable[[], str | None]) -> frozenset[str]:
        """The canary arm of the session `key()` names (evaluated only if a canary runs)."""
        return arm_of(self.name, self.slots, key()) if self.slots else NO_CANARY

    def section(
        self, encoding: str, query: Callable[[], str], arm: frozenset[str] = NO_CANARY
    ) -> Section:
        """The usefulness-ranked section, or, for relevance ranking, one chosen for `query()`;
        `arm` names the canaries whose treatment the request is in."""
        if encoding not in self.static:
            return EMPTY  # only between a refresh and the tokenizer's first load: nothing safe
        if arm:
            return self._arm_section(encoding, query, arm)
        if self.ranking != "relevance" or not self.ranked:
            return self.static[encoding]
        asked = words(query())
        key = (encoding, asked)
        hit = self.by_query.get(key)
        if hit is not None:
            self.by_query.move_to_end(key)
            return hit
        if self.index is None:
            self.index = RelevanceIndex(self.ranked)
        order = self.index.order(asked)
        index = {skill.id: i for i, skill in enumerate(self.ranked)}
        costs = [self.costs[encoding][index[skill.id]] for skill in order]
        result = fit(
            order,
            costs,
            self.budget,
            encoding,
            self.header_tokens[encoding],
            self.section_tokens[encoding],
        )
        self.by_query[key] = result
        if len(self.by_query) > RELEVANCE_CACHE_SIZE:
            self.by_query.popitem(last=False)
        return result

    def _arm_section(self, encoding: str, query: Callable[[], str], arm: frozenset[str]) -> Section:
        prepared = self.arms.get(encoding, {}).get(arm)
        if prepared is None:
            return self.static[encoding]  # a pinned version that had no such canary
        if self.ranking != "relevance" or not self.ranked:
            return prepared
        asked = words(query())
        key = (encoding, asked, arm)
        hit = self.by_arm.get(key)
        if hit is not None:
            self.by_arm.move_to_end(key)
            return hit
        if self.index is None:
            self.index = RelevanceIndex(self.ranked)
        result = self._fit_arm(encoding, arm, self.index.order(asked))
        self.by_arm[key] = result
        if len(self.by_arm) > RELEVANCE_CACHE_SIZE:
            self.by_arm.popitem(last=False)
        return result

    def _fit_arm(self, encoding: str, arm: frozenset[str], base: list[RankedSkill]) -> Section:
        """The canary skills of `arm` first, then `base` (an order of `ranked`)."""
        index = {skill.id: i for i, skill in enumerate(self.ranked)}
        canaries = zip(self.canaries, self.canary_costs[encoding], strict=True)
        first = [(s, c) for s, c in canaries if s.id in arm]
        rest = [(s, self.costs[encoding][index[s.id]]) for s in base]
        order = [*first, *rest]
        return fit(
            [s for s, _ in order],
            [c for _, c in order],
            self.budget,
            encoding,
            self.header_tokens[encoding],
            self.section_tokens[encoding],
        )


def prepare(
    store: Store,
    name: str,
    defaults: SkillbookConfig,
    encodings: Iterable[str] = ENCODINGS,
) -> Prepared:
    """Load, rank and measure one skillbook for each of `encodings`; on the database thread."""
    book = store.skillbooks.get(name)
    settings = book.settings
    budget = settings.token_budget if settings.token_budget is not None else defaults.token_budget
    ranking = settings.ranking or defaults.ranking
    version = book.version
    frozen = store.skillbooks.frozen_set(name) if book.frozen_version is not None else None
    withdrawn = frozenset(skill.id for skill in store.skills.find(name, deleted=True))
    slots: tuple[Slot, ...] = ()
    canaries: list[Skill] = []
    if book.deleted_at is not None:
        skills = []
    elif frozen is not None:  # a delete wins over a freeze: never injected means never
        version, budget, ranking = frozen.version, frozen.token_budget, frozen.ranking
        skills = [skill for skill in frozen.skills if skill.id not in withdrawn]
    else:
        running = [
            (c, s) for c, s in store.canaries.running_skills(name)
            if s.deleted_at is None and s.status in ("pending", "active")
        ]  # fmt: skip
        slots = tuple(
            Slot(c.skill_id, c.assignment == "independent", c.bucket_lo, c.bucket_hi)
            for c, _ in running
        )
        canaries = [s for _, s in running]
        held = {s.id for s in canaries}
        skills = [s for s in store.skills.active(name) if s.id not in held]
    prepared = Prepared(
        name, version, budget, ranking, by_usefulness(skills), {}, {}, {}, {},
        store_version=book.version, frozen=frozen is not None, created_by=book.created_by,
        withdrawn=withdrawn, deleted=book.deleted_at is not None, slots=slots,
        canaries=by_usefulness(canaries),
    )  # fmt: skip
    for encoding in encodings:
        measure(prepared, encoding)
    return prepared


def measure(prepared: Prepared, encoding: str) -> None:
    """Count one encoding's tokens for every skill and fit the static section."""
    ranked, budget = prepared.ranked, prepared.budget
    costs = [line_tokens(skill, encoding) for skill in ranked]
    header = count_tokens(HEADER + "\n", encoding)
    every = [*ranked, *prepared.canaries]
    sections = {s.section: count_tokens(f"\n## {s.section}\n", encoding) for s in every}
    prepared.costs[encoding] = costs
    prepared.canary_costs[encoding] = [line_tokens(s, encoding) for s in prepared.canaries]
    prepared.header_tokens[encoding] = header
    prepared.section_tokens[encoding] = sections
    prepared.static[encoding] = fit(ranked, costs, budget, encoding, header, sections)
    prepared.arms[encoding] = {
        arm: prepared._fit_arm(encoding, arm, ranked) for arm in possible_arms(prepared.slots)
        if arm
    }  # fmt: skip


def _holds(entry: Prepared, fresh: Prepared) -> bool:
    return any(skill.id in fresh.withdrawn for skill in [*entry.ranked, *entry.canaries])


class SkillbookCache:
    """Tokenizers are loaded only for the model families requests use (each costs 30-55 MB):
    the first request of a new family waits while every skillbook is measured for it."""

    def __init__(self, worker: StoreWorker, defaults: SkillbookConfig) -> None:
        self._worker = worker
        self._defaults = defaults
        self._entries: dict[str, Prepared] = {}
        self._earlier: dict[str, OrderedDict[int, Prepared]] = {}
        """Per skillbook, versions served before the current one, oldest first."""
        self._seen_once = False
        self._encodings: frozenset[str] = frozenset()
        self._adding: dict[str, asyncio.Future[None]] = {}
        self._task: asyncio.Task[None] | None = None

    def missing_encoding(self, model: str | None) -> str | None:
        """The tokenizer a request of `model` needs that is not loaded yet, if any."""
        encoding = encoding_name_for_model(model)
        return None if encoding in self._encodings else encoding

    async def add_encoding(self, encoding: str) -> None:
        """Measure every skillbook for `encoding` (once; concurrent callers share the work)."""
        pending = self._adding.get(encoding)
        if pending is not None:
            return await asyncio.shield(pending)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._adding[encoding] = done
        try:
            entries = await self._worker.run(partial(self._measured, dict(self._entries), encoding))
            self._entries.update(entries)
            self._encodings = self._encodings | {encoding}
            done.set_result(None)
        except BaseException as exc:
            done.set_exception(exc)
            done.exception()  # retrieved here, so an unawaited failure is not reported twice
            raise
        finally:
            del self._adding[encoding]

    def _measured(
        self, entries: dict[str, Prepared], encoding: str, store: Store
    ) -> dict[str, Prepared]:
        earlier = [entry for kept in self._earlier.values() for entry in kept.values()]
        for entry in [*entries.values(), *earlier]:
            if encoding not in entry.static:
                measure(entry, encoding)
        return entries

    def section_for(
        self,
        name: str,
        model: str | None,
        query: Callable[[], str],
        pinned: int | None = None,
        session: Callable[[], str | None] = lambda: None,
    ) -> tuple[Section, int | None]:
        """The section to inject for a request, and the skillbook version it came from;
        `pinned` asks for that version (`UnknownVersion` if this process holds it no more);
        `session()` the key that chooses its canary arm, read only while a canary runs."""
        entry = self._entries.get(name)
        if pinned is not None and (entry.version if entry else 0) != pinned:
            kept = self._earlier.get(name)
            entry = kept.get(pinned) if kept else None
            if entry is None:
                raise UnknownVersion(name, pinned)
        if entry is None:
            return EMPTY, None
        arm = entry.arm(session)
        return entry.section(encoding_name_for_model(model), query, arm), entry.version

    async def refresh(self) -> None:
        """Re-prepare every skillbook whose version moved since the last look."""
        before = self._entries
        after = await self._worker.run(partial(self._refreshed, dict(before)))
        for name, entry in before.items():
            fresh = after.get(name)
            if fresh is None or fresh.version != entry.version:
                kept = self._earlier.setdefault(name, OrderedDict())
                kept[entry.version] = entry
                while len(kept) > KEPT_VERSIONS:
                    kept.popitem(last=False)
        for name, fresh in after.items():  # a pin never brings back what was deleted since
            held = self._earlier.get(name)
            if held and (fresh.deleted or fresh.withdrawn):
                for version in [v for v, e in held.items() if fresh.deleted or _holds(e, fresh)]:
                    del held[version]
        if self._seen_once:
            for name in after.keys() - before.keys():
                log.info(
                    "skillbook %r created (by %s); GET /admin/skillbooks lists it",
                    name,
                    after[name].created_by,
                )
        self._seen_once = True
        self._entries = after

    def _refreshed(self, entries: dict[str, Prepared], store: Store) -> dict[str, Prepared]:
        current = store.skillbooks.versions()
        wanted = self._encodings
        fresh = {
            name: e
            for name, e in entries.items()
            if current.get(name) == e.store_version and wanted <= e.static.keys()
        }
        for name in current.keys() - fresh.keys():
            fresh[name] = prepare(store, name, self._defaults, wanted)
        return fresh

    def start(self) -> None:
        self._task = asyncio.create_task(self._poll(), name="skillproxy-skillbook-refresh")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _poll(self) -> None:
        interval = self._defaults.refresh_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
            except Exception as exc:  # keep serving the last good copy
                log.error("skillbook refresh failed: %s", exc)
