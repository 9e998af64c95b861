"""The package's modules form layers: no import circle (counting imports inside functions) and no
module reaching into another's private names."""

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "lcaflow"


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """module -> the package modules it imports (`from .x import`, `from ..x import`, `from .. import x`)."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = _module(path)
        package = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")
        text = path.read_text()
        found = set()
        for dots, mod, names in re.findall(r"^\s*from (\.+)([\w.]*) import \(?([^)\n]+)", text, flags=re.M):
            base = package[: len(package) - (len(dots) - 1)] if len(dots) > 1 else package
            if mod:
                found.add(".".join([*base, mod]))
            else:
                found |= {".".join([*base, n.strip()]) for n in names.split(",") if n.strip()}
        graph[name] = found - {name}
    return graph


def test_no_import_circles():
    graph = _imports()
    state: dict[str, str] = {}

    def visit(node, trail):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", "import circle: " + " -> ".join(trail[trail.index(node) :] + [node])
        state[node] = "open"
        for other in sorted(graph.get(node, ())):
            visit(other, trail + [node])
        state[node] = "done"

    for module in sorted(graph):
        visit(module, [])


def test_no_private_names_imported_across_modules():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for names in re.findall(r"^\s*from \.+[\w.]* import \(?([^)\n]+)", path.read_text(), flags=re.M):
            offenders += [f"{path.name}: {n.strip()}" for n in names.split(",") if n.strip().startswith("_") and not n.strip().endswith("__")]
    assert not offenders


def _pyplot_uses(tree) -> list[str]:
    """Where a module imports matplotlib.pyplot or chooses matplotlib's backend (matplotlib.use)."""
    found, aliases = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "matplotlib.pyplot" or alias.name.startswith("matplotlib.pyplot."):
                    found.append(f"line {node.lineno}: import {alias.name}")
                elif alias.name == "matplotlib" or alias.name.startswith("matplotlib."):
                    aliases.add(alias.asname or "matplotlib")
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = {alias.name for alias in node.names}
            if node.module.startswith("matplotlib.pyplot") or (node.module == "matplotlib" and names & {"pyplot", "use", "*"}):
                found.append(f"line {node.lineno}: from {node.module} import {', '.join(sorted(names))}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("matplotlib.pyplot"):
            found.append(f"line {node.lineno}: {node.value!r}")  # importlib.import_module("matplotlib.pyplot")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "use":
            if isinstance(node.func.value, ast.Name) and node.func.value.id in aliases:
                found.append(f"line {node.lineno}: {node.func.value.id}.use(...)")
    return found


def test_only_plots_style_sets_up_matplotlib():
    """One matplotlib set-up (backend, settings): plots/style.py. Every other module draws through it."""
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        uses = _pyplot_uses(ast.parse(path.read_text()))
        if uses and path != PACKAGE / "plots" / "style.py":
            offenders[str(path.relative_to(PACKAGE))] = uses
    assert not offenders, offenders
    assert _pyplot_uses(ast.parse((PACKAGE / "plots" / "style.py").read_text())), "the check no longer finds style.py's set-up"
    for offending in ("import matplotlib.pyplot as plt", "from matplotlib import pyplot", "import matplotlib as mpl\nmpl.use('Agg')"):
        assert _pyplot_uses(ast.parse(offending)), offending
    assert not _pyplot_uses(ast.parse("import matplotlib\nfrom matplotlib import ticker\nmatplotlib.colormaps['viridis']"))
