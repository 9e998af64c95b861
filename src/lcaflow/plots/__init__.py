"""The figures of one run (and of one experiment): one module per family of measurements, drawn from the
analysis tables (stats/) or, for the heat maps and the animation, from lca.h5; `style` is the one
matplotlib set-up, with every colour, the colour map and the atomic, deterministic save.

Every figure is readable without the paper: a title saying what it shows, axes with units (LCA and
losses are in nats), a legend where colours carry meaning. The same inputs give the same bytes."""

from .animate import animation
from .example_groups import clusters_figure, interference_figure, who_helped_whom_figure
from .experiment import experiment_figure
from .grounding import grounding_figure
from .heatmaps import PixelMap, default_iterations, heatmap_figure, layer_matrix
from .layers import layers_figure
from .neurons import correlation_figure, neurons_figure, params_figure, specialization_figure
from .noise import heavy_tail_figure, noise_figure
from .oscillation import oscillation_figure
from .overview import overview_figure
from .style import skipped_figure
from .synchronization import sync_classes_figure, sync_figure
from .timeaxis import ITERATIONS, TimeAxis

__all__ = [
    "ITERATIONS",
    "PixelMap",
    "TimeAxis",
    "animation",
    "clusters_figure",
    "correlation_figure",
    "default_iterations",
    "experiment_figure",
    "grounding_figure",
    "heatmap_figure",
    "heavy_tail_figure",
    "interference_figure",
    "layer_matrix",
    "layers_figure",
    "neurons_figure",
    "noise_figure",
    "oscillation_figure",
    "overview_figure",
    "params_figure",
    "skipped_figure",
    "specialization_figure",
    "sync_classes_figure",
    "sync_figure",
    "who_helped_whom_figure",
]
