"""The package's modules form layers: no import circle (counting imports inside functions) and no
module reaching into another's private names."""

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
