"""The structure of ``ser_lib``: imports go one way.

The cross-validation driver, the report and the fold results once imported each
other in a circle; these tests keep the import graph of the package free of cycles
and the driver free of the report.
"""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_files(package="ser_lib"):
    """Module name -> (file, is a package's ``__init__``) for every module."""
    modules = {}
    for path in (ROOT / package).rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        modules[".".join(parts)] = (path, is_package)
    return modules


def import_graph(modules):
    """Module -> the package modules it imports (anywhere in its file)."""

    def owner(name):
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[
                        : len(package.split(".")) - node.level + 1
                    ]
                    base = ".".join(parent + ([base] if base else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            edges.update(owner(target) for target in targets)
        edges.discard("")
        edges.discard(name)
        graph[name] = edges
    return graph


def cycles(graph):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
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
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_sees_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_ser_lib_has_no_import_cycle():
    graph = import_graph(module_files())
    assert "ser_lib.fold_results" in graph["ser_lib.cross_validation"]
    assert "ser_lib.fold_results" in graph["ser_lib.report.builder"]
    assert cycles(graph) == []


def test_fold_results_serve_the_driver_and_the_report_without_either():
    graph = import_graph(module_files())
    for module in ("ser_lib.cross_validation", "ser_lib.fold_results"):
        assert not {m for m in graph[module] if m.startswith("ser_lib.report")}
    assert "ser_lib.cross_validation" not in graph["ser_lib.fold_results"]
    assert "ser_lib.cross_validation" not in graph["ser_lib.report.builder"]


def test_importing_the_driver_loads_no_report():
    code = (
        "import sys, ser_lib.cross_validation; "
        "print(sorted(m for m in sys.modules if m.startswith('ser_lib.report')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"
