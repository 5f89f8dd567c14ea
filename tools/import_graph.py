"""The import graph of garvideo's own modules: ``python tools/import_graph.py [--modules] [--json FILE]``.

Reads the sources with :mod:`ast` (nothing is imported) and counts every import: module level,
function-local and under ``TYPE_CHECKING``. ``trackers/``, ``eval/`` and ``demos/`` are read as
``garvideo.trackers`` / ``garvideo.eval`` / ``garvideo.demos`` (pyproject ``package-dir``).

Prints the graph between the package's parts (:data:`PARTS`; ``--modules``: between modules), each part's
layer, the import cycles (strongly connected modules) and the imports that point up the layers
(:data:`LAYERS`: front ends -> runs -> pipeline -> foundation). Exit code 1 when there is a cycle or an upward
import, so the test suite and CI can hold the line (tests/test_import_graph.py).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Source folder -> package name (pyproject ``package-dir``).
FOLDERS = {"garvideo": "garvideo", "trackers": "garvideo.trackers", "eval": "garvideo.eval", "demos": "garvideo.demos"}

#: The layers, lowest first; a module may import its own layer and the ones below, never one above.
#: A module is in the layer of the longest prefix listed (``garvideo`` itself: the package root, which only
#: re-exports lazily, stands above everything).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("garvideo.errors", "garvideo._lazy", "garvideo._version", "garvideo.hub", "garvideo.info", "garvideo.video", "garvideo.masks",
                    "garvideo.keyframes", "garvideo.overlay", "garvideo.model", "garvideo.trackers")),
    ("pipeline", ("garvideo.pipeline", "garvideo.options")),
    ("runs", ("garvideo.runs", "garvideo.eval")),
    ("front ends", ("garvideo.cli", "garvideo.serve", "garvideo.demos")),
    ("package root", ("garvideo",)),
)


def part_of(module: str) -> str:
    """``garvideo.pipeline.clip`` -> ``garvideo.pipeline``; top-level modules are their own part."""
    bits = module.split(".")
    return ".".join(bits[:2])


def layer_of(module: str) -> int:
    best, found = -1, len(LAYERS) - 1
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), i
    return found


def modules(root: Path = ROOT) -> dict[str, tuple[Path, bool]]:
    """Module name -> (source file, is a package ``__init__``)."""
    out: dict[str, tuple[Path, bool]] = {}
    for folder, pkg in FOLDERS.items():
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root / folder).with_suffix("")
            parts = list(rel.parts)
            is_pkg = parts[-1] == "__init__"
            if is_pkg:
                parts = parts[:-1]
            out[".".join([pkg, *parts]) if parts else pkg] = (path, is_pkg)
    return out


def _resolve(current: str, is_pkg: bool, level: int, module: str | None) -> str:
    if level == 0:
        return module or ""
    base = current.split(".") if is_pkg else current.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def edges(mods: dict[str, tuple[Path, bool]]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (any import statement anywhere in the file)."""
    out: dict[str, set[str]] = {m: set() for m in mods}
    for name, (path, is_pkg) in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_pkg, node.level, node.module)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    out[name].add(target)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return sorted(found)


def upward(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports from a lower layer to a higher one."""
    return sorted((a, b) for a, targets in graph.items() for b in targets if layer_of(b) > layer_of(a))


def report(root: Path = ROOT, *, by_module: bool = False) -> dict[str, object]:
    mods = modules(root)
    graph = edges(mods)
    shown: dict[str, set[str]] = defaultdict(set)
    for a, targets in graph.items():
        for b in targets:
            src, dst = (a, b) if by_module else (part_of(a), part_of(b))
            if src != dst:
                shown[src].add(dst)
    return {
        "modules": len(mods),
        "imports": sum(len(t) for t in graph.values()),
        "graph": {k: sorted(v) for k, v in sorted(shown.items())},
        "layers": {p: LAYERS[layer_of(p)][0] for p in sorted({part_of(m) for m in mods})},
        "cycles": cycles(graph),
        "upward": [list(e) for e in upward(graph)],
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", action="store_true", help="the graph between modules, not parts")
    parser.add_argument("--root", type=Path, default=ROOT, help="the source tree (default: this one)")
    parser.add_argument("--json", type=Path, default=None, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    rep = report(args.root, by_module=args.modules)
    layers: dict[str, str] = rep["layers"]  # type: ignore[assignment] - built above as this type
    for src, dsts in rep["graph"].items():  # type: ignore[attr-defined]
        print(f"{src} [{layers.get(src, '-')}] -> {', '.join(dsts)}")
    cyc: list[list[str]] = rep["cycles"]  # type: ignore[assignment]
    up: list[list[str]] = rep["upward"]  # type: ignore[assignment]
    print(f"{rep['modules']} modules, {rep['imports']} imports; {len(cyc)} cycles, {len(up)} upward imports")
    for comp in cyc:
        print("  cycle:", " ".join(comp))
    for a, b in up:
        print(f"  upward: {a} [{LAYERS[layer_of(a)][0]}] -> {b} [{LAYERS[layer_of(b)][0]}]")
    if args.json:
        args.json.write_text(json.dumps(rep, indent=1) + "\n")
    return 1 if cyc or up else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
