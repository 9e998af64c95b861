"""First look at a run: how many parameters help or hurt, and how much each layer learned.

Its tables are the analyses' (stats/layers.tsv, stats/noise_iterations.tsv, stats/grounding.tsv); the first
look is summary.json and the overview figure, made as soon as the run is assembled."""

from __future__ import annotations

import json

import numpy as np

from .errors import CorruptFileError
from .io import require, write_json
from .layout import Layout
from .storage import open_lca

HELP_COLOR, HURT_COLOR = "#1b7837", "#762a83"  # green / purple: distinguishable with red-green colour blindness


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
    _overview_figure(
        out_png, d["loss"], d["loss_val"], d["grounding"], rows, d["layout"].layers, d["layer_lca"], d["layer_lca_val"]
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


def _overview_figure(path, loss, loss_val, grounding, rows, layers, layer_lca, layer_lca_val) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "lcaflow"
    T = len(loss) - 1
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
    t = np.arange(T + 1)
    ax = axes[0]
    # validation underneath, so the rebuilt curve stays visible on top of the measured one
    ax.plot(t, loss_val, color="#56b4e9", lw=1, alpha=0.8, label="validation loss")
    ax.plot(t, loss, color="black", lw=2, label="train loss (measured)")
    rebuilt = loss[0] + np.concatenate([[0.0], np.cumsum(rows["lca_sum"])])
    ax.plot(t, rebuilt, color="#e69f00", lw=1.2, ls="--", label="L(θ₀) + cumulative LCA")
    g = grounding["train"]
    ax.set_title(
        f"Loss, grounded: cumulative error {g['cumulative_error_pct']:.2g}%\n"
        f"(first order {g['first_order_cumulative_error_pct']:.3g}%)",
        fontsize=10,
    )
    ax.set_xlabel("iteration")
    ax.set_ylabel("full-set cross-entropy (nats)")
    ax.legend(frameon=False)

    ax = axes[1]
    x = np.arange(len(layers))
    ax.bar(x - 0.2, layer_lca, 0.4, color=[HELP_COLOR if v < 0 else HURT_COLOR for v in layer_lca], label="train")
    ax.bar(x + 0.2, layer_lca_val, 0.4, color="none", edgecolor="black", hatch="//", label="validation")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, layers, rotation=30, ha="right")
    ax.set_ylabel("LCA summed over training (nats)")
    ax.set_title("LCA per layer (negative = helped)", fontsize=10)
    ax.legend(frameon=False)

    ax = axes[2]
    it = np.arange(T)
    ax.stackplot(
        it,
        rows["pct_helping"],
        rows["pct_zero"],
        rows["pct_hurting"],
        colors=[HELP_COLOR, "#d9d9d9", HURT_COLOR],
        labels=["helping", "zero", "hurting"],
        alpha=0.85,
    )
    ax.axhline(50, color="white", lw=0.8, ls=":")
    ax.set_xlim(0, T - 1 if T > 1 else 1)
    ax.set_ylim(0, 100)
    ax.set_xlabel("iteration")
    ax.set_ylabel("parameters (%)")
    ax.set_title(f"Parameters helping / hurting (helping {rows['pct_helping_of_nonzero'].mean():.1f}% of non-zero)", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
