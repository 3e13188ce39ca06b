"""The package's import graph by layer, and the imports that break the layer rule.

    python scripts/import_graph.py            # edges between subpackages, each with its layer number
    python scripts/import_graph.py --modules  # every module-to-module edge
    python scripts/import_graph.py --check    # exit 1 and list every import from a layer above

Imports are read from the source with ``ast`` (module level and inside functions alike, so a lazy import
counts as much as an eager one). A module may import from its own subpackage and from any lower layer;
``errors`` sits below everything, ``fileio`` (atomic output, failing with errors' ``WriteError``) just above it.
``tests/test_layers.py`` runs the check.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = "cs336_lm"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

# Higher layers may import lower ones, never the reverse; one number is one layer. Peers in one layer do not
# import each other. (The top-level cs336_lm/__init__.py holds no code and is not a layer.)
LAYERS: dict[str, int] = {
    "errors": 0,
    "fileio": 1,  # atomic files and directories; raises errors' WriteError
    "kernels": 1,  # Triton kernels + autograd Functions: torch, triton and errors only
    "nn": 2,  # functional math, modules, the kernel dispatch, presets, accounting
    "config": 3,  # the experiment schema: reads nn's presets and backend names
    "tokenizer": 3,
    "optim": 3,
    "data": 4,  # token files and batches; text -> tokens through the tokenizer
    "tinytales": 5,  # the demo's story generator, written through data's token-file helpers
    "run": 5,  # a run directory: its layout, checkpoint files, the model built from its config, the device
    "training": 6,
    "sweep": 7,  # grids and searches on Optuna: each trial a training run in a subprocess
    "generation": 6,
    "engine": 7,  # paged KV cache + continuous batching, on generation's sampling
    "interop": 7,  # HuggingFace export/import and layer-by-layer comparison
    "evaluation": 7,
    "serve": 8,  # the HTTP server over the engine
    "scaling": 8,  # IsoFLOP studies: plans runs, reads their results, trains the verify run
    "cli": 9,
}


def subpackage(module: str) -> str | None:
    """``cs336_lm.nn.layers`` -> ``nn``; ``cs336_lm`` itself -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == PACKAGE else None


def module_name(path: Path, root: Path = ROOT) -> str:
    relative = path.relative_to(root.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path = ROOT) -> set[str]:
    """Every ``cs336_lm`` module that ``path`` imports (``from a import b`` gives ``a.b`` when that is a module)."""
    name = module_name(path, root)
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                if _is_module(candidate, root):
                    found.add(candidate)
    return {m for m in found if m == PACKAGE or m.startswith(PACKAGE + ".")}


def _is_module(dotted: str, root: Path) -> bool:
    path = root.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def module_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """``{module: {imported modules}}`` for every module under ``root``."""
    return {module_name(p, root): imports_of(p, root) for p in sorted(root.rglob("*.py"))}


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph folded onto subpackages, self-edges dropped."""
    edges: dict[str, set[str]] = defaultdict(set)
    for source, targets in graph.items():
        src = subpackage(source)
        for target in targets:
            dst = subpackage(target)
            if src and dst and dst != src:
                edges[src].add(dst)
    return dict(edges)


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports from a layer above (or beside) the importer, and modules in no declared layer."""
    problems = []
    for source, targets in sorted(graph.items()):
        src = subpackage(source)
        if src is None:
            continue
        if src not in LAYERS:
            problems.append(f"{source}: subpackage {src!r} is in no layer (add it to LAYERS)")
            continue
        for target in sorted(targets):
            dst = subpackage(target)
            if dst is None or dst == src:
                continue
            if dst not in LAYERS:
                problems.append(f"{source} imports {target}: {dst!r} is in no layer")
            elif LAYERS[dst] >= LAYERS[src]:
                problems.append(f"{source} (layer {LAYERS[src]}) imports {target} (layer {LAYERS[dst]})")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modules", action="store_true", help="print module-to-module edges")
    p.add_argument("--check", action="store_true", help="exit 1 when an import breaks the layer rule")
    args = p.parse_args(argv)
    graph = module_graph()
    if args.modules:
        for source, targets in graph.items():
            for target in sorted(targets):
                print(f"{source} -> {target}")
    else:
        for src, targets in sorted(package_graph(graph).items(), key=lambda kv: (-LAYERS.get(kv[0], 99), kv[0])):
            shown = ", ".join(f"{t} ({LAYERS.get(t, '?')})" for t in sorted(targets, key=lambda t: -LAYERS.get(t, 99)))
            print(f"{src} ({LAYERS.get(src, '?')}) -> {shown}")
    problems = violations(graph)
    if problems:
        print(f"\n{len(problems)} import(s) break the layer rule:", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
    return 1 if args.check and problems else 0


if __name__ == "__main__":
    sys.exit(main())
