"""The paper's measurements of one run, from lca.h5 (and trajectory.h5) into small tables: one module per
family of measurements, each naming the datasets (reductions of lcaflow.reducers) it reads in NEEDS.

Sums per group, neuron, class and parameter, sign counts and per-iteration moments are read from the
gradient jobs' reductions; only what follows individual parameters over iterations streams the stored
matrix, in blocks of rows, so memory is bounded by K and by the parameters followed, never by T x K."""

from .common import NO_CLASSES_REASON, has_classes
from .example_groups import example_groups
from .grounding_table import grounding
from .layers import layers
from .neurons import correlation_groups, neurons
from .noise import noise
from .oscillation import oscillation
from .synchronization import synchronization

__all__ = [
    "NO_CLASSES_REASON",
    "correlation_groups",
    "example_groups",
    "grounding",
    "has_classes",
    "layers",
    "neurons",
    "noise",
    "oscillation",
    "synchronization",
]
