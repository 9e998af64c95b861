"""Grounding per iteration (the paper's Table S1), from lca.h5's reductions."""

from __future__ import annotations

import json

import numpy as np

from ..grounding import grounding_report
from ..integrate import ADAPTIVE_ONLY
from ..io import require
from ..tables import write_tsv
from .common import open_lca

NEEDS = ("loss", "loss_val", "error", "error_val", "lca_first_order", "lca_first_order_val", "num_splits")


def grounding(lca_path, out_tsv) -> dict:
    """Per-iteration table of real loss change, LCA and first-order sums and their errors (with adaptive
    quadrature also the trapezoid's error before its removal; with the stored rows' sums, the error of
    their number format); returns the run's summary (the numbers of the assemble stage's grounding.json)."""
    with open_lca(lca_path) as f:
        require(f, NEEDS, lca_path, "assemble")
        d = {k: f[k][()] for k in NEEDS + ADAPTIVE_ONLY + ("stored_row_sum",) if k in f}
        lca_config = json.loads(f.attrs["lca_config"])
        sample_fraction = float(f.attrs.get("midpoint_sample_fraction", 0.0))
    rows = {"iteration": np.arange(len(d["error"]))}
    for sfx in ("", "_val"):
        d_loss = np.diff(d["loss" + sfx])
        rows.update(
            {
                f"loss{sfx}": d["loss" + sfx][:-1],
                f"loss_change{sfx}": d_loss,
                f"lca_sum{sfx}": d_loss + d["error" + sfx],
                f"error{sfx}": d["error" + sfx],
                f"first_order_sum{sfx}": d["lca_first_order" + sfx],
                f"first_order_error{sfx}": d["lca_first_order" + sfx] - d_loss,
            }
        )
        if "trapezoid_error" + sfx in d:
            rows[f"trapezoid_error{sfx}"] = d["trapezoid_error" + sfx]
    if "trapezoid_residual" in d:  # what the midpoint sample's correction left of the trapezoid's error
        rows["trapezoid_residual"] = d["trapezoid_residual"]
    rows["num_splits"] = d["num_splits"]
    if "num_splits_val" in d:
        rows["num_splits_val"] = d["num_splits_val"]
    if "stored_row_sum" in d:  # the stored (float32 or bfloat16) row's sum minus the float64 sum
        rows["stored_sum_error"] = d["stored_row_sum"] - rows["lca_sum"]
    write_tsv(out_tsv, rows)
    return grounding_report(d, lca_config["tolerance"], lca_config.get("quadrature", "simpson"), sample_fraction)
