"""One script for every analysis rule: the rule's name picks the function in lcaflow."""

from lcaflow import analysis, experiments
from lcaflow.progress import stage

sm = snakemake  # noqa: F821 (injected by Snakemake)
i, o, p = sm.input, sm.output, sm.params


def experiment():
    experiments.experiment(sm.wildcards.experiment, p.runs, i.layers, i.grounding, o.layers, o.json)


def comparison():
    a = experiments.collect(p.runs, i.layers_a, i.grounding_a)
    b = experiments.collect(p.other_runs, i.layers_b, i.grounding_b)
    experiments.compare(sm.wildcards.experiment, p.other, a, b, o[0])


RULES = {
    "grounding_stats": lambda: analysis.grounding(i.lca, o.tsv),
    "noise": lambda: analysis.noise(
        i.lca, o.json, o.iterations, o.layers, o.histogram, o.help_fraction, p.sample_size, p.seed
    ),
    "oscillation": lambda: analysis.oscillation(i.lca, o.json, o.layers, o.traces, p.oscillation_window),
    "layer_stats": lambda: analysis.layers(i.lca, o.layers, o.cumulative),
    "synchronization": lambda: analysis.synchronization(
        i.lca, o.json, o.moments, p.top_moments, p.max_shift, p.shift_repeats, p.seed, p.sync_min_fraction
    ),
    "neurons": lambda: analysis.neurons(
        i.lca, o.h5, o.correlation, o.specialization, o.json, p.top_params, p.correlation_nodes, p.correlation_weights_per_node, p.seed
    ),
    "example_groups_stats": lambda: analysis.example_groups(i.lca, dict(o.items())),
    "experiment": experiment,
    "comparison": comparison,
}

with stage(sm.rule, sm.log[0]):
    RULES[sm.rule]()
