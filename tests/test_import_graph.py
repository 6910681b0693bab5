"""The packages stack without knots: inside each top-level package, no module imports (however
indirectly) a module that imports it back. Imports inside functions and under TYPE_CHECKING
count: a module that needs its user only at run time is still a knot in the design."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("batch_gen", "codebook", "conrec", "conrec_client", "model", "service", "store")
# The top-level packages each may import: the layers of the README's table.
LAYERS = {
    "store": set(),
    "codebook": set(),
    "conrec_client": set(),
    "model": {"codebook"},
    "batch_gen": {"codebook", "model", "store"},
    "service": {"codebook", "store"},
    "conrec": {"batch_gen", "codebook", "model", "service", "store"},
}


def installed_name(package: str) -> str:
    """A folder's import name: the architecture's parts install under `conrec` (setup.py)."""
    return package if package in ("conrec", "conrec_client") else f"conrec.{package}"


def modules(package: str) -> dict[str, Path]:
    found = {}
    for path in (ROOT / package).rglob("*.py"):
        parts = path.relative_to(ROOT / package).with_suffix("").parts
        parts = (
            installed_name(package),
            *parts[:-1],
            *([] if parts[-1] == "__init__" else parts[-1:]),
        )
        found[".".join(parts)] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ``known`` that the file at ``path`` imports, anywhere in it."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import module` imports the submodule; `from module import name` the
            # module.
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle_inside_a_package(package: str) -> None:
    known = modules(package)
    # A package's __init__ is imported by every module below it: only its own imports count.
    graph = {
        name: {m for m in imports(path, known) if m != name and not name.startswith(m + ".")}
        for name, path in known.items()
    }
    assert cycles(graph) == []


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_imports_only_the_layers_below_it(package: str) -> None:
    # Its own name included, so that its imports of itself stop there.
    names = {installed_name(name): name for name in PACKAGES}
    imported = {
        names[name] for path in modules(package).values() for name in imports(path, names)
    } - {package}
    assert imported <= LAYERS[package], f"{package} imports {sorted(imported - LAYERS[package])}"


def test_only_the_command_line_imports_the_command_line() -> None:
    """`conrec.cli` sits on top (with `python -m conrec`, which runs it): the application layer
    under it never reaches back up."""

    def in_cli(name: str) -> bool:
        return name in ("conrec.cli", "conrec.__main__") or name.startswith("conrec.cli.")

    known = modules("conrec")
    users = {
        name
        for name, path in known.items()
        if not in_cli(name) and any(in_cli(m) for m in imports(path, known))
    }
    assert users == set()


def test_the_parts_are_imported_by_their_installed_names() -> None:
    """`from model.x import y` would load a second copy of `conrec.model.x` from a checkout's
    root (on sys.path when a command runs there) and fail in an installed environment."""
    parts = {name for name in PACKAGES if installed_name(name) != name}
    bare = []
    for path in (p for folder in (*PACKAGES, "tests") for p in (ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            bare += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in parts]
    assert bare == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
