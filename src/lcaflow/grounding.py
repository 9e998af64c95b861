"""How well the LCA adds up to the real loss changes: the paper's Table S1 quantities.

Shared by the assemble stage (which judges a run by it) and the grounding analysis (torch-free)."""

from __future__ import annotations

import numpy as np

from .integrate import TRAPEZOID, evaluations


def grounding_report(lca_file: dict, tolerance: float, quadrature: str = "simpson", sample_fraction: float = 0.0) -> dict:
    """How well the LCA sums to the real loss changes (the paper's Table S1 quantities), train and val; the
    cost of the quadrature, and with adaptive quadrature the trapezoid errors it removed (`sample_fraction`:
    the share of the training split in its midpoint sample, lca.midpoint_sample, evaluated at every iteration)."""
    report = {"tolerance": tolerance, "quadrature": quadrature}
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
    # training-split gradient evaluations per iteration, each end point counted once (theta_0's left out)
    report["evaluations_per_iteration"] = float(1 + evaluations(splits).mean())
    if "trapezoid_error" in lca_file:
        report["iterations_trapezoid"] = int((splits == TRAPEZOID).sum())
        if sample_fraction and "trapezoid_residual" in lca_file:
            sampled = np.isfinite(lca_file["trapezoid_residual"])
            report["midpoint_sample_fraction"] = sample_fraction
            report["evaluations_per_iteration"] += float(sample_fraction * sampled.mean())
            # what the sample's correction left of the trapezoid's error, removed in proportion to |LCA|
            left = np.where(splits == TRAPEZOID, lca_file["trapezoid_residual"], 0.0)
            report["train_residual_removed"] = float(left.sum())
            report["train_residual_removed_pct"] = float(100 * left.sum() / abs(report["train"]["total_loss_change"] or np.nan))
        splits_val = lca_file["num_splits_val"]
        report["val_evaluations_per_iteration"] = float(1 + evaluations(splits_val).mean())
        report["val_iterations_refined"] = int((splits_val > 1).sum())  # refined on the validation split alone too
        report["max_splits_used"] = int(max(splits.max(), splits_val.max()))
        for split, sfx in (("train", ""), ("val", "_val")):
            removed = np.where(lca_file["num_splits" + sfx] == TRAPEZOID, lca_file["trapezoid_error" + sfx], 0.0)
            total = report[split]["total_loss_change"]
            report[split]["trapezoid_error_removed"] = float(removed.sum())
            report[split]["trapezoid_error_removed_pct"] = float(100 * removed.sum() / abs(total)) if total else float("nan")
            report[split]["trapezoid_max_abs_error_removed"] = float(np.abs(removed).max())
    report["iterations_over_tolerance"] = int(
        ((np.abs(lca_file["error"]) > tolerance) | (np.abs(lca_file["error_val"]) > tolerance)).sum()
    )
    return report


def group_grounding(lca_file: dict, names: list[str]) -> dict:
    """How well each example group's LCA (of one split, summed over parameters and iterations) adds up to
    that group's own loss change, and how the groups add up to the data loss (the total less any weight decay).
    Per group the quadrature is the run's rule applied to the group's gradient: its error is not refined on its
    own, so it is reported here rather than judged."""
    loss = np.asarray(lca_file["loss_class"], dtype=np.float64)  # (T+1, E)
    lca = np.asarray(lca_file["lca_class_layer"], dtype=np.float64).sum(axis=(0, 2))  # (E,)
    change = loss[-1] - loss[0]
    error = lca - change
    with np.errstate(divide="ignore", invalid="ignore"):
        pct = np.where(change != 0, 100 * error / np.abs(change), np.nan)
    worst = int(np.nanargmax(np.abs(pct))) if np.isfinite(pct).any() else int(np.argmax(np.abs(error)))
    return {
        "groups": len(names),
        "loss_change": dict(zip(names, change.tolist())),
        "lca_total": dict(zip(names, lca.tolist())),
        "cumulative_error": dict(zip(names, error.tolist())),
        "max_abs_cumulative_error": float(np.abs(error).max()),
        "worst_group": names[worst],
        "worst_cumulative_error_pct": float(pct[worst]),
        "data_loss_change": float(change.sum()),  # the groups' losses sum to the data loss at every theta
    }


def curve_grounding(lca_file: dict, tolerance: float) -> dict:
    """How well each sampled example's LCA (lca.example_curves), summed over groups and iterations, adds up to
    its own loss change L_n(theta_T) - L_n(theta_0), per split; the worst example named by its dataset index."""
    report = {}
    for split, sfx in (("train", ""), ("val", "_val")):
        if "curve_lca" + sfx not in lca_file:
            continue
        loss = np.asarray(lca_file["curve_loss" + sfx], dtype=np.float64)  # (T+1, M)
        error = np.asarray(lca_file["curve_lca" + sfx]).sum(axis=2) - np.diff(loss, axis=0)  # (T, M)
        cumulative = error.sum(axis=0)
        removed = np.asarray(lca_file["curve_error" + sfx])
        worst = int(np.argmax(np.abs(cumulative)))
        report[split] = {
            "examples": int(loss.shape[1]),
            "worst_example": int(lca_file["curve_index" + sfx][worst]),
            "worst_cumulative_error": float(cumulative[worst]),
            "worst_loss_change": float(loss[-1, worst] - loss[0, worst]),
            "mean_abs_cumulative_error": float(np.abs(cumulative).mean()),
            "max_abs_iteration_error": float(np.abs(error).max()),
            "iterations_over_tolerance": int((np.abs(error) > tolerance).sum()),  # (iteration, example) pairs
            # Simpson's error on the sample before its removal (lcaflow.curves), and the panels it took
            "quadrature_error_removed_max_abs": float(np.abs(removed).max()),
            "quadrature_error_removed_mean_abs": float(np.abs(removed).mean()),
            "quadrature_error_removed_cumulative_max_abs": float(np.abs(removed.sum(axis=0)).max()),
            "worst_quadrature_example": int(lca_file["curve_index" + sfx][int(np.argmax(np.abs(removed.sum(axis=0))))]),
            "mean_panels": float(np.mean(lca_file["curve_splits" + sfx])),
        }
    return report


# A recorded run is flagged when its smoothed minibatch losses differ from the full-set losses by more than
# this share of the full-set loss (median over windows) and by more than NOISE_SE standard errors, or when the
# two change over the run (first window to last) by amounts that differ by more than TREND_TOLERANCE of the
# recorded change and by more than NOISE_SE standard errors (other data can keep the level and lose the trend).
RECORDED_LOSS_TOLERANCE = 0.25
TREND_TOLERANCE = 0.5
NOISE_SE = 4.0


def recorded_losses_check(minibatch_loss, loss) -> dict | None:
    """Does the evaluated model reproduce the recording's own training losses? The minibatch loss of step t
    (at theta_t, on a minibatch) scatters around the full-set loss the workflow computed at theta_t: both
    are averaged over windows of about T/10 steps, and the run is flagged (`reproduced` false) when the
    window means differ by more than RECORDED_LOSS_TOLERANCE of the full-set loss (median over windows) and
    by more than NOISE_SE standard errors of a window mean (the differences' spread over the run / sqrt(window)),
    or when their changes from the first window to the last differ (TREND_TOLERANCE, NOISE_SE).
    None without recorded losses (a run of checkpoints, or losses not given to the recorder)."""
    mb = np.asarray(minibatch_loss, dtype=np.float64)
    full = np.asarray(loss, dtype=np.float64)[: len(mb)]
    known = np.isfinite(mb)
    if known.sum() < 2:
        return None
    mb, full = mb[known], full[known]
    width = max(1, len(mb) // 10)
    starts = range(0, len(mb), width)
    mb_means = np.array([mb[a : a + width].mean() for a in starts])
    full_means = np.array([full[a : a + width].mean() for a in starts])
    diff, level = mb_means - full_means, np.abs(full_means)
    se = (np.std(mb - full) + 1e-12) / np.sqrt(width)
    relative, in_se = float(np.median(np.abs(diff) / np.maximum(level, 1e-12))), float(np.median(np.abs(diff) / se))
    # the change over the run: the first whole window to the last whole window (the windows' leftover steps
    # would make a short, noisy last mean)
    recorded_change = float(mb[-width:].mean() - mb[:width].mean())
    evaluated_change = float(full[-width:].mean() - full[:width].mean())
    trend = abs(recorded_change - evaluated_change)
    floor = RECORDED_LOSS_TOLERANCE * float(np.abs(full).mean())  # a flat loss: a drift of the gap is no trend
    level_differs = relative > RECORDED_LOSS_TOLERANCE and in_se > NOISE_SE
    trend_differs = trend > TREND_TOLERANCE * max(abs(recorded_change), floor) and trend > NOISE_SE * se * np.sqrt(2)
    checked = {
        "median_relative_difference": relative,
        "median_standard_errors": in_se,
        "recorded_change": recorded_change,
        "evaluated_change": evaluated_change,
        "windows": len(diff),
        "reproduced": not (level_differs or trend_differs),
    }
    checked["mismatch"] = recorded_losses_mismatch(checked)
    return checked


def recorded_losses_mismatch(checked: dict) -> str:
    """How a run's evaluated losses differ from its recorded ones, in words (for its warnings)."""
    return (
        f"the minibatch losses differ from the full-set losses by {100 * checked['median_relative_difference']:.0f}% (median) and "
        f"changed by {checked.get('recorded_change', float('nan')):+.3g} over training where the full-set loss changed by "
        f"{checked.get('evaluated_change', float('nan')):+.3g}"
    )
