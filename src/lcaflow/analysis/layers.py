"""LCA per layer (section 4, Fig. 4, S11), training and validation, from the per-iteration group sums."""

from __future__ import annotations

import numpy as np

from ..io import require
from ..tables import write_tsv
from .common import layout_of, open_lca

NEEDS = ("lca_layer", "lca_val_layer", "layout")


def layers(lca_path, out_tsv, out_cumulative) -> dict:
    with open_lca(lca_path) as f:
        require(f, NEEDS, lca_path, "assemble")
        layout = layout_of(f, lca_path)
        train, val = f["lca_layer"][()], f["lca_val_layer"][()]
    sizes = np.bincount(layout.layer_index(), minlength=len(layout.layers))
    total, total_val = train.sum(0), val.sum(0)
    rows = {
        "layer": np.array(layout.layers),
        "n_params": sizes,
        "lca": total,
        "lca_per_param": total / sizes,
        "lca_val": total_val,
        "lca_val_per_param": total_val / sizes,
        "share_of_total_lca": total / total.sum() if total.sum() else np.full(len(sizes), np.nan),
    }
    write_tsv(out_tsv, rows)
    cumulative = {"iteration": np.arange(1, len(train) + 1)}
    for j, name in enumerate(layout.layers):
        cumulative[f"train_{name}"] = np.cumsum(train[:, j])
        cumulative[f"val_{name}"] = np.cumsum(val[:, j])
    write_tsv(out_cumulative, cumulative)
    return {name: float(v) for name, v in zip(layout.layers, total)}
