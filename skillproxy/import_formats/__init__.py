"""The file formats `skillproxy traces import` reads that hold a conversation over many lines
(Claude Code sessions, Langfuse exports, OTLP trace exports), one module each, on the shared
pieces in `turns` (building a trace's JSON) and `grouping` (holding open conversations)."""
