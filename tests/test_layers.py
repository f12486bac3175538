"""The package's layers: data flows one way (sim -> data -> policies -> train -> eval / pretrain ->
experiments / client -> serve -> cli), nothing imports a layer above its own (lazy imports inside functions included),
and no two modules import each other at module level."""

import ast
from pathlib import Path

import tla

ROOT = Path(tla.__file__).parent
LAYERS = [  # a package may import its own layer and the ones before it
    {"tla", "config", "progress", "plotting", "runinfo"},  # shared utilities (tla: the version)
    {"sim"},
    {"data"},
    {"policies"},
    {"train"},
    {"eval", "pretrain"},  # pretrain: the simulator's corpus, the TLA model and the trainer
    {"experiments", "client"},  # the client replays the evaluator's episodes against a server
    {"serve"},
    {"cli"},
    {"entry"},  # the console script: imports the command line, or says which install it needs
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports(path: Path, eager_only: bool) -> set[str]:
    """tla modules imported by `path` (eager_only: at module level, outside functions)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if eager_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tla":
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # `from tla.sim import geometry`
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "tla")
    return found


def package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "tla"


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def test_every_package_has_a_layer():
    assert {package(m) for m in MODULES} <= set(RANK), {package(m) for m in MODULES} - set(RANK)


def test_nothing_imports_a_layer_above_its_own():
    upward = []
    for module, path in MODULES.items():
        for target in imports(path, eager_only=False):
            if RANK[package(target)] > RANK[package(module)]:
                upward.append(f"{module} -> {target}")
    assert not upward, upward


def test_no_import_cycle_between_modules():
    graph = {m: {t for t in imports(p, eager_only=True) if t in MODULES and t != m} for m, p in MODULES.items()}
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(m: str, path: list[str]) -> list[str] | None:
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                return [*path, m, t]
            if t not in state and (cycle := visit(t, [*path, m])):
                return cycle
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            cycle = visit(m, [])
            assert cycle is None, " -> ".join(cycle)
