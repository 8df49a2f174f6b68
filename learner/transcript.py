"""An episode as text for the reflector, compacted to fit the model's context.

Long episodes are not cut off at the end (where the outcome is). Every message is first
shortened to its head and tail, more and more tightly; when even the tightest cut is too long,
whole messages are left out, and what stays is chosen to fill the budget, not a fixed count:

1. the opening (everything up to the first user request) and the last message;
2. the messages that carry evidence, each with its neighbours: a tool result or user message
   that reads like an error, and a user message that corrects the agent; when they cannot all
   stay, the first, the last and then ones spread evenly between are kept;
3. then, in turns, one message more on each side of everything kept (two at the opening and
   the end), until the next one would not fit.

Each gap is marked with how many messages it holds and which, so the model knows what it is
not seeing. The agent's tool definitions are summarised here too (`tools_of`, `render_tools`):
name, the first line of the description and the parameter names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from core.formats.base import Message, as_list
from core.tokens import count_tokens

ENCODING = "cl100k_base"
MESSAGE_CAPS = (4000, 1500, 600, 250)
ANCHOR_CAP = 600
"""Characters kept of a message the compaction is built around (opening, end, evidence)."""
FILL_CAP = 250
"""Characters kept of the messages around them."""
MIN_CAP = 60
NEIGHBOURS = 1
MARKER_TOKENS = 24
"""A generous estimate of one gap marker; the result is counted exactly before it is returned."""
SEPARATOR = "\n\n"

_ERROR = re.compile(
    r"\b(errors?|exceptions?|traceback|failed|failure|fatal|denied|forbidden|unauthori[sz]ed|"
    r"not found|invalid|refused|timed out|timeout)\b|\b(status|http|code)\W{0,3}[45]\d\d\b",
    re.IGNORECASE,
)
_CORRECTION = re.compile(
    r"\b(wrong|incorrect|not what i|that's not|that is not|(does|did)(n't| not) work|"
    r"still (not|broken|fail\w*|wrong|the same)|you forgot|i (already )?(said|asked|told you)|"
    r"frustrat\w*|useless|not helpful|unhelpful|mistake|try again)\b",
    re.IGNORECASE,
)


def render_message(index: int, message: Message, cap: int | None = None) -> str:
    parts = [_shorten(message.content, cap)] if message.content else []
    for call in message.tool_calls:
        parts.append(f"→ calls tool {call.name}({_shorten(call.arguments, cap)}) [id {call.id}]")
    who = message.role if not message.tool_call_id else f"tool result for {message.tool_call_id}"
    return f"[{index}] {who}: " + ("\n".join(parts) if parts else "(empty)")


def render(messages: Sequence[Message], budget_tokens: int) -> tuple[str, bool]:
    """The transcript within `budget_tokens`, and whether it had to be compacted."""
    full = SEPARATOR.join(render_message(i, m) for i, m in enumerate(messages))
    if _tokens(full) <= budget_tokens:
        return full, False
    for cap in MESSAGE_CAPS:
        text = SEPARATOR.join(render_message(i, m, cap) for i, m in enumerate(messages))
        if _tokens(text) <= budget_tokens:
            return text, True
    anchor_cap, fill_cap = ANCHOR_CAP, FILL_CAP
    while True:
        text = _Selection(messages, budget_tokens, anchor_cap, fill_cap).text()
        if _tokens(text) <= budget_tokens or anchor_cap <= MIN_CAP:
            return text, True
        anchor_cap, fill_cap = max(anchor_cap // 2, MIN_CAP), max(fill_cap // 2, MIN_CAP)


def evidence(messages: Sequence[Message]) -> list[int]:
    """Indices of the messages that read like an error or a user correcting the agent."""
    return [
        index
        for index, message in enumerate(messages)
        if (message.role in ("tool", "user") and _ERROR.search(message.content))
        or (message.role == "user" and _CORRECTION.search(message.content))
    ]


class _Selection:
    """Which messages stay, chosen greedily against an estimate of the tokens they take."""

    def __init__(
        self, messages: Sequence[Message], budget: int, anchor_cap: int, fill_cap: int
    ) -> None:
        self.messages, self.budget = messages, budget
        self.caps: dict[int, int] = {}  # kept index -> its character cap
        self.fillers: list[int] = []  # kept to fill the budget, in the order added
        self.costs: dict[tuple[int, int], int] = {}
        self.used = 0
        self.gaps = 1 if messages else 0
        n = len(messages)
        opening = next((i for i, m in enumerate(messages) if m.role == "user"), 0)
        fixed = sorted({*range(opening + 1), n - 1})
        for index in fixed:
            self._add(index, anchor_cap)
        fronts: list[tuple[int, int, int]] = [(opening + 1, 1, 2), (n - 2, -1, 2)]
        for anchor in _spread([i for i in evidence(messages) if i not in fixed]):
            if anchor in self.caps or not self._fits(anchor, anchor_cap):
                continue
            self._add(anchor, anchor_cap)
            low = high = anchor
            for index in range(anchor - NEIGHBOURS, anchor + NEIGHBOURS + 1):
                if 0 <= index < n and index not in self.caps and self._fits(index, fill_cap):
                    self._add(index, fill_cap, filler=True)
                    low, high = min(low, index), max(high, index)
            fronts += [(low - 1, -1, 1), (high + 1, 1, 1)]
        self._grow(fronts, fill_cap)

    def text(self) -> str:
        while True:
            text = self._compose()
            if _tokens(text) <= self.budget or not self.fillers:
                return text
            del self.caps[self.fillers.pop()]  # the estimate was short: give the last one back

    def _grow(self, fronts: list[tuple[int, int, int]], cap: int) -> None:
        """Each round, every front takes its next `weight` messages while they fit; a front
        stops at the edge, at a kept message, or at one that does not fit."""
        active = [list(front) for front in fronts]
        while active:
            still = []
            for front in active:
                position, step, weight = front
                for _ in range(weight):
                    if not 0 <= position < len(self.messages) or position in self.caps:
                        break
                    if not self._fits(position, cap):
                        break
                    self._add(position, cap, filler=True)
                    position += step
                else:
                    front[0] = position
                    still.append(front)
            active = still

    def _cost(self, index: int, cap: int) -> int:
        key = (index, cap)
        if key not in self.costs:
            rendered = render_message(index, self.messages[index], cap)
            self.costs[key] = _tokens(rendered + SEPARATOR)
        return self.costs[key]

    def _gap_change(self, index: int) -> int:
        """How the number of gaps changes when `index` is kept: split, shrunk or closed."""
        before = index > 0 and index - 1 not in self.caps
        after = index < len(self.messages) - 1 and index + 1 not in self.caps
        return 1 if before and after else 0 if before or after else -1

    def _fits(self, index: int, cap: int) -> bool:
        gaps = self.gaps + self._gap_change(index)
        return self.used + self._cost(index, cap) + gaps * MARKER_TOKENS <= self.budget

    def _add(self, index: int, cap: int, *, filler: bool = False) -> None:
        self.gaps += self._gap_change(index)
        self.used += self._cost(index, cap)
        self.caps[index] = cap
        if filler:
            self.fillers.append(index)

    def _compose(self) -> str:
        lines, previous = [], -1
        for index in sorted(self.caps):
            if index > previous + 1:
                lines.append(_marker(previous + 1, index - 1))
            lines.append(render_message(index, self.messages[index], self.caps[index]))
            previous = index
        if previous < len(self.messages) - 1:
            lines.append(_marker(previous + 1, len(self.messages) - 1))
        return SEPARATOR.join(lines)


def _marker(first: int, last: int) -> str:
    count = last - first + 1
    where = f"[{first}]" if count == 1 else f"[{first}] to [{last}]"
    return f"[... {count} message{'s' if count > 1 else ''} left out here: {where} ...]"


def _spread(indices: list[int]) -> list[int]:
    """`indices` ordered so that any prefix covers them evenly: first, last, middle, ..."""
    if len(indices) <= 2:
        return indices
    order, spans = [indices[0], indices[-1]], [(0, len(indices) - 1)]
    while spans:
        later = []
        for low, high in spans:
            if high - low > 1:
                middle = (low + high) // 2
                order.append(indices[middle])
                later += [(low, middle), (middle, high)]
        spans = later
    return order


def _shorten(text: str, cap: int | None) -> str:
    if cap is None or len(text) <= cap:
        return text
    half = cap // 2
    return f"{text[:half]} [... {len(text) - 2 * half} characters elided ...] {text[-half:]}"


def _tokens(text: str) -> int:
    return count_tokens(text, ENCODING)


# --- the agent's tools ----------------------------------------------------------------------

MAX_TOOL_DESCRIPTION = 160
MAX_TOOL_PARAMETERS = 12


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One tool the agent was offered, as the reflector sees it."""

    name: str
    description: str = ""
    parameters: tuple[str, ...] = ()
    required: tuple[str, ...] = ()


def tools_of(requests: Iterable[object]) -> list[ToolSpec]:
    """The tools offered in these request bodies (chat `tools`/`functions`, Responses and
    Anthropic `tools`), each name once, in the order first offered, as last defined."""
    found: dict[str, ToolSpec] = {}
    for request in requests:
        if not isinstance(request, dict):
            continue
        for item in [*as_list(request.get("tools")), *as_list(request.get("functions"))]:
            spec = _tool(item)
            if spec is not None:
                found[spec.name] = spec
    return list(found.values())


def render_tools(tools: Sequence[ToolSpec], budget_tokens: int) -> str:
    """One line a tool, `name(required, optional?): description`, within `budget_tokens`; the
    tools past it are named only, on one last line."""
    lines = [f"- {_signature(t)}" + (f": {t.description}" if t.description else "") for t in tools]
    shown, used = 0, 0
    while shown < len(lines) and used + _tokens(lines[shown] + "\n") <= budget_tokens:
        used += _tokens(lines[shown] + "\n")
        shown += 1
    while True:
        text = "\n".join(lines[:shown])
        if shown < len(tools):
            rest = _named_only(tools[shown:], budget_tokens - _tokens(text + "\n"))
            text = f"{text}\n{rest}" if text else rest
        if _tokens(text) <= budget_tokens or shown == 0:
            return text
        shown -= 1


def _named_only(tools: Sequence[ToolSpec], budget_tokens: int) -> str:
    names = [t.name for t in tools]
    line = f"- and {len(tools)} more: {', '.join(names)}"
    while len(names) > 1 and _tokens(line) > budget_tokens:
        names = names[: len(names) * 3 // 4]
        line = f"- and {len(tools)} more: {', '.join(names)}, ..."
    return line


def _signature(tool: ToolSpec) -> str:
    names = [p if p in tool.required or p == "..." else f"{p}?" for p in tool.parameters]
    return f"{tool.name}({', '.join(names)})"


def _tool(item: object) -> ToolSpec | None:
    if not isinstance(item, dict):
        return None
    function = item.get("function")
    definition = function if isinstance(function, dict) else item
    kind = item.get("type")
    name = definition.get("name")
    if not isinstance(name, str) or not name:
        if not isinstance(kind, str) or not kind:
            return None
        label = item.get("server_label")
        name = f"{kind}:{label}" if isinstance(label, str) and label else kind
    description = definition.get("description") or item.get("server_description")
    if not isinstance(description, str) or not description.strip():
        builtin = isinstance(kind, str) and kind not in ("function", "custom")
        description = f"built-in tool ({kind})" if builtin else ""
    schema = definition.get("parameters", definition.get("input_schema"))
    properties = schema.get("properties") if isinstance(schema, dict) else None
    parameters = [str(p) for p in properties] if isinstance(properties, dict) else []
    required = schema.get("required") if isinstance(schema, dict) else None
    if len(parameters) > MAX_TOOL_PARAMETERS:
        parameters = [*parameters[:MAX_TOOL_PARAMETERS], "..."]
    return ToolSpec(
        name=_one_line(name, 80),
        description=_one_line(description, MAX_TOOL_DESCRIPTION),
        parameters=tuple(parameters),
        required=tuple(str(r) for r in as_list(required)),
    )


def _one_line(text: str, cap: int) -> str:
    """The first non-empty line, spaces collapsed, cut at a word within `cap` characters."""
    line = next((" ".join(part.split()) for part in text.splitlines() if part.strip()), "")
    if len(line) <= cap:
        return line
    cut = line[: cap - 3]
    sentence = cut.rfind(". ")
    if sentence >= cap // 2:
        return cut[: sentence + 1]
    return cut.rsplit(" ", 1)[0].rstrip(" ,;:") + "..."
