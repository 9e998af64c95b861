"""Grounding: the loss rebuilt from LCA against the measured loss, and each iteration's error."""

from __future__ import annotations

import numpy as np

from ..integrate import QUADRATURE_NAMES, TRAPEZOID
from ..tables import read_tsv
from .common import num, read_json
from .style import FIRST_ORDER_COLOR, HELP_COLOR, TRAIN_COLOR, TRAPEZOID_COLOR, VAL_COLOR, figure
from .timeaxis import ITERATIONS, TimeAxis


def grounding_figure(tsv, json_path, out_png, run: str, time: TimeAxis = ITERATIONS) -> None:
    rows, g = read_tsv(tsv), read_json(json_path)
    T = len(rows["iteration"])
    t = time.thetas(np.arange(T + 1))
    it = time.iterations(rows["iteration"])
    loss0 = rows["loss"][0]
    measured = np.concatenate([rows["loss"], [rows["loss"][-1] + rows["loss_change"][-1]]])
    with figure(out_png, 1, 2, (12, 4.2)) as (fig, axes):
        ax = axes[0, 0]
        ax.plot(t, measured, color=TRAIN_COLOR, lw=2.2, label="measured L(θ_t)")
        rule = QUADRATURE_NAMES[g.get("quadrature", "simpson")]
        ax.plot(t, loss0 + np.concatenate([[0], np.cumsum(rows["lca_sum"])]), color=HELP_COLOR, lw=1.2, ls="--", label=f"L(θ_0) + cumulative LCA ({rule})")
        ax.plot(t, loss0 + np.concatenate([[0], np.cumsum(rows["first_order_sum"])]), color=FIRST_ORDER_COLOR, lw=1.2, label="L(θ_0) + cumulative first order")
        time.name(ax)
        ax.set_ylabel("full training-set loss (nats)")
        tr = g["train"]
        ax.set_title(
            f"{run}: loss rebuilt from LCA.\nTotal error: {rule} {num(tr['cumulative_error_pct'], '.3g', '%')}, "
            f"first order {num(tr['first_order_cumulative_error_pct'], '.4g', '%')}"
        )
        ax.legend(frameon=False)
        ax = axes[0, 1]
        curves = [("error", f"{rule}, train", HELP_COLOR), ("error_val", f"{rule}, validation", VAL_COLOR)]
        if "trapezoid_error" in rows:
            curves.append(("trapezoid_error", "trapezoid before its error's removal, train", TRAPEZOID_COLOR))
        curves.append(("first_order_error", "first order, train", FIRST_ORDER_COLOR))
        for key, label, color in curves:
            error = np.maximum(np.abs(rows[key]), 1e-12)
            splits = rows.get("num_splits_val" if key == "error_val" else "num_splits")
            if "trapezoid_error" in rows and key in ("error", "error_val"):
                # adaptive: an iteration allocated by the trapezoid has no error left (it was removed); the
                # Simpson iterations, scattered among them, are drawn as points
                simpson = splits != TRAPEZOID
                ax.semilogy(it[simpson], error[simpson], ".", color=color, ms=3, label=f"{label} (Simpson iterations)")
            else:
                ax.semilogy(it, error, color=color, lw=0.8, label=label)
        ax.axhline(g["tolerance"], color="black", ls=":", lw=1, label=f"tolerance {g['tolerance']:g}")
        refined = it[rows["num_splits"] > 1]
        if refined.size:
            ax.plot(refined, np.full(refined.size, g["tolerance"]), "v", color="black", ms=4, label="refined iterations")
        time.name(ax)
        ax.set_ylabel("|Σ LCA − ΔL| per iteration (nats)")
        by_trapezoid = f",\n{g['iterations_trapezoid']} of {len(rows['iteration'])} by the trapezoid" if "iterations_trapezoid" in g else ""
        ax.set_title(
            f"Per-iteration error: mean {rule} {tr['mean_abs_iteration_error']:.2g}, first order "
            f"{tr['first_order_mean_abs_iteration_error']:.2g} nats; {g['iterations_refined']} refined{by_trapezoid}"
        )
        ax.legend(frameon=bool(by_trapezoid), framealpha=0.85, fontsize=8)  # framed over the trapezoid's curve
