"""First look at a run: how many parameters help or hurt, and how much each layer learned."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .errors import CorruptFileError
from .io import require
from .layout import Layout
from .plots.overview import overview_figure
from .storage import open_lca

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
    overview_figure(out / "overview.png", loss, loss_val, grounding, iteration_rows, layout.layers, layer_lca, layer_lca_val)
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
