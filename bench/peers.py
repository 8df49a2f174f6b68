"""TensorZero and Portkey beside LiteLLM: set them up once, start them for the overhead section.

Each is optional: whatever keeps one from installing or starting is written into `Results`
(`tensorzero_missing`, `portkey_missing`, `portkey_stream_missing`) and the suite goes on
without it. Both serve Chat Completions only here, so they are measured on `chat`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import overhead
import portkey_gateway
import tensorzero_gateway
from procs import BENCH, Fleet, Server
from results import Results


def install(out: Results, progress: Callable[[str], None]) -> None:
    progress("set-up: TensorZero's gateway in bench/.venv-tensorzero")
    try:
        out.tensorzero_version = tensorzero_gateway.ensure_installed(
            BENCH / "out" / "tensorzero-install.log"
        )
    except (tensorzero_gateway.TensorZeroUnavailable, OSError, subprocess.SubprocessError) as exc:
        out.tensorzero_missing = f"not installed: {exc}"
    progress("set-up: Portkey's gateway in bench/.node-portkey")
    try:
        out.portkey_version = portkey_gateway.ensure_installed(
            BENCH / "out" / "portkey-install.log"
        )
    except (portkey_gateway.PortkeyUnavailable, OSError, subprocess.SubprocessError) as exc:
        out.portkey_missing = f"not installed: {exc}"


def targets(
    group: Fleet, upstream: Server, workdir: Path, out: Results, formats: list[str]
) -> list[overhead.Target]:
    """Start whichever of the two is installed; one that fails to start is recorded, not fatal."""
    found: list[overhead.Target] = []
    if "chat" not in formats:
        return found
    if out.tensorzero_version:
        try:
            tz = tensorzero_gateway.start(group, upstream.base, workdir)
            found.append(
                overhead.Target(
                    "tensorzero",
                    tz.base + tensorzero_gateway.PREFIX,
                    tz.proc.pid,
                    formats=tensorzero_gateway.FORMATS,
                    model=tensorzero_gateway.CLIENT_MODEL,
                )
            )
        except (tensorzero_gateway.TensorZeroUnavailable, OSError) as exc:
            out.tensorzero_missing = str(exc)
    if out.portkey_version:
        try:
            pk, no_stream = portkey_gateway.start(group, upstream.base)
            out.portkey_stream_missing = f"streaming is left out: {no_stream}" if no_stream else ""
            found.append(
                overhead.Target(
                    "portkey",
                    pk.base,
                    pk.proc.pid,
                    formats=portkey_gateway.FORMATS,
                    modes=("json",) if no_stream else overhead.MODES,
                    headers=tuple(portkey_gateway.headers(upstream.base).items()),
                )
            )
        except (portkey_gateway.PortkeyUnavailable, OSError) as exc:
            out.portkey_missing = str(exc)
    return found
