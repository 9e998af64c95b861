"""The Snakemake report's front page: each run's headline numbers and the claims' verdicts, as
reStructuredText for report/workflow.rst, from the runs' summary.json and the claims table made so far.

Torch-free and quick: rules/common.smk calls it only when Snakemake makes a report."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from .paths import ResultPaths, RunPaths
from .tables import read_tsv

HEADER = ("run", "loss, first to last (nats)", "grounding error", "parameters helping", "group that helped most")


def front_page(results: ResultPaths, runs) -> str:
    """A table of each run's headline numbers (a run not summarised yet says so), then the claims' verdicts."""
    rows = [_row(name, results.run(name)) for name in runs]
    lines = ["**Headline numbers of each run** (from ``summary/summary.json``; LCA in nats, < 0 helped)", ""]
    lines += [".. list-table::", "   :header-rows: 1", ""]
    for row in [HEADER, *rows]:
        lines += [f"   * - {row[0]}", *(f"     - {cell}" for cell in row[1:])]
    return "\n".join([*lines, "", claims_line(results), ""])


def _row(name: str, paths: RunPaths) -> tuple[str, ...]:
    path = Path(paths.summary("summary.json"))
    if not path.is_file():
        return (name, "not summarised yet", "-", "-", "-")
    s = json.loads(path.read_text())
    change = s["loss_final"] - s["loss_initial"]
    layers = s["layer_lca"]
    best = min(layers, key=layers.get) if layers else None
    return (
        name,
        f"{s['loss_initial']:.4g} to {s['loss_final']:.4g} ({change:+.4g})",
        f"{s['grounding_cumulative_error_pct']:+.3g}% of the loss change",
        f"{s['pct_helping_of_nonzero_mean']:.1f}% of those that moved",
        f"``{best}`` ({layers[best]:+.3g})" if best is not None else "-",
    )


def claims_line(results: ResultPaths) -> str:
    """The claims' verdicts counted: 'Claims of the paper (results/claims.md): 3 hold, 1 does not, ...'."""
    path = Path(results.claims_tsv)
    if not path.is_file():
        return "Claims of the paper: not checked yet (target ``claims``)."
    verdicts = Counter(_kind(v) for v in read_tsv(path)["holds"])
    said = ", ".join(f"{n} {kind}" for kind, n in verdicts.items())
    return f"Claims of the paper (``{results.claims_md}``): {said}."


def _kind(holds: str) -> str:
    for start, kind in (("not comparable", "not comparable"), ("not measured", "not measured"), ("yes", "hold"), ("no", "do not hold")):
        if str(holds).startswith(start):
            return kind
    return str(holds)
