"""The layout's rules, checked on the source: no import cycles, no private names borrowed across
modules, pure modules free of I/O, front-ends on the public API only, modules ≤ 600 lines.

The import graph is read from the syntax tree (every ``import`` and ``from ... import``, at module
level *and* inside functions: an import moved into a function to dodge a cycle is still a cycle).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tradelab"
MAX_LINES = 600

# Pure modules: bytes and frames in, values out. They must not import anything that does I/O,
# directly or through another tradelab module they import.
PURE = (
    "tradelab.binance.protocol",
    "tradelab.binance.gaps",
    "tradelab.binance.backoff",
    "tradelab.store.blocks",
    "tradelab.analytics.profile",
    "tradelab.analytics.rows",
    "tradelab.schema",
    "tradelab.exceptions",
    "tradelab.simulator.protocol",
    "tradelab.history.plan",
    "tradelab.store.coverage",
    "tradelab.collector.repair",
    "tradelab.timerange",
    "tradelab.analytics.sessions",
    "tradelab.analytics.developing",
    "tradelab.analytics.naked",
    "tradelab.store.errors",
    "tradelab.scale.hours",
    "tradelab.scale.histogram",
    "tradelab.scale.sessions",
)
IO_MODULES = (
    "asyncio",
    "socket",
    "ssl",
    "http.client",
    "http.server",
    "urllib.request",  # urllib.parse is string handling, not I/O
    "subprocess",
    "threading",
    "websockets",
    "rocksdict",
    "matplotlib",
    "IPython",
    "mcp",
    "tqdm",
)
# Front-ends: they may import the public API (``tradelab``, a subpackage's ``__init__``, a
# top-level module) and their own package's modules, never another package's internals.
FRONT_ENDS = ("tradelab.cli", "tradelab.jupyter.magic", "tradelab.mcp_server")


@dataclass(frozen=True)
class Import:
    target: str  # the tradelab module imported
    names: tuple[str, ...]  # names taken from it (from-imports)
    line: int


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(module: str, level: int, current: str) -> str:
    if level == 0:
        return module
    base = current.split(".")
    if not _is_package(current):
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def imports_of(name: str) -> Iterator[Import]:
    """Every tradelab module ``name`` imports, with the names it takes from it."""
    tree = ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES:
                    yield Import(alias.name, (), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node.module or "", node.level, name)
            if not target.startswith("tradelab"):
                continue
            plain = []
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in MODULES:  # "from tradelab.store import keys": the submodule itself
                    yield Import(sub, (), node.lineno)
                else:
                    plain.append(alias.name)
            if plain and target in MODULES:
                yield Import(target, tuple(plain), node.lineno)


def external_imports_of(name: str) -> set[str]:
    """Dotted names of the non-tradelab modules ``name`` imports."""
    tree = ast.parse(MODULES[name].read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m.split(".")[0] != "tradelab"}


def _is_io(module: str) -> bool:
    return any(module == io or module.startswith(io + ".") for io in IO_MODULES)


def graph() -> dict[str, set[str]]:
    # The root package is a lazy facade: it imports nothing at import time (``__getattr__``),
    # so its edges are not dependencies. Imports of it (``__version__``) are edges to a leaf.
    return {
        name: {imp.target for imp in imports_of(name)} - {name}
        for name in MODULES
        if name != "tradelab"
    }


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_io_rule_tells_parsing_from_io() -> None:
    assert _is_io("urllib.request") and _is_io("asyncio") and _is_io("websockets.asyncio.client")
    assert not _is_io("urllib.parse") and not _is_io("asyncore_like") and not _is_io("json")


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


def test_the_import_reader_sees_function_level_and_relative_imports() -> None:
    # tradelab/__init__.py imports the magic inside a function; the reader must see it
    assert "tradelab.jupyter" in {imp.target for imp in imports_of("tradelab")}


def test_no_private_names_imported_across_modules() -> None:
    offences = [
        f"{name}:{imp.line} imports {n} from {imp.target}"
        for name in MODULES
        for imp in imports_of(name)
        for n in imp.names
        if n.startswith("_") and not n.startswith("__")
    ]
    assert offences == []


def _closure(name: str, edges: dict[str, set[str]]) -> set[str]:
    seen, todo = set(), [name]
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


@pytest.mark.parametrize("name", PURE)
def test_pure_modules_import_no_io(name: str) -> None:
    assert name in MODULES, f"{name} moved: update PURE"
    edges = graph()
    reached = {name} | {m for m in _closure(name, edges) if not _is_package(m)}
    offences = {
        f"{m} imports {ext}" for m in reached for ext in external_imports_of(m) if ext in IO_MODULES
    }
    assert offences == set()


def test_front_ends_use_only_the_public_api() -> None:
    offences = []
    for name in MODULES:
        front = next((f for f in FRONT_ENDS if name == f or name.startswith(f + ".")), None)
        if front is None:
            continue
        own_package = front if _is_package(front) else front.rsplit(".", 1)[0]
        for imp in imports_of(name):
            target = imp.target
            public = (
                _is_package(target)
                or target.count(".") == 1  # a top-level module: tradelab.config, .plotting ...
                or target.startswith(own_package + ".")
            )
            if not public:
                offences.append(f"{name}:{imp.line} imports {target}")
    assert offences == []


def test_modules_are_at_most_600_lines() -> None:
    long = {
        name: n
        for name, path in MODULES.items()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_no_submodule_shadows_a_public_function() -> None:
    # tradelab.status() etc. must never be replaced by a module of the same name on import
    forbidden = {"status", "trades", "start", "stop"}
    assert {n.rsplit(".", 1)[-1] for n in MODULES} & forbidden == set()
