"""What `lint-imports` cannot say about the imports of orders, fulfillment and fulfillment_site.

1. No import cycle: the modules of the three packages, function-level imports included, form a
   graph without a circle (strongly connected components of one module each).
2. No private name crosses a package: `from a.b import _name` (or a `_module`) only from a module
   of package `a` itself, the package that owns the name.

Run by `make lint` (after `lint-imports`, which checks the layers in .importlinter) and by
tests/test_architecture.py. Exits 1 and names every offending import.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("orders", "fulfillment", "fulfillment_site")


@dataclass(frozen=True)
class Problem:
    module: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line}: {self.text}"


def _modules(graph) -> list[str]:
    return sorted(module for module in graph.modules if ".migrations" not in module)


def import_cycles(packages: tuple[str, ...] = PACKAGES) -> list[list[str]]:
    """Every circle of imports among the packages' modules (each as its sorted module names)."""
    graph = grimp.build_graph(*packages, cache_dir=None)
    modules = _modules(graph)
    known = set(modules)
    edges = {m: sorted(i for i in graph.find_modules_directly_imported_by(m) if i in known) for m in modules}
    # Tarjan's algorithm, iterative: the graph is small but recursion limits are not ours to rely on.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0
    for start in modules:
        if start in index:
            continue
        work = [(start, iter(edges[start]))]
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
                    work.append((child, iter(edges[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in edges[node]:
                    cycles.append(sorted(component))
    return cycles


def _source_files(root: Path, packages: tuple[str, ...]) -> Iterator[tuple[str, Path]]:
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts), path


def _owner(module: str) -> str:
    """The package a module belongs to (a package owns itself)."""
    return module.rpartition(".")[0] or module


def private_imports(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> list[Problem]:
    """Imports of a `_private` name or module from outside the package that owns it."""
    problems = []
    for module, path in _source_files(root, packages):
        is_package = path.name == "__init__.py"
        here = module if is_package else _owner(module)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolve against this module's package
                    base = here.split(".")[: len(here.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                if source.split(".")[0] not in packages:
                    continue
                targets = [(source, alias.name) for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [
                    (alias.name.rpartition(".")[0], alias.name.rpartition(".")[2])
                    for alias in node.names
                    if alias.name.split(".")[0] in packages
                ]
            else:
                continue
            for source, name in targets:
                dotted = f"{source}.{name}" if source else name
                private = [part for part in dotted.split(".") if part.startswith("_") and not part.startswith("__")]
                if not private:
                    continue
                # The package that owns the first private part: everything inside it may use it. A
                # private name defined in a module belongs to that module's package.
                parts = dotted.split(".")
                owner = ".".join(parts[: parts.index(private[0])])
                if not (root / owner.replace(".", "/") / "__init__.py").exists():
                    owner = _owner(owner)
                if here == owner or here.startswith(owner + "."):
                    continue
                problems.append(
                    Problem(module, node.lineno, f"imports {dotted}, private to {owner}: use or add a public name")
                )
    return problems


def main() -> int:
    failed = False
    for cycle in import_cycles():
        failed = True
        print(f"Import cycle among {len(cycle)} modules: {', '.join(cycle)}", file=sys.stderr)
    for problem in private_imports():
        failed = True
        print(problem, file=sys.stderr)
    if failed:
        print("See docs/architecture.md (Layers) for where each kind of code belongs.", file=sys.stderr)
        return 1
    print(f"No import cycle and no private name crossing a package in {', '.join(PACKAGES)}.")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
