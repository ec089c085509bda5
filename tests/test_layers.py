"""The import structure stays true: one installed name, and no import runs up a floor."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("suqiu", "schemas", "streams", "projections", "replay", "bench", "tests", "examples", "scripts")
BARE = ("schemas", "streams", "projections", "replay")


def imports(path: Path) -> list[tuple[int, str]]:
    """Every module `path` imports, absolute, with its line; `from package import name` counts
    as importing package.name too, which is the submodule when there is one."""
    out = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return out


def python_files() -> list[Path]:
    return sorted(p for top in SOURCES for p in (ROOT / top).rglob("*.py") if ".venv" not in p.parts)


def test_nothing_imports_the_bare_names_only_suqiu_installs() -> None:
    found = [f"{path.relative_to(ROOT)}:{line} imports {name}" for path in python_files()
             for line, name in imports(path) if name.split(".")[0] in BARE]
    assert found == []


# The floors, lowest first: a module may import its own floor and those below, never above.
FLOORS = (
    ("suqiu.domain",),
    ("suqiu.base",),
    ("suqiu.store", "suqiu.schemas"),
    ("suqiu.service",),
    ("suqiu.streams", "suqiu.projections", "suqiu.replay"),
    ("suqiu.http", "suqiu.board", "suqiu.cli", "suqiu.stack", "suqiu.__main__"),
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] in BARE:  # the folders linked into suqiu/
        parts.insert(0, "suqiu")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor(module: str) -> int | None:
    for level, columns in enumerate(FLOORS):
        if any(module == c or module.startswith(c + ".") for c in columns):
            return level
    return None


def suqiu_modules() -> dict[str, Path]:
    return {module_name(p): p for top in ("suqiu", *BARE) for p in (ROOT / top).rglob("*.py")}


def test_every_module_lives_on_a_floor() -> None:
    assert [m for m in suqiu_modules() if m != "suqiu" and floor(m) is None] == []


def test_no_import_runs_up_a_floor() -> None:
    upward = []
    for module, path in suqiu_modules().items():
        here = floor(module)
        for line, name in imports(path):
            there = floor(name)
            if here is not None and there is not None and there > here:
                upward.append(f"{module}:{line} (floor {here}) imports {name} (floor {there})")
    assert upward == []


def test_no_modules_import_each_other_in_a_circle() -> None:
    modules = suqiu_modules()
    graph: dict[str, set[str]] = {}
    for m, p in modules.items():
        found = [n for _, n in imports(p)]
        # `from suqiu.domain import inputs` imports the submodule, not the package's __init__.
        graph[m] = {n for n in found if n in modules and n != m
                    and not any(other.startswith(n + ".") and other in modules for other in found)}
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the path being walked, 2 done

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                walk(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node, [node])
    assert circles == []
