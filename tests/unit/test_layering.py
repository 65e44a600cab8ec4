"""The package structure holds: no import cycle between the project's modules (function-level and
TYPE_CHECKING imports included), core never reaches up into backends, suites, training, reports, the
leaderboard, the API or the CLI, and no private name crosses a package boundary."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("harness", "suites", "adapters", "training", "reports", "leaderboard")
# harness/ subpackages that sit above the core: they may import any package.
UPPER = ("harness.cli", "harness.api", "harness.bridges", "harness.__main__")


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> Iterator[tuple[str, int, str | None]]:
    """(imported project module, line, name imported from it or None) for every import statement."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, None
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                if submodule in known:  # `from package import module`
                    yield submodule, node.lineno, None
                else:
                    yield node.module, node.lineno, alias.name


def owner(target: str, known: dict[str, Path]) -> str | None:
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


def graph() -> dict[str, set[str]]:
    known = modules()
    edges: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for target, _line, _name in imports(path, known):
            module = owner(target, known)
            if module is not None and module != name:
                edges[name].add(module)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_no_import_cycle() -> None:
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_core_imports_only_core() -> None:
    """harness/ (less its CLI, API and bridges) is the bottom layer: everything else builds on it."""
    bad = []
    for name, targets in graph().items():
        if name.split(".")[0] != "harness" or name == "harness" or name.startswith(UPPER):
            continue
        bad += [f"{name} -> {t}" for t in targets if t.split(".")[0] != "harness" or t.startswith(UPPER)]
    assert bad == []


def test_only_the_cli_imports_the_cli() -> None:
    bad = [
        f"{name} -> {t}"
        for name, targets in graph().items()
        for t in targets
        if t.startswith("harness.cli") and not name.startswith(("harness.cli", "harness.__main__"))
    ]
    assert bad == []


def test_no_private_name_crosses_a_package() -> None:
    known = modules()
    bad = []
    for name, path in known.items():
        for target, line, imported in imports(path, known):
            module = owner(target, known)
            if (
                module is None
                or imported is None
                or not imported.startswith("_")
                or imported.startswith("__")
            ):
                continue
            if module.split(".")[:2] != name.split(".")[:2]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {imported} from {module}")
    assert bad == []


def test_no_code_probes_a_suite_for_what_it_offers() -> None:
    """What a suite can do is declared on the Suite protocol (harness/suite.py), never guessed."""
    probe = re.compile(r"\b(getattr|hasattr)\(\s*(suite|self\.suite|s)\b")
    bad = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in modules().values()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if probe.search(line)
    ]
    assert bad == []


def test_training_builds_no_command_lines() -> None:
    """Training calls the API (harness.evaluate, harness.gate), never the CLI's parser."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "training").rglob("*.py"))
    assert "build_parser" not in text and "harness.cli" not in text and "argv" not in text
