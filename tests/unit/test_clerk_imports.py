"""Clerk's private modules import each other as a DAG: no cycle, even one hidden behind
``TYPE_CHECKING`` or inside a function; the runner reaches the agent only through
:class:`clerk._host.Host`; the parts of the core import each other in layers."""

import ast
import pathlib

import pytest

import clerk

pytestmark = pytest.mark.timeout(10)

PACKAGE = pathlib.Path(clerk.__file__).parent


def imports_of(path: pathlib.Path) -> set[str]:
    """Every module ``path`` names in an import, anywhere in the file; ``from clerk import
    _x`` counts as importing ``clerk._x``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def graph() -> dict[str, set[str]]:
    modules = {f"clerk.{p.stem}": p for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    return {
        name: {m for m in imports_of(path) if m in modules and m != name}
        for name, path in modules.items()
    }


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return [*path, node, nxt]
            if nxt not in state:
                found = visit(nxt, [*path, node])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(edges):
        if start not in state:
            found = visit(start, [])
            if found:
                return found
    return None


def test_the_checker_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle():
    edges = graph()
    assert "clerk._core" in edges and "clerk._agent" in edges  # the scan sees the package
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_runner_does_not_import_the_agent():
    edges = graph()
    assert "clerk._agent" not in edges["clerk._runner"]
    assert "clerk._agent" not in edges["clerk._runleave"]
    assert "clerk._agent" not in edges["clerk._host"]
    assert "clerk._runner" in edges["clerk._agent"]


@pytest.mark.parametrize(("module", "below"), [
    ("clerk._coretypes", set()),
    ("clerk._claims", set()),
    ("clerk._corestate", {"clerk._coretypes", "clerk._claims"}),
    ("clerk._setfetch", {"clerk._coretypes", "clerk._claims", "clerk._corestate"}),
    ("clerk._heartbeats", {"clerk._coretypes", "clerk._claims", "clerk._corestate",
                           "clerk._setfetch"}),
    ("clerk._joining", {"clerk._coretypes", "clerk._claims", "clerk._corestate",
                        "clerk._setfetch", "clerk._heartbeats"}),
    ("clerk._handover", {"clerk._coretypes", "clerk._claims", "clerk._corestate",
                         "clerk._setfetch", "clerk._heartbeats", "clerk._joining"}),
    ("clerk._election", {"clerk._coretypes", "clerk._claims", "clerk._corestate",
                         "clerk._setfetch", "clerk._heartbeats", "clerk._joining",
                         "clerk._handover"}),
    ("clerk._corequorum", {"clerk._coretypes", "clerk._claims", "clerk._corestate",
                           "clerk._setfetch", "clerk._heartbeats", "clerk._joining",
                           "clerk._handover", "clerk._election"}),
    ("clerk._coremessages", {"clerk._coretypes", "clerk._claims", "clerk._corestate",
                             "clerk._setfetch", "clerk._heartbeats", "clerk._joining",
                             "clerk._handover", "clerk._election", "clerk._corequorum"}),
])
def test_the_core_parts_import_only_the_layers_below(module, below):
    parts = {"clerk._coretypes", "clerk._claims", "clerk._corestate", "clerk._setfetch",
             "clerk._heartbeats", "clerk._joining", "clerk._handover", "clerk._election",
             "clerk._corequorum", "clerk._coremessages", "clerk._core"}
    assert graph()[module] & parts <= below


@pytest.mark.parametrize(("module", "absent"), [
    # a task worker: its task module imports clerk, the worker imports clerk._worker
    ("clerk", {"zmq", "supervisor", "asyncio", "psutil", "clerk._node", "clerk._config"}),
    ("clerk._worker", {"supervisor", "asyncio", "clerk._node", "clerk._codec"}),
    # the node's root process: supervises the agent, never opens a ZeroMQ socket
    ("clerk.node", {"zmq", "asyncio", "clerk._client", "clerk._transport"}),
    # the agent: zmq.utils.monitor would bring zmq.asyncio and asyncio (~5 MiB)
    ("clerk._agent", {"asyncio", "zmq.asyncio"}),
])
def test_each_process_imports_only_what_it_uses(module, absent):
    """Every module is memory in every process of every node (tools/bench_idle.py)."""
    import subprocess
    import sys

    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=30).stdout.split()
    assert absent & set(out) == set()


def test_lazy_names_resolve_and_are_listed():
    assert clerk.Node.__name__ == "Node" and callable(clerk.node_spec)
    assert {"Node", "node_spec", "NodeConfig", "load_config"} <= set(dir(clerk))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        clerk.nope  # noqa: B018
