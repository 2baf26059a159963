"""The house rules that import-linter's contracts cannot say, checked from the code itself.

    python tools/check_structure.py        # prints each broken rule; exit 1 if any

- no import cycles between modules of zoo, runspec, engine and cockpit (imports inside functions
  count: they are still a dependency, only a later one; ``if TYPE_CHECKING`` ones do not);
- one atomic write and one lock helper: ``os.replace``, ``mkstemp`` and ``flock`` appear only in
  runspec/fs.py;
- metric names are spelled only in runspec/run/metrics.py (the registry) and in tests;
- one module changes a run's lifecycle: state.json transitions are written only by
  runspec/run/rundir.py (its ``transition``/``modify``/``create_state`` are the only writers).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("zoo", "runspec", "engine", "cockpit")
ONLY_IN = {  # a pattern -> the one file allowed to contain it
    r"\bos\.replace\(": "runspec/fs.py",
    r"\bmkstemp\(": "runspec/fs.py",
    r"\bfcntl\.flock\(": "runspec/fs.py",
    r"\b_write_state\(": "runspec/run/rundir.py",
    r"state_file\b.*\b(write_text|open)\(": "runspec/run/rundir.py",
}


def import_cycles() -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm)."""
    sys.path.insert(0, str(ROOT))
    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True, cache_dir=None)
    modules = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:  # iterative enough for a few hundred modules
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for m in modules:
        if m not in index:
            visit(m)
    return groups



def misplaced_patterns() -> list[str]:
    problems = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                code = line.split("#", 1)[0]
                for pattern, home in ONLY_IN.items():
                    if rel != home and re.search(pattern, code):
                        problems.append(f"{rel}:{n}: {pattern!r} belongs only in {home}")
    return problems


METRIC_NAME = re.compile(r"^(train|train_benchmarks|final_benchmarks|debug|aux)/")
METRICS_HOME = "runspec/run/metrics.py"


def metric_literals() -> list[str]:
    """Metric names spelled as string literals outside the registry (docstrings do not count)."""
    problems = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel == METRICS_HOME:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                          if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                          and node.body and isinstance(node.body[0], ast.Expr)
                          and isinstance(node.body[0].value, ast.Constant)}
            for node in ast.walk(tree):
                if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                        and METRIC_NAME.match(node.value)):
                    problems.append(f"{rel}:{node.lineno}: metric name {node.value!r} belongs in {METRICS_HOME}")
    return problems


def problems() -> list[str]:
    out = [f"import cycle: {' <-> '.join(g)}" for g in import_cycles()]
    return out + misplaced_patterns() + metric_literals()


def main() -> int:
    found = problems()
    for line in found:
        print(line)
    print(f"{len(found)} problem(s)" if found else "structure: no cycles, one atomic write, one lock, one state writer, metric names only in the registry")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
