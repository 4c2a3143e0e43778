"""Rules of mypyc's semantics that plain Python does not have, checked on the source.

Compiled, a local variable keeps one type in its whole function: a name bound by
``except Refusal as exc`` is a ``Refusal`` variable, so a later ``except
EngineUnavailable as exc`` in the same function raises ``TypeError`` when it
catches (commit 2bb1a07: a subscribe with Redis down was never answered). mypy
accepts it (it narrows each handler's name on its own), the pure build runs it,
so only the compiled build fails, and only when that exception happens.
:func:`except_name_clashes` finds such functions in a module's source.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

_Scope = ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef


def _handlers(scope: _Scope) -> Iterator[ast.ExceptHandler]:
    """The ``except`` clauses of ``scope``'s own body, not those of functions or
    classes nested in it (each is a scope of its own)."""
    pending: list[ast.AST] = list(ast.iter_child_nodes(scope))
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        if isinstance(node, ast.ExceptHandler):
            yield node
        pending.extend(ast.iter_child_nodes(node))


def except_name_clashes(source: str, filename: str = "<source>") -> list[str]:
    """Where one function binds a name with ``except A as name`` and ``except B as
    name`` for different exception types ``A`` and ``B`` (as written), one line
    each: ``file:line function: 'name' is A (line n) and B``."""
    tree = ast.parse(source, filename)
    clashes = []
    for scope in ast.walk(tree):
        if not isinstance(scope, _Scope):
            continue
        first: dict[str, tuple[str, int]] = {}  # name -> (its type as written, line)
        for handler in sorted(_handlers(scope), key=lambda h: (h.lineno, h.col_offset)):
            if handler.name is None or handler.type is None:
                continue
            kind = ast.unparse(handler.type)
            seen = first.setdefault(handler.name, (kind, handler.lineno))
            if seen[0] != kind:
                where = getattr(scope, "name", "<module>")
                clashes.append(
                    f"{filename}:{handler.lineno} {where}: {handler.name!r} is {seen[0]} "
                    f"(line {seen[1]}) and {kind}"
                )
    return clashes
