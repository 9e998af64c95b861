"""Oscillation (Table S2, Fig. S7, S8): how often weights turn and gradients change sign.

Weight turns and gradient sign changes come from the gradient jobs' per-parameter counts (every parameter,
whatever is stored; the trajectory is not read); the traces of Fig. S8 from the stored LCA of the last
layer's kernel and the weight and gradient traces the jobs keep for it."""

from __future__ import annotations

import math

import numpy as np

from ..io import finite, require, write_json
from ..layout import kernel_of
from ..storage import matrix
from ..tables import write_tsv
from .common import layout_of, open_lca, source_of

NEEDS = ("grad_sign_changes", "step_sign_changes", "grad_trace", "param_trace", "trace_index", "layout")


def window_traces(f, lca_path, window) -> tuple[dict, dict]:
    """Fig. S8: in the window, the traced weights of the last layer's kernel that hurt and helped most: their
    value, gradient and LCA per iteration."""
    layout = layout_of(f, lca_path)
    lca = matrix(f, "lca", lca_path)
    T = lca.shape[0]
    w0 = min(window[0], max(T - 2, 0))
    w1 = max(min(window[1], T), w0 + 1)
    traced = f["trace_index"][()]
    kernel = kernel_of(layout, layout.layers[-1])
    if traced.size == 0:  # a sample without a weight of the last kernel
        why = f"no weight of {layout.names[kernel]} in the stored sample"
        return {"iteration": np.arange(0)}, {"layer": layout.layers[-1], "tensor": layout.names[kernel], "skipped": why}
    where = lca.position(traced)
    lo, hi = int(where.min()), int(where.max()) + 1
    window_lca = lca[w0:w1, lo:hi][:, where - lo].astype(np.float64)
    net = window_lca.sum(0)
    chosen = {"most_hurting": int(np.argmax(net)), "most_helping": int(np.argmin(net))}
    traces = {"iteration": np.arange(w0, w1)}
    for role, j in chosen.items():
        traces[f"{role}_weight"] = f["param_trace"][w0:w1, j].astype(np.float64)
        traces[f"{role}_grad"] = f["grad_trace"][w0:w1, j].astype(np.float64)
        traces[f"{role}_lca"] = window_lca[:, j]
    size = layout.sizes[kernel]
    summary = {
        "layer": layout.layers[-1],
        "tensor": layout.names[kernel],
        "window": [int(w0), int(w1)],
        "chosen_from": (
            source_of(lca, layout.num_params) if lca.sampled
            else f"all {size:,} weights of the kernel" if traced.size == size
            else f"a fixed random {traced.size:,} of its {size:,} weights"
        ),  # fmt: skip
        **{
            role: {"index_in_tensor": int(traced[j] - layout.offsets[kernel]), "net_lca": float(net[j])}
            for role, j in chosen.items()
        },
    }
    return traces, summary


def _between_checkpoints(lca_path) -> dict:
    """For a run of checkpoints: why its turns are not the optimizer's oscillation (they count direction changes
    between checkpoints, each many optimizer steps apart)."""
    import json

    with open_lca(lca_path) as f:
        steps = json.loads(f.attrs["steps"]) if "steps" in f.attrs else None
    if steps is None:
        return {}
    every = np.unique(np.diff(steps))
    interval = f"{every[0]}" if len(every) == 1 else f"{every.min()}-{every.max()}"
    return {"skipped": f"skipped: checkpoints every {interval} steps; turns between them are not the optimizer's oscillation"}


def oscillation(lca_path, out_json, out_layers, out_traces, window=(50, 200)) -> dict:
    """`window`: the optimizer steps [start, stop) whose traces are drawn; a run of checkpoints has segments,
    not steps (its window of steps would be clipped to its last segment or two): its traces span every segment."""
    between = _between_checkpoints(lca_path)
    with open_lca(lca_path) as f:
        require(f, NEEDS, lca_path, "assemble")
        layout = layout_of(f, lca_path)
        T = f["lca_layer"].shape[0]
        if between:
            window = (0, T)
        # per parameter: how often its step theta_t+1 - theta_t changes direction, and its gradient's sign
        turns, crossings = f["step_sign_changes"][()].astype(np.int64), f["grad_sign_changes"][()].astype(np.int64)
        traces, trace_summary = window_traces(f, lca_path, window)
    write_tsv(out_traces, traces)
    layer_index = layout.layer_index()
    L = len(layout.layers)

    def per_layer(changes):
        return np.bincount(layer_index, weights=changes, minlength=L) / np.bincount(layer_index, minlength=L)

    def every(mean_changes):
        return T / mean_changes if mean_changes > 0 else math.inf

    weight_layer, grad_layer = per_layer(turns), per_layer(crossings)
    write_tsv(
        out_layers,
        {
            "layer": np.array(layout.layers),
            "weight_direction_changes": weight_layer,
            "iterations_per_weight_direction_change": np.array([every(v) for v in weight_layer]),
            "gradient_sign_changes": grad_layer,
            "iterations_per_gradient_sign_change": np.array([every(v) for v in grad_layer]),
        },
    )
    mean_turns, mean_crossings = float(turns.mean()), float(crossings.mean())
    result = {
        "iterations": int(T),
        # Table S2's convention: T over the mean number of changes per parameter (all parameters)
        "weight_direction_changes_mean": mean_turns,
        "iterations_per_weight_direction_change": finite(every(mean_turns)),
        "gradient_sign_changes_mean": mean_crossings,
        "iterations_per_gradient_sign_change": finite(every(mean_crossings)),
        "gradient_measured": True,  # counted in the gradient jobs for every parameter
        "traces": trace_summary,
        **between,
    }
    write_json(out_json, result)
    return result
