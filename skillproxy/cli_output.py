"""How the admin commands print: aligned tables cut to the terminal, local times, JSON."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any


def done(args: argparse.Namespace, result: dict[str, Any], message: str) -> None:
    if args.json:
        print_json(result)
    else:
        print(message)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def terminal_width() -> int | None:
    """Truncate to `$COLUMNS` or the terminal; never truncate output piped elsewhere."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: int = 0) -> str:
    """Aligned columns; the last one is cut to the width with an ellipsis."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers) - 1)]
    lines = []
    for row in [headers, *rows]:
        cells = [str(c).ljust(w) for c, w in zip(row, widths, strict=False)]
        line = " " * indent + "  ".join([*cells, " ".join(str(row[-1]).split())])
        lines.append(cut(line.rstrip()))
    return "\n".join(lines)


def cut(line: str) -> str:
    width = terminal_width()
    if width is None or len(line) <= width:
        return line
    return line[: max(width - 1, 0)] + "…"


def time_of(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")
