"""The import graph follows the layers of the README's layout: each module imports only from its own layer or the
layers below it, and no modules import each other in a circle.

Imports are read from the source (every ``import`` statement, those inside functions too), so the test needs
nothing installed beyond the package's files.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "gen1"

#: From the top down, as README.md's "Layers" table states them: (layer, the modules and packages in it).
LAYERS = [
    ("front ends", ["gen1.__main__", "gen1.cli", "gen1.commands", "gen1.serve"]),
    ("library", ["gen1.editing", "gen1.model_sources"]),
    ("recipes", ["gen1.training", "gen1.eval", "gen1.demo"]),
    ("inference", ["gen1.pipeline", "gen1.routes", "gen1.denoise", "gen1.windows", "gen1.masking", "gen1.guidance",
                   "gen1.conditioning", "gen1.prompts", "gen1.assembly", "gen1.animatediff",
                   "gen1.adapters", "gen1.comparison", "gen1.masked_edits", "gen1.tracking", "gen1.imagic",
                   "gen1.drag", "gen1.seamless", "gen1.propagation"]),
    ("models", ["gen1.unet", "gen1.temporal_layers", "gen1.depth", "gen1.content", "gen1.ip_adapter",
                "gen1.sam2_tracker", "gen1.ip_adapter_text"]),
    ("ground", ["gen1.media", "gen1.hub", "gen1.model_folders", "gen1.model_defaults", "gen1.weights",
                "gen1.atomic", "gen1.synthetic", "gen1.checks", "gen1.settings", "gen1"]),
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    """Index of ``module``'s layer in :data:`LAYERS` (0 = top), by its longest listed prefix."""
    best = None
    for index, (_, members) in enumerate(LAYERS):
        for member in members:
            if module == member or module.startswith(member + "."):
                if best is None or len(member) > len(best[1]):
                    best = (index, member)
    assert best is not None, f"{module} is in no layer of the table: add it"
    return best[0]


def _imports(path: Path) -> set[str]:
    """The gen1 modules ``path`` imports (``from gen1.x import y`` counts as gen1.x, or gen1.x.y when y is a
    module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "gen1")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            if name.split(".")[0] != "gen1":
                continue
            for alias in node.names:
                candidate = f"{name}.{alias.name}"
                is_module = (PACKAGE.parent / (candidate.replace(".", "/") + ".py")).is_file() or \
                    (PACKAGE.parent / candidate.replace(".", "/") / "__init__.py").is_file()
                found.add(candidate if is_module else name)
    return found


def _graph() -> dict[str, set[str]]:
    return {_module_name(path): _imports(path) for path in sorted(PACKAGE.rglob("*.py"))}


def test_no_module_imports_from_a_layer_above_it():
    upward = []
    for module, imported in _graph().items():
        for target in imported:
            if _layer(target) < _layer(module):
                upward.append(f"{module} ({LAYERS[_layer(module)][0]}) -> {target} ({LAYERS[_layer(target)][0]})")
    assert not upward, "imports running up a layer:\n" + "\n".join(sorted(upward))


def test_no_circular_imports_between_modules():
    graph = _graph()
    graph = {module: {target for target in targets if target in graph and target != module}
             for module, targets in graph.items()}
    # a package's __init__ importing its own submodules (and they it) is how packages re-export: not a circle
    state, cycles = {}, []

    def visit(module, stack):
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph[module]):
            if target.startswith(module + ".") or module.startswith(target + "."):
                continue
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack)
        stack.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert not cycles, "circular imports:\n" + "\n".join(cycles)


def test_the_layer_table_names_every_module():
    for module in _graph():
        _layer(module)  # fails naming a module no layer holds
