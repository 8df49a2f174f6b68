"""Wire-format adapters: one module per provider API, all behind the `WireFormat` surface."""

from core.formats.base import Message, ToolCall, Usage, WireFormat
from core.formats.chat import CHAT
from core.formats.messages import MESSAGES
from core.formats.responses import RESPONSES

__all__ = ["CHAT", "FORMATS", "MESSAGES", "RESPONSES", "Message", "ToolCall", "Usage", "WireFormat"]

FORMATS: dict[str, WireFormat] = {f.name: f for f in (CHAT, RESPONSES, MESSAGES)}
