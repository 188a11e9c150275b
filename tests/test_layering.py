"""The library stays apart from its applications: no upward imports, no import cycles."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ovdense"
#: Subpackages that use the library; the core never imports them.
APPLICATIONS = ("ovdense.cli", "ovdense.apps", "ovdense.bench", "ovdense.evaluation", "ovdense.datasets",
                "ovdense.synthetic", "ovdense.training", "ovdense.train")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, top_level_only: bool):
    """Absolute names of the ovdense modules ``path`` imports."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("ovdense"):
                yield target
                for alias in node.names:
                    yield f"{target}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("ovdense"):
                    yield alias.name


def _modules():
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _is_application(name: str) -> bool:
    return any(name == app or name.startswith(app + ".") for app in APPLICATIONS) or name == "ovdense.__main__"


def test_core_never_imports_applications():
    bad = []
    for name, path in _modules().items():
        if _is_application(name):
            continue
        for target in _imports(path, top_level_only=False):
            if _is_application(target):
                bad.append(f"{name} imports {target}")
    assert not bad, bad


def test_no_import_cycles_between_modules():
    """No two modules import each other, directly or through others, counting imports made
    inside functions too (a deferred import hides a cycle; it does not remove it)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        deps = set()
        for target in _imports(path, top_level_only=False):
            # resolve `from pkg import sub` to the submodule when it is one
            while target and target not in modules:
                target = target.rsplit(".", 1)[0] if "." in target else ""
            if target and target != name and not name.startswith(target + "."):
                deps.add(target)
        graph[name] = deps
    # a package importing its own submodules is the normal way to expose them; only cycles
    # between modules that are not each other's parent packages count
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for dep in graph.get(node, ()):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                if not all(a.startswith(b + ".") or b.startswith(a + ".") for a, b in zip(cycle, cycle[1:])):
                    cycles.append(" -> ".join(cycle))
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, cycles
