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


REPO = PACKAGE.parents[1]
SCRIPTS = REPO / "rules" / "scripts"


def test_no_job_script_reads_the_config():
    """A job gets what it needs through its params, inputs and resources (lcaflow.settings): no script reads
    snakemake.config or validates the whole config again."""
    offenders = []
    for path in sorted(SCRIPTS.glob("*.py")):
        text = path.read_text()
        offenders += [f"{path.name}: {word}" for word in ("snakemake.config", "sm.config", "validate_config") if word in text]
    assert not offenders


def test_no_job_module_imports_config_validation():
    """config.py validates the config while the DAG is built; the modules the jobs run never import it."""
    graph = _imports()
    allowed = {"lcaflow.config"}  # and what only the DAG and the tests use
    users = sorted(m for m, deps in graph.items() if "lcaflow.config" in deps and m not in allowed)
    assert users == [], users


# The results layout's names (a file's as a whole string or after a '/', a folder's beside a '/', or either
# divided onto a path): only lcaflow.paths spells them
FILES = r"lca\.h5|trajectory\.h5|grounding\.json|params\.f32|claims\.(md|tsv)|plan\.(md|json)"
FOLDERS = r"runs|chunks|stats|figures|summary|experiments|train_checkpoint"
LAYOUT_NAMES = re.compile(rf"(^|/)({FILES})$|(^|/)({FOLDERS})/|/({FOLDERS})$")
DIVIDED = re.compile(rf"^({FILES}|{FOLDERS})$")


def _path_literals(tree) -> list[str]:
    """String constants (f-string parts included) that name a file or folder of the results layout;
    docstrings left out."""
    import ast

    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    strings = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
        and LAYOUT_NAMES.search(node.value.strip())
    ]
    divided = [
        side.value
        for node in ast.walk(tree)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)
        for side in (node.left, node.right)
        if isinstance(side, ast.Constant) and isinstance(side.value, str) and DIVIDED.match(side.value)
    ]
    return strings + divided


def test_no_literal_result_path_outside_the_layout_module():
    import ast

    found = []
    for path in [*PACKAGE.rglob("*.py"), *SCRIPTS.glob("*.py")]:
        if path.name == "paths.py":
            continue
        found += [f"{path.relative_to(REPO)}: {s!r}" for s in _path_literals(ast.parse(path.read_text()))]
    for path in [REPO / "Snakefile", *(REPO / "rules").glob("*.smk")]:
        for line in path.read_text().splitlines():
            code = line.split("#", 1)[0]
            found += [f"{path.relative_to(REPO)}: {s!r}" for s in re.findall(r"[\"']([^\"']*)[\"']", code) if LAYOUT_NAMES.search(s)]
    assert not found, "\n".join(found)


def test_the_layout_check_finds_a_literal_path():
    import ast

    found = _path_literals(ast.parse('p = f"{results}/runs/{run}/lca.h5"\nq = folder / "stats"\n"""lca.h5 doc"""'))
    assert sorted(found) == ["/lca.h5", "/runs/", "stats"]


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


def test_every_analysis_table_is_listed_with_the_rule_that_makes_it():
    """paths.STATS_FILES names the rule of each stats/ file (the reader's hint for a table not built yet)."""
    from lcaflow.paths import STATS_FILES

    text = (REPO / "rules" / "analysis.smk").read_text()
    made = {}
    for block in re.split(r"^rule ", text, flags=re.M)[1:]:
        rule = block.split(":", 1)[0]
        made.update({name: rule for name in re.findall(r'RUN\.stats\("([^"]+)"\)', block)})
    assert made == STATS_FILES
