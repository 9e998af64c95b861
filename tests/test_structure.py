"""The package's modules form layers: no import circle (counting imports inside functions) and no
module reaching into another's private names."""

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "lcaflow"


def _imports() -> dict[str, set[str]]:
    graph = {}
    for path in PACKAGE.glob("*.py"):
        text = path.read_text()
        graph[path.stem] = set(re.findall(r"^\s*from \.(\w+) import", text, flags=re.M)) - {path.stem}
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
    for path in PACKAGE.glob("*.py"):
        for names in re.findall(r"^\s*from \.\w+ import \(?([^)\n]+)", path.read_text(), flags=re.M):
            offenders += [f"{path.name}: {n.strip()}" for n in names.split(",") if n.strip().startswith("_")]
    assert not offenders
