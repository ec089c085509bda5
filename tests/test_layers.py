"""The import structure stays true: one installed name, and no import runs up a floor."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("suqiu", "schemas", "streams", "projections", "replay", "bench", "tests", "examples", "scripts")
BARE = ("schemas", "streams", "projections", "replay")


def imports(path: Path) -> list[tuple[int, str]]:
    """Every module `path` imports, absolute, with its line."""
    out = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def python_files() -> list[Path]:
    return sorted(p for top in SOURCES for p in (ROOT / top).rglob("*.py") if ".venv" not in p.parts)


def test_nothing_imports_the_bare_names_only_suqiu_installs() -> None:
    found = [f"{path.relative_to(ROOT)}:{line} imports {name}" for path in python_files()
             for line, name in imports(path) if name.split(".")[0] in BARE]
    assert found == []
