"""No import cycles in orbiter: not between two modules, not between its top-level parts.

The layer contract in pyproject.toml (``lint-imports``) keeps imports from running
up the layers; this test keeps modules of one layer from importing each other in a
circle, which a layer cannot see. Cycles are found with grimp, the import graph
import-linter itself builds, and each failure names the modules of the cycle.
"""

from __future__ import annotations

import grimp
import pytest

PACKAGE = "orbiter"

#: Cycles between parts not broken yet (none since issue 14). Only shrinks.
KNOWN_PART_CYCLES: list[list[str]] = []


def _cycles(modules: set[str], imports: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(root: str) -> None:
        # Iterative, so that a long chain of imports cannot reach the recursion limit.
        work = [(root, iter(sorted(imports.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, targets = work[-1]
            for target in targets:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(imports.get(target, ())))))
                    break
                if target in on_stack:
                    low[module] = min(low[module], index[target])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[module])
                if low[module] == index[module]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == module:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))

    for module in sorted(modules):
        if module not in index:
            visit(module)
    return sorted(found)


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(PACKAGE, cache_dir=None)


def _top(module: str) -> str:
    """``orbiter.x`` for ``orbiter.x`` and everything under it."""
    return ".".join(module.split(".")[:2])


def test_no_two_modules_import_each_other(graph: grimp.ImportGraph) -> None:
    imports = {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}
    cycles = _cycles(set(graph.modules), imports)
    assert not cycles, "import cycles between modules: " + "; ".join(
        " <-> ".join(cycle) for cycle in cycles
    )


def test_no_two_parts_of_orbiter_import_each_other(graph: grimp.ImportGraph) -> None:
    imports: dict[str, set[str]] = {}
    for module in graph.modules:
        if module == PACKAGE:
            continue  # the package's own __init__ re-exports the client: not a part
        for imported in graph.find_modules_directly_imported_by(module):
            if imported != PACKAGE and _top(imported) != _top(module):
                imports.setdefault(_top(module), set()).add(_top(imported))
    parts = {_top(module) for module in graph.modules if module != PACKAGE}
    cycles = [cycle for cycle in _cycles(parts, imports) if cycle not in KNOWN_PART_CYCLES]
    assert not cycles, "import cycles between parts of orbiter: " + "; ".join(
        " <-> ".join(cycle) for cycle in cycles
    )


def test_a_cycle_is_found_and_named() -> None:
    imports = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles({"a", "b", "c", "d"}, imports) == [["a", "b", "c"]]
    assert _cycles({"a", "b"}, {"a": {"b"}}) == []
