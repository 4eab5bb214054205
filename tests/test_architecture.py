"""The import graph of pyro_gen: layers point one way, no cycles, no private names across modules.

Every module under ``pyro_gen/`` is parsed with :mod:`ast` (nothing is imported). Relative
imports are resolved; ``from pkg import name`` counts as an import of ``pkg.name`` when that
is a module of the package, else of ``pkg``.
"""

import ast
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pyro_gen"


@dataclass(frozen=True)
class Import:
    """One imported module: where, at which line, and whether it runs when the module is imported."""

    source: str  # importing module
    target: str  # imported pyro_gen module (resolved)
    names: tuple[str, ...]  # names taken by ``from target import ...`` (empty for ``import``)
    line: int
    module_level: bool  # outside function bodies and ``if TYPE_CHECKING:``


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(body: list[ast.stmt], module_level: bool):
    """Yield ``(import node, module_level)`` for every import statement, nested ones included."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, module_level
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _walk(node.body, False)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _walk(node.body, False)
            yield from _walk(node.orelse, module_level)
        else:
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    stmts = [
                        c for c in children if isinstance(c, ast.stmt | ast.excepthandler | ast.match_case)
                    ]
                    yield from _walk(stmts, module_level)


def _resolve(source: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = source if MODULES[source].name == "__init__.py" else source.rpartition(".")[0]
    base = package.split(".")
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports_of(source: str) -> list[Import]:
    tree = ast.parse(MODULES[source].read_text(), filename=str(MODULES[source]))
    found: list[Import] = []
    for node, module_level in _walk(tree.body, True):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "pyro_gen":
                    found.append(Import(source, alias.name, (), node.lineno, module_level))
            continue
        target = _resolve(source, node)
        if target.split(".")[0] != "pyro_gen":
            continue
        plain = []
        for alias in node.names:
            if f"{target}.{alias.name}" in MODULES:  # a submodule taken by name
                found.append(Import(source, f"{target}.{alias.name}", (), node.lineno, module_level))
            else:
                plain.append(alias.name)
        if plain:
            found.append(Import(source, target, tuple(plain), node.lineno, module_level))
    return found


IMPORTS = [imp for source in MODULES for imp in _imports_of(source)]


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _where(imp: Import) -> str:
    names = f" ({', '.join(imp.names)})" if imp.names else ""
    return f"{imp.source}:{imp.line} imports {imp.target}{names}"


def test_the_graph_is_read():
    # the parser sees the package: a broken walk would make every check below pass vacuously
    assert "pyro_gen.models.vae" in MODULES and "pyro_gen.report" in MODULES
    assert any(i.source == "pyro_gen.models.vae" and i.target == "pyro_gen.models.base" for i in IMPORTS)


ABOVE_MODELS = (
    "pyro_gen.inference",
    "pyro_gen.report",
    "pyro_gen.runs",
    "pyro_gen.cli",
    "pyro_gen.experiments",
    "pyro_gen.families",
    "pyro_gen.evaluation",
    "pyro_gen.diagnostics",
)


def test_models_import_no_trainer_and_nothing_above_them():
    bad = [
        _where(i)
        for i in IMPORTS
        if _in(i.source, "pyro_gen.models")
        and (i.target == "pyro_gen" or any(_in(i.target, p) for p in ABOVE_MODELS))  # the root exports fit
    ]
    assert not bad, "models must import only models, data and third-party code:\n" + "\n".join(bad)


def test_report_is_a_leaf():
    bad = [
        _where(i)
        for i in IMPORTS
        if _in(i.source, "pyro_gen.report")
        and not (_in(i.target, "pyro_gen.report") or _in(i.target, "pyro_gen.data"))
    ]
    assert not bad, "report may import only pyro_gen.data from pyro_gen:\n" + "\n".join(bad)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Return one cycle (a path ``a -> ... -> a``) per strongly connected component with a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in edges.get(v, ()):
                components.append(comp)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(edges) + 100))
    for v in sorted(edges):
        if v not in index:
            connect(v)
    cycles = []
    for comp in components:  # a shortest path from the component's first module back to it
        members, start = set(comp), min(comp)
        paths, queue = {start: [start]}, deque([start])
        while queue:
            v = queue.popleft()
            if start in edges.get(v, ()):
                cycles.append(paths[v] + [start])
                break
            for w in sorted(edges.get(v, ())):
                if w in members and w not in paths:
                    paths[w] = paths[v] + [w]
                    queue.append(w)
    return cycles


def test_cycle_finder_reports_the_path():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    assert _cycles({"a": {"a"}}) == [["a", "a"]]


def test_no_import_cycles_at_module_level():
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for i in IMPORTS:
        if i.module_level and i.target in MODULES and i.target != i.source:
            edges[i.source].add(i.target)
    cycles = _cycles(edges)
    assert not cycles, "import cycles (module-level imports):\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_private_names_imported_across_modules():
    bad = [
        f"{i.source}:{i.line} imports {name} from {i.target}"
        for i in IMPORTS
        for name in i.names
        if name.startswith("_") and not name.startswith("__") and i.target != i.source
    ]
    assert not bad, "private names imported across modules:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    "args", [["--help"], ["list"], ["reproduce", "--list"]], ids=["help", "list", "reproduce-list"]
)
def test_cli_parse_time_imports_neither_torch_nor_arviz(args):
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pyro_gen", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    lines = [line for line in proc.stderr.splitlines() if line.startswith("import time:")]
    imported = {line.rsplit("|", 1)[-1].strip() for line in lines}
    heavy = sorted(m for m in ("torch", "arviz") if m in imported)
    assert not heavy, f"`pyro-gen {' '.join(args)}` imports {heavy}"
    errors = "\n".join(line for line in proc.stderr.splitlines() if not line.startswith("import time:"))
    assert proc.returncode == 0, errors[-2000:]
    assert "pyro_gen.cli" in imported  # the -X importtime output was read
