"""The layout rules of docs/ARCHITECTURE.md: no import cycles between the modules of
either package (imports inside functions count: a lazy import hides a cycle, it does
not remove it), and no module much over 500 lines."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("clusteringsdf_core", "clusteringsdf_ros")
MAX_LINES = 600          # "about 500": the limit a module may not pass


def _modules(root: Path, package: str) -> dict[str, Path]:
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (anywhere in the file). Importing
    ``a.b.c`` also runs ``a`` and ``a.b`` (their ``__init__``), so those count too,
    except the module's own enclosing packages (already being imported)."""
    modules = _modules(root, package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_init = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = name.split(".") if is_init else name.split(".")[:-1]
                    here = here[:len(here) - node.level + 1]
                    base = ".".join(here + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                parts = target.split(".")
                for i in range(1, len(parts) + 1):
                    dep = ".".join(parts[:i])
                    if dep in modules and dep != name and not name.startswith(dep + "."):
                        graph[name].add(dep)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycles(package):
    found = cycles(import_graph(ROOT, package))
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_is_much_over_500_lines(package):
    long = {str(p.relative_to(ROOT)): n for p in _modules(ROOT, package).values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by job): {long}"


def test_the_checker_finds_a_lazy_cycle_and_accepts_a_tree(tmp_path):
    pkg = tmp_path / "demo_pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from demo_pkg.sub.leaf import f\n")
    (pkg / "sub" / "leaf.py").write_text("def f():\n    return 1\n")
    (pkg / "a.py").write_text("from demo_pkg.sub import leaf\n")
    (pkg / "b.py").write_text("def g():\n    from . import a\n")
    assert cycles(import_graph(tmp_path, "demo_pkg")) == []
    (pkg / "sub" / "leaf.py").write_text("def f():\n    from demo_pkg import b\n    return 1\n")
    (pkg / "a.py").write_text("from demo_pkg.sub import leaf\nfrom demo_pkg import b\n")
    (pkg / "b.py").write_text("def g():\n    from . import a\n")
    found = cycles(import_graph(tmp_path, "demo_pkg"))
    assert found and {"demo_pkg.a", "demo_pkg.b"} <= set(found[0])
