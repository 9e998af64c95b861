"""Re-store a float32 chunk file in another storage form (bfloat16, a sample, fewer matrices) without
recomputing it: the chunk the gradient job would have written with those settings, dataset for dataset.
A benchmark tool (benchmarks/storage_fidelity.py; tests/test_storage.py checks it), not part of lcaflow.

The reductions do not depend on the storage settings (they are computed from the float32 rows), so
only the stored matrices, the stored rows' sums and the sample's and traces' indices change. Used by
benchmarks/storage_fidelity.py to compare the storage forms on one computed run."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import torch

from lcaflow import chunkfile
from lcaflow.io import atomic_h5, open_h5
from lcaflow.layout import Layout
from lcaflow.paths import RunPaths
from lcaflow.reducers import Frame, trace_columns
from lcaflow.storage import MAX_TRACED, create_stored_matrix, decode, encode, stored_columns

STORED = ("lca", "lca_val", "grad", "stored_row_sum", "sample_index", "trace_index", "grad_trace", "param_trace")


def transcode_chunk(src, dst, layout: Layout, lca: dict) -> None:
    """Write chunk `src` (stored as float32, every column) as the settings `lca` would store it, to `dst`."""
    with open_h5(src, "gradient chunk") as f, atomic_h5(dst) as out:
        source = json.loads(f.attrs["lca_config"])
        if source["storage"] != "float32" or source["store"] != "full":
            raise ValueError(f"{src}: only float32 chunks of every column can be re-stored")
        for name in f:
            if name not in STORED:
                f.copy(f[name], out, name)
        frame = Frame(layout, f["lca"].shape[0], 1, torch.device("cpu"), lca, stored_columns(layout, lca))
        _restore_matrices(f, out, frame, lca)
        out.attrs.update(dict(f.attrs))
        made = chunkfile.attributes(f.attrs["run_name"], f.attrs["trajectory_fingerprint"], lca, 0, 0, 0)
        out.attrs["lca_config"], out.attrs["storage_fingerprint"] = made["lca_config"], made["storage_fingerprint"]


def _restore_matrices(f: h5py.File, out: h5py.File, frame: Frame, lca: dict) -> None:
    cols = frame.columns
    rows = f["lca"][()]
    encoded = [encode(torch.from_numpy(r), lca["storage"]) for r in rows]
    out.create_dataset("stored_row_sum", data=np.array([decode(e, lca["storage"]).sum(dtype=np.float64) for e in encoded]))
    for name in ("lca", "lca_val", "grad"):
        wanted = {"lca": True, "lca_val": lca["store_validation"], "grad": lca["store_gradients"]}[name]
        if not wanted:
            continue
        if name not in f:
            raise ValueError(f"{f.filename}: has no '{name}' to store")
        source = rows if name == "lca" else f[name][()]
        dset = create_stored_matrix(out, name, len(source), source.shape[1] if cols is None else cols.size, lca["storage"], lca["compression"])
        for i, r in enumerate(source):
            e = encode(torch.from_numpy(r if cols is None else r[cols]), lca["storage"])
            dset[i] = e
    if cols is not None:
        out.create_dataset("sample_index", data=cols)
    traced = trace_columns(frame)
    old = f["trace_index"][()]
    if old.size >= MAX_TRACED or not np.isin(traced, old).all():
        raise ValueError(f"{f.filename}: its gradient traces do not cover the new traced weights")
    out.create_dataset("trace_index", data=traced)
    keep = np.searchsorted(old, traced)
    out.create_dataset("grad_trace", data=f["grad_trace"][()][:, keep])
    out.create_dataset("param_trace", data=f["param_trace"][()][:, keep])


def transcode_run(run_dir, out_dir, lca: dict) -> list[Path]:
    """Every chunk of a run folder re-stored under out_dir/chunks; returns the new chunk paths."""
    here, there = RunPaths(str(run_dir)), RunPaths(str(out_dir))
    with open_h5(here.lca, "LCA file (assemble stage)") as f:
        layout = Layout.from_h5(f["layout"])
    paths = []
    for src in sorted(Path(here.chunk(0)).parent.glob("*.h5")):
        dst = Path(there.chunk(src.stem))
        transcode_chunk(src, dst, layout, lca)
        paths.append(dst)
    return paths
