"""The shape of the code, checked from its source: the library (everything under rnnpipe/
except the orchestration, `rnnpipe.flows` and `rnnpipe.tasks`, and the CLI that starts it)
never imports Prefect, and no two library modules import each other, directly or around a
loop, at module level or inside a function."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "rnnpipe"
ORCHESTRATION = ("rnnpipe.flows", "rnnpipe.tasks", "rnnpipe.cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def library_modules() -> dict[str, Path]:
    mods = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {m: p for m, p in mods.items() if not m.startswith(ORCHESTRATION)}


def imports(path: Path, own: str) -> list[tuple[str, int]]:
    """(module imported, line) for every import in the file, at any depth; relative imports
    resolved; `from pkg import name` counts as pkg.name when that is a module."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, up level - 1
                package = own.split(".") if path.name == "__init__.py" else own.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, *([base] if base else [])])
            out.append((base, node.lineno))
            out += [(f"{base}.{a.name}", node.lineno) for a in node.names]
    return out


def test_the_library_never_imports_prefect():
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
        for mod, path in library_modules().items()
        for name, line in imports(path, mod)
        if name == "prefect" or name.startswith("prefect.")
    ]
    assert not found, "\n".join(found)
    assert "rnnpipe.registry" in library_modules() and "rnnpipe.flows.forecast" not in library_modules()


def import_graph() -> dict[str, set[str]]:
    mods = library_modules()
    return {m: {n for n, _ in imports(p, m) if n in mods and n != m} for m, p in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_in_the_library():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    with pytest.raises(AssertionError):
        assert cycles({"a": {"b"}, "b": {"a"}}) == []
