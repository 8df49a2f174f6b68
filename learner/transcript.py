"""An episode as text for the reflector, compacted to fit the model's context.

Long episodes are not cut off at the end (where the outcome is): every message is first
shortened to its head and tail, more and more tightly, and only then are middle turns elided,
keeping the opening request and the final turns. Each elision is marked, so the model knows
what it is not seeing.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.formats.base import Message
from core.tokens import count_tokens

ENCODING = "cl100k_base"
MESSAGE_CAPS = (4000, 1500, 600, 250)
KEEP_HEAD_MESSAGES = 2
KEEP_TAIL_MESSAGES = 6


def render_message(index: int, message: Message, cap: int | None = None) -> str:
    parts = [_shorten(message.content, cap)] if message.content else []
    for call in message.tool_calls:
        parts.append(f"→ calls tool {call.name}({_shorten(call.arguments, cap)}) [id {call.id}]")
    who = message.role if not message.tool_call_id else f"tool result for {message.tool_call_id}"
    return f"[{index}] {who}: " + ("\n".join(parts) if parts else "(empty)")


def render(messages: Sequence[Message], budget_tokens: int) -> tuple[str, bool]:
    """The transcript within `budget_tokens`, and whether it had to be compacted."""
    full = "\n\n".join(render_message(i, m) for i, m in enumerate(messages))
    if count_tokens(full, ENCODING) <= budget_tokens:
        return full, False
    for cap in MESSAGE_CAPS:
        text = "\n\n".join(render_message(i, m, cap) for i, m in enumerate(messages))
        if count_tokens(text, ENCODING) <= budget_tokens:
            return text, True
    cap = MESSAGE_CAPS[-1]
    head = list(enumerate(messages))[:KEEP_HEAD_MESSAGES]
    tail = list(enumerate(messages))[KEEP_HEAD_MESSAGES:][-KEEP_TAIL_MESSAGES:]
    while True:
        elided = len(messages) - len(head) - len(tail)
        lines = [render_message(i, m, cap) for i, m in head]
        if elided:
            lines.append(f"[... {elided} messages elided to fit the context ...]")
        lines += [render_message(i, m, cap) for i, m in tail]
        text = "\n\n".join(lines)
        if count_tokens(text, ENCODING) <= budget_tokens or (len(tail) <= 1 and cap <= 100):
            return text, True
        if len(tail) > 1:
            tail = tail[1:]
        else:
            cap //= 2


def _shorten(text: str, cap: int | None) -> str:
    if cap is None or len(text) <= cap:
        return text
    half = cap // 2
    return f"{text[:half]} [... {len(text) - 2 * half} characters elided ...] {text[-half:]}"
