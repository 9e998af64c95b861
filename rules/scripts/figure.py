"""One script for every figure rule: the rule's name picks the drawing function in lcaflow.plots."""

from lcaflow import plots
from lcaflow.progress import stage

sm = snakemake  # noqa: F821 (injected by Snakemake)
i, o, p = sm.input, sm.output, sm.params
run = sm.wildcards.get("run")


def time():
    """The run's time axis: iterations, or optimizer steps for a run of checkpoints (lca.h5's steps)."""
    return plots.TimeAxis.of(i.lca)


def synchronization():
    plots.sync_figure(i.moments, i.json, o.layers, run, time=time())
    plots.sync_classes_figure(i.moments, i.json, o.classes, run, time=time())


def neurons():
    plots.neurons_figure(i.h5, o.neurons, run, time=time())
    plots.params_figure(i.h5, o.parameters, run, time=time())
    plots.correlation_figure(i.json, o.correlation, run)
    plots.specialization_figure(i.json, i.h5, o.specialization, run)


def example_groups():
    plots.who_helped_whom_figure(i.whom, i.whom_time, o.whom, run, time=time())
    plots.interference_figure(i.interference, i.pairs, o.interference, run, time=time())
    plots.clusters_figure(i.clusters, i.curves, i.json, o.clusters, run, time=time())


def heatmaps():
    plots.heatmap_figure(i.lca, p.heatmap_iterations, o[0])


RULES = {
    "figure_grounding": lambda: plots.grounding_figure(i.tsv, i.json, o[0], run, time=time()),
    "figure_noise": lambda: plots.noise_figure(
        i.iterations, i.layers, i.histogram, i.help_fraction, i.json, o[0], run, time=time()
    ),
    "figure_heavy_tails": lambda: plots.heavy_tail_figure(i.histogram, i.json, o[0], run),
    "figure_oscillation": lambda: plots.oscillation_figure(i.layers, i.traces, i.json, o[0], run, time=time()),
    "figure_layers": lambda: plots.layers_figure(i.layers, i.cumulative, o[0], run, time=time()),
    "figure_synchronization": synchronization,
    "figure_neurons": neurons,
    "heatmaps": heatmaps,
    "figure_example_groups": example_groups,
    "animation": lambda: plots.animation(i.lca, o[0], p.animation_max_frames, p.animation_fps),
    "figure_experiment": lambda: plots.experiment_figure(
        i.layers, i.summary, o[0], sm.wildcards.experiment, i.get("comparison")
    ),
}

with stage(sm.rule, sm.log[0]):
    RULES[sm.rule]()
