"""The tree is the architecture: imports run one way, SQL lives only in store/, and every
module that holds logic has a test that names it (docs/design.md, "Layers")."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("skillproxy", "proxy", "learner", "core", "store")
MAY_IMPORT = {
    "skillproxy": {"skillproxy", "proxy", "learner", "core", "store"},
    "proxy": {"proxy", "core", "store"},
    "learner": {"learner", "core", "store"},
    "core": {"core", "store"},
    "store": {"store"},
}
"""Composition root -> hot path and learner -> shared pieces -> store."""

SQL = re.compile(
    r"\b(SELECT\s+[\w*(]|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|"
    r"CREATE\s+(TABLE|INDEX|TRIGGER)|BEGIN\s+IMMEDIATE|PRAGMA\s)",
)


def modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Every module name `path` imports, at any depth (lazy imports count too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("path", modules(), ids=relative)
def test_imports_run_one_way(path: Path) -> None:
    package = relative(path).split("/")[0]
    ours = {name.split(".")[0] for name in imported(path)} & set(PACKAGES)
    assert ours <= MAY_IMPORT[package], (
        f"{relative(path)} imports {sorted(ours - MAY_IMPORT[package])}"
    )


@pytest.mark.parametrize("path", modules(), ids=relative)
def test_only_the_store_reaches_its_engine(path: Path) -> None:
    """Above store/ the engine is a URL: nothing imports store.sqlite, sqlite3 or sqlite_utils."""
    if relative(path).startswith("store/"):
        return
    engine = {n for n in imported(path) if n.split(".")[0] in ("sqlite3", "sqlite_utils")}
    engine |= {n for n in imported(path) if n.startswith("store.sqlite")}
    assert not engine, f"{relative(path)} imports {sorted(engine)}"


@pytest.mark.parametrize("path", modules(), ids=relative)
def test_sql_lives_only_in_the_store(path: Path) -> None:
    if relative(path).startswith("store/"):
        return
    found = SQL.search(path.read_text())
    assert found is None, f"{relative(path)} holds SQL: {found.group(0) if found else ''}"


def holds_logic(path: Path) -> bool:
    tree = ast.parse(path.read_text())
    return path.name != "__main__.py" and any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        for node in tree.body
    )


def test_every_module_with_logic_has_a_test_that_names_it() -> None:
    tests = {p.name: p.read_text() for p in (ROOT / "tests").rglob("test_*.py")}
    missing = [
        relative(path)
        for path in modules()
        if holds_logic(path)
        and f"test_{path.stem}.py" not in tests
        and not any(relative(path) in text for text in tests.values())
    ]
    assert missing == [], f"no test file named after these, and no test names them: {missing}"
