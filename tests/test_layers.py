"""The package graph: which vecpipe package may import which (imports inside functions included).

Layers, bottom to top: ``errors``, ``metric`` and ``native``; ``formats``; ``compress``, ``encode``,
``evaluate``, ``pipeline``; ``index`` (over compress); ``stages``; ``api`` and ``cli``. A package
imports only from its own layer's allowances below; no cycles, no upward imports. The library never
imports typer or rich.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "vecpipe"

ALLOWED = {
    "errors": set(),
    "metric": {"errors"},
    "native": set(),
    "formats": {"errors"},
    "compress": {"errors", "metric", "native", "formats"},
    "encode": {"errors", "formats"},
    "evaluate": {"errors", "formats"},
    "pipeline": {"errors", "formats"},
    "index": {"errors", "metric", "native", "formats", "compress"},
    "stages": {"errors", "metric", "native", "formats", "compress", "encode", "evaluate", "pipeline", "index"},
    "api": {"pipeline", "stages"},
    "cli": {"errors", "pipeline", "stages", "formats"},
    "__init__": set(),
    "__main__": {"cli"},
}


def _unit(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def import_graph() -> dict[str, set[str]]:
    """Package -> the vecpipe packages it imports (anywhere in its modules)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        unit = _unit(path)
        deps = graph.setdefault(unit, set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names] if node.module == "vecpipe" else [node.module]
            for name in names:
                parts = name.split(".")
                if parts[0] != "vecpipe" or len(parts) < 2:
                    continue
                target = parts[1]
                if target != unit and target != "__version__":
                    deps.add(target)
    return graph


def _third_party(path: Path) -> set[str]:
    mods = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            mods |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods.add(node.module.split(".")[0])
    return mods


def test_no_upward_imports_and_no_cycles():
    graph = import_graph()
    bad = {unit: sorted(deps - ALLOWED.get(unit, set())) for unit, deps in graph.items() if deps - ALLOWED.get(unit, set())}
    assert not bad, f"imports outside the layering: {bad}"
    # no cycle (the allowances above are acyclic; check the real graph too)
    state: dict[str, int] = {}

    def visit(u: str, trail: list[str]) -> None:
        state[u] = 1
        for v in graph.get(u, ()):
            assert state.get(v) != 1, f"import cycle: {' -> '.join(trail + [u, v])}"
            if v not in state:
                visit(v, trail + [u])
        state[u] = 2

    for unit in graph:
        if unit not in state:
            visit(unit, [])


def test_the_library_never_imports_typer_or_rich():
    for path in PACKAGE.rglob("*.py"):
        if _unit(path) == "cli":
            continue
        assert not _third_party(path) & {"typer", "rich", "click"}, path


if __name__ == "__main__":  # print the graph (for notes and docs)
    for unit, deps in sorted(import_graph().items()):
        print(f"{unit:10} -> {', '.join(sorted(deps)) or '-'}")
