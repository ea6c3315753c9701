"""The house's layout rules (docs/architecture.md), read from the code's own imports:
- the rooms of agent/ (its sub-packages and root modules) import each other without a loop, so
  every room stands on the rooms below it and no import runs back up;
- no two modules import each other, directly or round a loop;
- no module is over 300 lines, the device-side deploy helper aside (it is sent as one file).
Every import counts, including those inside functions (a lazy import is still a dependency)."""

import ast
import os
from typing import Dict, List, Set

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "agent")
MAX_LINES = 300
LONG_ALLOWED = {"agent/fleet/deploy/remote_helper.py"}   # one stdlib-only file sent to devices


def module_files() -> Dict[str, str]:
    """Dotted module name -> file path, for every module of the package."""
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                found[".".join(parts)] = path
    return found


def imports_of(module: str, path: str, known: Set[str]) -> Set[str]:
    """The package's modules this module imports (relative imports resolved)."""
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets.add(base)
            targets.update("%s.%s" % (base, alias.name) for alias in node.names)
    return {t for t in targets if t in known and t != module}


def room_of(module: str, known: Set[str]) -> str:
    """agent.<sub-package> for modules inside one, else the root module itself."""
    parts = module.split(".")
    if len(parts) >= 2 and "%s.%s" % (parts[0], parts[1]) in known and \
            os.path.isdir(os.path.join(PACKAGE, parts[1])):
        return "%s.%s" % (parts[0], parts[1])
    return module


def find_loop(graph: Dict[str, Set[str]]) -> List[str]:
    """One loop of the graph as a list of nodes (first == last), or [] when there is none."""
    state = {}          # node -> 1 while on the path, 2 when done

    def visit(node, path):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                loop = visit(nxt, path)
                if loop:
                    return loop
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            loop = visit(node, [])
            if loop:
                return loop
    return []


def module_graph() -> Dict[str, Set[str]]:
    files = module_files()
    known = set(files)
    # a package imports its own modules as its face: from .x import y in __init__ is not a loop
    return {m: {t for t in imports_of(m, p, known) if not t.startswith(m + ".")}
            for m, p in files.items()}


def test_rooms_stand_on_each_other_without_a_loop():
    # given every import of the package, folded to rooms
    graph = module_graph()
    known = set(graph)
    rooms = {}
    for module, targets in graph.items():
        room = room_of(module, known)
        rooms.setdefault(room, set()).update(
            r for r in (room_of(t, known) for t in targets) if r != room and r != "agent")
    # when looking for a loop, then there is none
    loop = find_loop(rooms)
    assert loop == [], "rooms import each other round a loop: %s" % " -> ".join(loop)


def test_no_two_modules_import_each_other():
    loop = find_loop(module_graph())
    assert loop == [], "modules import each other round a loop: %s" % " -> ".join(loop)


def relative(path: str) -> str:
    return os.path.relpath(path, ROOT).replace(os.sep, "/")


@pytest.mark.parametrize("path", sorted(relative(p) for p in module_files().values()
                                        if relative(p) not in LONG_ALLOWED))
def test_module_is_short(path):
    with open(os.path.join(ROOT, path)) as handle:
        lines = sum(1 for _ in handle)
    assert lines <= MAX_LINES, "%s has %d lines (at most %d)" % (path, lines, MAX_LINES)


def test_find_loop_sees_a_loop_and_a_tree():
    # the checker itself: a loop is found, a tree is not
    assert find_loop({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_loop({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []
