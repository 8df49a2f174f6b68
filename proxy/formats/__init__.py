"""Wire-format adapters: one module per provider API, all behind the `WireFormat` surface."""

from proxy.formats.base import Message, ToolCall, Usage, WireFormat
from proxy.formats.chat import CHAT
from proxy.formats.messages import MESSAGES
from proxy.formats.responses import RESPONSES

__all__ = ["CHAT", "FORMATS", "MESSAGES", "RESPONSES", "Message", "ToolCall", "Usage", "WireFormat"]

FORMATS: dict[str, WireFormat] = {f.name: f for f in (CHAT, RESPONSES, MESSAGES)}
