"""First look at a run: how many parameters help or hurt, and how much each layer learned.

Its tables are the analyses' (stats/layers.tsv, stats/noise_iterations.tsv, stats/grounding.tsv); the first
look is summary.json and the overview figure, made as soon as the run is assembled."""

from __future__ import annotations

import json

import numpy as np

from .errors import CorruptFileError
from .io import require, write_json
from .layout import Layout
from .plots.overview import overview_figure
from .plots.timeaxis import TimeAxis
from .storage import open_lca

NEEDS = ("loss", "loss_val", "layout", "lca_layer", "lca_val_layer", "helping_layer", "hurting_layer", "stored_row_sum")


def summarize(lca_path: str, out_json, out_png) -> dict:
    """summary.json (the run's headline numbers) and its overview figure, from lca.h5's reductions."""
    d = _read(lca_path)
    rows = _iterations(d)
    summary = {
        "iterations": int(len(rows["lca_sum"])),
        "num_params": int(d["layout"].num_params),
        "pct_helping_of_nonzero_mean": float(rows["pct_helping_of_nonzero"].mean()),
        "pct_helping_mean": float(rows["pct_helping"].mean()),
        "pct_hurting_mean": float(rows["pct_hurting"].mean()),
        "pct_zero_mean": float(rows["pct_zero"].mean()),
        "loss_initial": float(d["loss"][0]),
        "loss_final": float(d["loss"][-1]),
        "loss_val_final": float(d["loss_val"][-1]),
        "layer_lca": {name: float(v) for name, v in zip(d["layout"].layers, d["layer_lca"])},
        "grounding_cumulative_error_pct": d["grounding"]["train"]["cumulative_error_pct"],
        "grounding_max_abs_iteration_error": d["grounding"]["train"]["max_abs_iteration_error"],
    }
    write_json(out_json, summary, allow_nan=True)
    overview_figure(
        out_png, d["loss"], d["loss_val"], d["grounding"], rows, d["layout"].layers, d["layer_lca"], d["layer_lca_val"], TimeAxis.of(lca_path)
    )
    return summary


def _read(lca_path) -> dict:
    with open_lca(lca_path) as f:
        require(f, NEEDS, lca_path, "assemble")
        try:
            layout = Layout.from_h5(f["layout"])
            grounding = json.loads(f.attrs["grounding"])
        except (KeyError, ValueError) as err:
            raise CorruptFileError(f"{lca_path}: metadata incomplete ({err}); delete it and rerun assemble") from err
        return {
            "layout": layout,
            "grounding": grounding,
            "loss": f["loss"][()],
            "loss_val": f["loss_val"][()],
            "helping": f["helping_layer"][()].sum(1),
            "hurting": f["hurting_layer"][()].sum(1),
            "lca_sum": f["stored_row_sum"][()],  # the stored rows' sums, as the rows are read
            "layer_lca": f["lca_layer"][()].sum(0),
            "layer_lca_val": f["lca_val_layer"][()].sum(0),
        }


def _iterations(d: dict) -> dict:
    """Per iteration: the LCA sum and the shares of parameters helping, hurting and not moving."""
    K, helping, hurting = d["layout"].num_params, d["helping"], d["hurting"]
    return {
        "lca_sum": d["lca_sum"],
        "pct_helping": 100 * helping / K,
        "pct_hurting": 100 * hurting / K,
        "pct_zero": 100 * (K - helping - hurting) / K,
        "pct_helping_of_nonzero": 100 * helping / np.maximum(helping + hurting, 1),
    }
