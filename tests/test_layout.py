"""The packages of ``sync/`` import one way: each only from the packages its docstring allows."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SYNC = Path(__file__).resolve().parents[1] / "sync"

# What each package (or top-level module) may import of lakeseg besides itself; read top-down:
# cli -> app -> settings, output, lake -> run -> dbt, destinations, state, readers -> core.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "readers": {"core"},
    "state": {"core"},
    "destinations": {"core"},
    "dbt": {"core", "readers"},
    "run": {"core", "dbt", "readers", "state", "destinations"},
    "output": {"core", "run", "dbt", "state"},
    "lake": {"core"},
    "settings": {"core", "destinations"},
    "app": {"core", "dbt", "readers", "state", "destinations", "run", "output", "lake", "settings"},
    "cli": {"core", "app", "output", "lake", "dbt", "__init__"},
    "__main__": {"cli"},
    "__init__": set(),
}


def _unit(path: Path) -> str:
    """The package (first folder under sync/) or top-level module a file belongs to."""
    parts = path.relative_to(SYNC).parts
    return parts[0] if len(parts) > 1 else Path(parts[0]).stem


def _imported_units(path: Path) -> set[str]:
    units = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import; lakeseg imports by absolute name (sync.<package>)")
        names = (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
        for name in names:
            parts = name.split(".")
            if parts[0] != "sync":
                continue
            if len(parts) == 1:  # from sync import __version__
                units.add("__init__")
            else:
                units.add(parts[1])
    return units


FILES = sorted(SYNC.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(SYNC)) for p in FILES])
def test_each_module_imports_only_what_its_package_may(path):
    # Given a module of sync/ and the packages its own package may import
    unit = _unit(path)
    assert unit in ALLOWED, f"{unit} is not a known package of sync/: add it to ALLOWED with what it may import"
    # When its imports are read, then each is its own package or an allowed one
    wrong = _imported_units(path) - ALLOWED[unit] - {unit}
    assert not wrong, (
        f"sync/{path.relative_to(SYNC)} ({unit}) imports {sorted(wrong)}; it may import {sorted(ALLOWED[unit])}"
    )


def test_the_allowed_imports_run_one_way():
    # Given the allowed imports as a graph, then it has no cycle (nothing points back up)
    seen: dict[str, int] = {}

    def visit(unit: str, path: tuple[str, ...]) -> None:
        assert unit not in path, f"cycle: {' -> '.join(path + (unit,))}"
        if seen.get(unit) == 2:
            return
        for dep in ALLOWED[unit]:
            visit(dep, path + (unit,))
        seen[unit] = 2

    for unit in ALLOWED:
        visit(unit, ())


def test_every_package_says_what_it_owns_and_may_import():
    for init in sorted(SYNC.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "import" in doc.lower(), f"{init.relative_to(SYNC.parent)}: its docstring must say what it may import"
