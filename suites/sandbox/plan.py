"""What the trusted test process must know about a test list, worked out in the harness.

The harness has `ast` loaded already; the trusted process of every sandboxed run would pay ~4 ms to
import it. So the names are found here and travel with the tests (`suites.sandbox` puts them in the
trusted side's payload; `suites.sandbox.trusted` binds them).
"""

from __future__ import annotations

import ast
import builtins
import sys
from collections.abc import Collection
from dataclasses import dataclass


@dataclass(frozen=True)
class TestPlan:
    solution: tuple[str, ...]  # names the tests call in the solution (proxied)
    modules: tuple[str, ...]  # stdlib modules the tests use without importing them (imported)
    refs: tuple[str, ...]  # names the setup code binds on the solution side (passed by reference)
    error: str = ""  # why the tests cannot run (a syntax error in the task's own code)


def plan_tests(tests: str, prelude: str, setup: str, entry_points: Collection[str]) -> TestPlan:
    try:
        refs = bound_names(setup)
        unbound = solution_names(tests, bound_names(prelude) | refs, entry_points)
        modules = module_names(tests, unbound)
    except SyntaxError as error:
        return TestPlan((), (), (), f"SyntaxError: {error}")
    return TestPlan(tuple(sorted(unbound - modules)), tuple(sorted(modules)), tuple(sorted(refs)))


def bound_names(code: str) -> set[str]:
    """Names a piece of code binds at its top level (assignments, defs, classes, imports)."""
    bound: set[str] = set()
    for statement in ast.parse(code).body:
        for node in ast.walk(statement):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                bound.add(node.id)
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(statement.name)
        elif isinstance(statement, ast.Import | ast.ImportFrom):
            bound.update((a.asname or a.name).split(".")[0] for a in statement.names)
    return bound


def solution_names(tests: str, bound: Collection[str], entry_points: Collection[str]) -> set[str]:
    """Names the tests read that the trusted namespace does not bind: the solution's."""
    read: set[str] = set()
    written: set[str] = set()
    for node in ast.walk(ast.parse(tests)):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else written).add(node.id)
        elif isinstance(node, ast.arg):
            written.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            written.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            written.update((a.asname or a.name).split(".")[0] for a in node.names)
    builtin = set(dir(builtins)) - set(entry_points)
    return read - written - set(bound) - builtin


def module_names(tests: str, unbound: Collection[str]) -> set[str]:
    """Unbound names the tests only use as `name.attribute` and that name a standard-library module:
    modules the program imported that the tests lean on (task 596's `sys.getsizeof`), imported here.
    A solution function is called, never only dotted, so none is taken for a module."""
    tree = ast.parse(tests)
    dotted = {
        n.value.id for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
    }
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    return {name for name in unbound if name in dotted - called and name in sys.stdlib_module_names}
