"""One script for every figure rule: the rule's name picks the drawing function in lcaflow."""

from lcaflow import figures, visualize
from lcaflow.progress import stage

sm = snakemake  # noqa: F821 (injected by Snakemake)
i, o, p = sm.input, sm.output, sm.params
run = sm.wildcards.get("run")


def synchronization():
    figures.sync_figure(i.moments, i.json, o.layers, run)
    figures.sync_classes_figure(i.moments, i.json, o.classes, run)


def neurons():
    figures.neurons_figure(i.h5, o.neurons, run)
    figures.params_figure(i.h5, o.parameters, run)
    figures.correlation_figure(i.json, o.correlation, run)
    figures.specialization_figure(i.json, i.h5, o.specialization, run)


def heatmaps():
    visualize.heatmap_figure(i.lca, p.heatmap_iterations, o[0])


RULES = {
    "figure_grounding": lambda: figures.grounding_figure(i.tsv, i.json, o[0], run),
    "figure_noise": lambda: figures.noise_figure(i.iterations, i.layers, i.histogram, i.help_fraction, i.json, o[0], run),
    "figure_heavy_tails": lambda: figures.heavy_tail_figure(i.histogram, i.json, o[0], run),
    "figure_oscillation": lambda: figures.oscillation_figure(i.layers, i.traces, i.json, o[0], run),
    "figure_layers": lambda: figures.layers_figure(i.layers, i.cumulative, o[0], run),
    "figure_synchronization": synchronization,
    "figure_neurons": neurons,
    "heatmaps": heatmaps,
    "animation": lambda: visualize.animation(i.lca, o[0], p.animation_max_frames, p.animation_fps),
    "figure_experiment": lambda: figures.experiment_figure(
        i.layers, i.summary, o[0], sm.wildcards.experiment, i.get("comparison")
    ),
}

with stage(sm.rule, sm.log[0]):
    RULES[sm.rule]()
