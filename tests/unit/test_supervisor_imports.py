"""The supervisor package's modules import each other as a tree: no cycle, even one hidden
behind ``TYPE_CHECKING`` or inside a function; and it never imports clerk."""

import ast
import pathlib

import pytest

import supervisor

pytestmark = pytest.mark.timeout(10)

PACKAGE = pathlib.Path(supervisor.__file__).parent


def imports_of(path: pathlib.Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def graph() -> dict[str, set[str]]:
    modules = {f"supervisor.{p.stem}": p for p in PACKAGE.glob("_*.py") if p.stem != "__init__"}
    return {
        name: {m for m in imports_of(path) if m in modules and m != name}
        for name, path in modules.items()
    }


def test_no_import_cycle():
    edges = graph()
    assert "supervisor._supervisor" not in edges["supervisor._spec"]
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                pytest.fail("import cycle: " + " -> ".join([*path, node, nxt]))
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = "done"

    for start in sorted(edges):
        if start not in state:
            visit(start, [])


def test_supervisor_does_not_import_clerk():
    for path in PACKAGE.glob("*.py"):
        assert not any(m.split(".")[0] == "clerk" for m in imports_of(path)), path
