"""How well the LCA adds up to the real loss changes: the paper's Table S1 quantities.

Shared by the assemble stage (which judges a run by it) and the grounding analysis (torch-free)."""

from __future__ import annotations

import numpy as np


def grounding_report(lca_file: dict, tolerance: float) -> dict:
    """How well the LCA sums to the real loss changes (the paper's Table S1 quantities), train and val."""
    report = {"tolerance": tolerance}
    for split, sfx in (("train", ""), ("val", "_val")):
        loss = lca_file["loss" + sfx]
        d_loss = np.diff(loss)
        error = lca_file["error" + sfx]
        fo_error = lca_file["lca_first_order" + sfx] - d_loss
        total = float(loss[-1] - loss[0])
        report[split] = {
            "loss_initial": float(loss[0]),
            "loss_final": float(loss[-1]),
            "total_loss_change": total,
            "lca_total": float(total + error.sum()),
            "cumulative_error": float(error.sum()),
            "cumulative_error_pct": float(100 * error.sum() / abs(total)) if total else float("nan"),
            "first_order_cumulative_error_pct": float(100 * fo_error.sum() / abs(total)) if total else float("nan"),
            "max_abs_iteration_error": float(np.abs(error).max()),
            "mean_abs_iteration_error": float(np.abs(error).mean()),
            "first_order_max_abs_iteration_error": float(np.abs(fo_error).max()),
            "first_order_mean_abs_iteration_error": float(np.abs(fo_error).mean()),
            "iterations_over_tolerance": int((np.abs(error) > tolerance).sum()),
        }
    splits = lca_file["num_splits"]
    report["iterations"] = int(len(splits))
    report["iterations_refined"] = int((splits > 1).sum())
    report["max_splits_used"] = int(splits.max())
    report["iterations_over_tolerance"] = int(
        ((np.abs(lca_file["error"]) > tolerance) | (np.abs(lca_file["error_val"]) > tolerance)).sum()
    )
    return report
