"""The layers of docs/architecture.md, checked on the source: which pha module imports which.

Imports are read with ast from every module under pha/, at any depth (a lazy import inside a
function is an import too); those under `if TYPE_CHECKING:` are left out (never run).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PHA = Path(__file__).resolve().parents[2] / "pha"

LOW_LEVEL = ("pha.config", "pha.configschema", "pha.fencekeys", "pha.fencing", "pha.deploy", "pha.crm",
             "pha.crmstatus", "pha.ocf", "pha.ocflog", "pha.ocfmetadata", "pha.values", "pha.files")
"""Modules that import nothing from the lab, the commands or the agents."""
ABOVE = ("pha.lab", "pha.commands", "pha.agents")


def module_name(path: Path) -> str:
    parts = path.relative_to(PHA.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported(tree: ast.AST, package: str, modules: set[str]) -> set[str]:
    """The pha modules an AST imports: `from pha.x import y` is pha.x.y when that is a module
    (importing a submodule runs its package's __init__, which is no dependency), else pha.x."""
    found: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        stack.extend(ast.iter_child_nodes(node))
    return found


def import_graph() -> dict[str, set[str]]:
    """Each pha module and the pha modules it imports."""
    paths = {module_name(p): p for p in PHA.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        imported = _imported(ast.parse(path.read_text(), str(path)), package, set(paths))
        graph[name] = {m for m in imported if m in paths and m != name and m != "pha"}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


GRAPH = import_graph()


def test_the_graph_is_read() -> None:
    assert "pha.fencekeys" in GRAPH["pha.config"] and "pha.config" in GRAPH["pha.fencing"]
    assert "pha.lab.ini" in GRAPH["pha.commands.configure"]          # a lazy import counts


def test_no_module_imports_itself_back() -> None:
    assert cycles(GRAPH) == []


@pytest.mark.parametrize("module", LOW_LEVEL)
def test_lower_layers_do_not_import_the_lab_the_commands_or_the_agents(module: str) -> None:
    above = sorted(m for m in GRAPH[module] if m.startswith(ABOVE))
    assert above == [], f"{module} imports {above}"


def test_agents_import_no_commands() -> None:
    agents = [m for m in GRAPH if m.startswith("pha.agents")]
    assert agents
    assert {m: sorted(i for i in GRAPH[m] if i.startswith("pha.commands")) for m in agents} == {
        m: [] for m in agents}
