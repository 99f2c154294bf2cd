"""The package's shape: arrows point down only, and no import circle, hidden or not.

Every import statement of every module is read (function-level imports too: that is where
circles hide), except those under `if TYPE_CHECKING:`, which never run."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Where each part of the installed package lives in the repository.
SOURCES = {
    "carma": ROOT / "carma",
    "carma.domain": ROOT / "domain",
    "carma.projections": ROOT / "projections",
    "carma.healing": ROOT / "healing",
}
# What each layer may import of ours (besides itself), as the design's arrows say.
LAYERS = {
    "carma.domain": set(),
    "carma.projections": {"carma.domain"},
    "carma.healing": {"carma.domain", "carma.projections"},
    "carma.log": {"carma.domain"},
}
CLIENTS = (
    "carma.cli",
    "carma.demo",
    "carma.bench",
    "carma.integrations",
    "carma.testing",
    "carma.server",
)


def _modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join((package, *parts))
            if package == "carma" and name.split(".")[1:2] in (
                ["domain"],
                ["projections"],
                ["healing"],
            ):
                continue
            modules[name] = path
    return modules


MODULES = _modules()


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def _imports(name: str, path: Path) -> set[str]:
    """The modules of ours that `name` imports, anywhere in it."""
    tree = ast.parse(path.read_text(), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            # `from package import module` imports that module; other names, the package's
            submodules = {f"{base}.{a.name}" for a in node.names} & set(MODULES)
            found.update(submodules)
            if len(submodules) < len(node.names):
                found.add(base)
    return {
        m for m in found if m in MODULES or m.split(".")[0] in ("domain", "projections", "healing")
    }


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_every_module_is_read():
    assert {
        "carma",
        "carma.memory",
        "carma.domain.fragment",
        "carma.log.mapper",
        "carma.cli.commands",
        "carma.healing.healer",
    } <= set(MODULES)


def test_nothing_imports_a_layer_without_its_package():
    stray = {
        m: sorted(i for i in imports if not i.startswith("carma")) for m, imports in GRAPH.items()
    }
    assert {m: i for m, i in stray.items() if i} == {}


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_a_layer_imports_only_the_layers_below_it(layer):
    allowed = LAYERS[layer] | {layer}
    wrong = {
        m: sorted(i for i in imports if _layer(i) not in allowed)
        for m, imports in GRAPH.items()
        if _layer(m) == layer
    }
    assert {m: i for m, i in wrong.items() if i} == {}


def test_nothing_imports_the_cli_and_the_api_imports_none_of_its_clients():
    wrong = {}
    for module, imports in GRAPH.items():
        if _layer(module) in CLIENTS:  # a client may use another, the CLI aside
            bad = {i for i in imports if _layer(i) == "carma.cli" != _layer(module)}
        else:
            bad = {i for i in imports if _layer(i) in CLIENTS}
        if bad:
            wrong[module] = sorted(bad)
    assert wrong == {}


def test_there_is_no_import_circle():
    # Tarjan's strongly connected components over the module graph.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert circles == []
