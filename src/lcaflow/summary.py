"""First look at a run: how many parameters help or hurt, and how much each layer learned."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .errors import CorruptFileError
from .io import require
from .layout import Layout
from .storage import open_lca

HELP_COLOR, HURT_COLOR = "#1b7837", "#762a83"  # green / purple: distinguishable with red-green colour blindness


BLOCK_BYTES = 128 << 20  # rows of a T x K dataset read at once: bounds the memory of every analysis


def iter_row_blocks(dset, max_bytes: int | None = None):
    """Yield (start, block) over the rows of a 2-D dataset, holding at most ~max_bytes in memory."""
    max_bytes = max_bytes or BLOCK_BYTES
    rows = max(1, max_bytes // max(1, dset.shape[1] * dset.dtype.itemsize))
    for start in range(0, dset.shape[0], rows):
        yield start, dset[start : start + rows]


def summarize(lca_path: str, out_dir: str) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open_lca(lca_path) as f:
        require(f, ("loss", "loss_val", "layout", "lca_layer", "lca_val_layer", "helping_layer", "hurting_layer", "stored_row_sum"), lca_path, "assemble")
        try:
            layout = Layout.from_h5(f["layout"])
            grounding = json.loads(f.attrs["grounding"])
        except (KeyError, ValueError) as err:
            raise CorruptFileError(f"{lca_path}: metadata incomplete ({err}); delete it and rerun assemble") from err
        layer_index = layout.layer_index()
        L = len(layout.layers)
        K = layout.num_params
        loss, loss_val = f["loss"][()], f["loss_val"][()]
        layer_helping, layer_hurting = f["helping_layer"][()], f["hurting_layer"][()]
        T = len(layer_helping)
        helping, hurting = layer_helping.sum(1), layer_hurting.sum(1)
        lca_sum = f["stored_row_sum"][()]  # the stored rows' sums, as the rows are read
        layer_lca, layer_lca_val = f["lca_layer"][()].sum(0), f["lca_val_layer"][()].sum(0)
    zero = K - helping - hurting
    layer_sizes = np.bincount(layer_index, minlength=L)
    nonzero = np.maximum(helping + hurting, 1)
    iteration_rows = {
        "iteration": np.arange(T),
        "loss": loss[:-1],
        "loss_next": loss[1:],
        "loss_val": loss_val[:-1],
        "lca_sum": lca_sum,
        "pct_helping": 100 * helping / K,
        "pct_hurting": 100 * hurting / K,
        "pct_zero": 100 * zero / K,
        "pct_helping_of_nonzero": 100 * helping / nonzero,
    }
    for layer, name in enumerate(layout.layers):
        iteration_rows[f"pct_helping_{name}"] = 100 * layer_helping[:, layer] / layer_sizes[layer]
    write_tsv(out / "iterations.tsv", iteration_rows)

    layer_nonzero = np.maximum(layer_helping + layer_hurting, 1)
    layer_rows = {
        "layer": np.array(layout.layers),
        "n_params": layer_sizes,
        "lca": layer_lca,
        "lca_per_param": layer_lca / layer_sizes,
        "lca_val": layer_lca_val,
        "pct_helping_of_nonzero": (100 * layer_helping / layer_nonzero).mean(0),
    }
    write_tsv(out / "layers.tsv", layer_rows)

    summary = {
        "iterations": int(T),
        "num_params": int(K),
        "pct_helping_of_nonzero_mean": float(iteration_rows["pct_helping_of_nonzero"].mean()),
        "pct_helping_mean": float(iteration_rows["pct_helping"].mean()),
        "pct_hurting_mean": float(iteration_rows["pct_hurting"].mean()),
        "pct_zero_mean": float(iteration_rows["pct_zero"].mean()),
        "loss_initial": float(loss[0]),
        "loss_final": float(loss[-1]),
        "loss_val_final": float(loss_val[-1]),
        "layer_lca": {name: float(v) for name, v in zip(layout.layers, layer_lca)},
        "grounding_cumulative_error_pct": grounding["train"]["cumulative_error_pct"],
        "grounding_max_abs_iteration_error": grounding["train"]["max_abs_iteration_error"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _overview_figure(out / "overview.png", loss, loss_val, grounding, iteration_rows, layout.layers, layer_lca, layer_lca_val)
    return summary


def write_tsv(path: Path, columns: dict) -> None:
    """A tab-separated table with a header row, written under a temporary name and renamed, so an
    interrupted job never leaves a finished-looking table."""
    names = list(columns)
    n = len(next(iter(columns.values())))
    tmp = Path(f"{path}.partial")
    with open(tmp, "w") as fh:
        fh.write("\t".join(names) + "\n")
        for i in range(n):
            cells = [columns[name][i] for name in names]
            fh.write("\t".join(c if isinstance(c, str) else f"{c:.10g}" for c in cells) + "\n")
    os.replace(tmp, path)


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
