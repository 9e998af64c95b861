"""One script for both explorer rules: the rule's name picks the function in lcaflow.explorer."""

from pathlib import Path

from lcaflow.progress import stage

sm = snakemake  # noqa: F821 (injected by Snakemake)
i, o, p = sm.input, sm.output, sm.params


def run_explorer():
    from lcaflow.explorer import run_explorer  # inside the stage: a missing `explorer` extra is one line

    run_explorer(Path(i.lca).parent, o[0], i.claims)


def experiment_explorer():
    from lcaflow.explorer import experiment_explorer

    experiment_explorer(sm.wildcards.experiment, p.runs, i.grounding, i.cumulative, i.layers, i.experiment, o[0], i.get("comparison"))


with stage(sm.rule, sm.log[0]):
    {"run_explorer": run_explorer, "experiment_explorer": experiment_explorer}[sm.rule]()
