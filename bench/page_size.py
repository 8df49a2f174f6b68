"""What the SQLite page size costs the trace sink: CPU per trace row written, 4 KiB vs 16 KiB.

Synthetic rows (`synthetic.py`) go into a fresh database through the store's trace insert
in frames of 1,000, as the trace sink commits them, with SQLite's automatic WAL checkpoints on
(they are most of the difference). CPU is the process's, so a slow disk does not count.

    python bench/page_size.py [--rows 200000]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

from store_bench import timed_inserts

from proxy.trace_sink import FRAME_RECORDS
from store.sqlite.db import PAGE_SIZE

SQLITE_DEFAULT_PAGE_SIZE = 4096


def cpu_us_per_row(folder: Path, page_size: int, rows: int) -> float:
    path = folder / f"pages-{page_size}.db"
    with sqlite3.connect(path) as conn:  # fix the page size before open_database makes it WAL
        conn.execute(f"PRAGMA page_size = {page_size}")
        conn.execute("VACUUM")
    return timed_inserts(path, rows, FRAME_RECORDS, clock=time.process_time) / rows * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for size in (SQLITE_DEFAULT_PAGE_SIZE, PAGE_SIZE):
            cost = cpu_us_per_row(Path(folder), size, args.rows)
            print(f"page_size {size:>6}: {cost:5.1f} us CPU per trace row ({args.rows:,} rows)")


if __name__ == "__main__":
    main()
