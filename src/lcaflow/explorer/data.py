"""What a run's explorer shows, read from its reductions and tables: never the (T, K) matrix in full.

Every table goes to the page in columns (`columns(...)`): numbers rounded to 4 significant digits, names as
codes into their levels, so that the page stays small; the page's script turns them back into rows.
The views of a window of iterations (neurons, classes, parameters) are summed into frames of `frame`
iterations, at most MAX_FRAMES of them, so that a long run still gives a small page."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ..io import iter_row_blocks, require
from ..layout import Layout, units_of
from ..paths import RunPaths
from ..storage import matrix, open_lca
from ..tables import read_tsv

MAX_FRAMES = 200  # frames of the windowed views: the slider's steps, the brush's resolution there
TOP_PER_GROUP = 8  # candidates of each group and sign for the top helping and hurting parameters
NEEDS = ("loss", "loss_val", "error", "error_val", "lca_layer", "lca_val_layer", "lca_total", "layout")


def columns(**cols) -> dict:
    """A table in columns for the page: numbers (NaN -> null) rounded to 4 significant digits, strings as
    {"levels": [...], "codes": [...]}."""
    out = {}
    for name, values in cols.items():
        values = np.asarray(values)
        if values.dtype.kind in "US O":
            levels, codes = np.unique(values.astype(str), return_inverse=True)
            out[name] = {"levels": levels.tolist(), "codes": codes.tolist()}
        elif values.dtype.kind in "iub":
            out[name] = values.astype(np.int64).tolist()
        else:
            out[name] = [None if not math.isfinite(v) else float(f"{v:.4g}") for v in values.astype(float).tolist()]
    return out


def frame_size(iterations: int) -> int:
    return max(1, math.ceil(iterations / MAX_FRAMES))


def in_frames(x: np.ndarray, frame: int) -> np.ndarray:
    """(T, ...) -> (ceil(T / frame), ...): the sums over each frame of `frame` iterations."""
    n = math.ceil(len(x) / frame)
    padded = np.zeros((n * frame, *x.shape[1:]), dtype=np.float64)
    padded[: len(x)] = x
    return padded.reshape(n, frame, *x.shape[1:]).sum(axis=1)


@dataclass
class RunData:
    """Everything the run's page shows: tables in columns (`tables`), facts (`meta`) and what is absent."""

    meta: dict = field(default_factory=dict)
    tables: dict = field(default_factory=dict)
    absent: list[str] = field(default_factory=list)
    grounding: dict = field(default_factory=dict)
    claims: dict | None = None


def read_run(run_dir, claims_tsv=None) -> RunData:
    """The explorer's data of the run folder `run_dir` (lca.h5, grounding.json, its tables), with the
    workflow's claims table when given."""
    paths = RunPaths(str(run_dir))
    data = RunData()
    with open_lca(paths.lca) as f:
        require(f, NEEDS, paths.lca, "assemble")
        layout = Layout.from_h5(f["layout"])
        data.meta = _meta(f, layout, paths)
        frame = data.meta["frame"]
        data.tables["curves"] = _curves(f, data)
        data.tables["groups"] = _groups(f, layout, data)
        data.tables["neurons"] = _neurons(f, layout, frame, data)
        data.tables["classes"] = _classes(f, layout, frame, data)
        data.tables["params"] = _parameters(f, layout, frame, data)
    data.tables["moments"] = _moments(paths, data)
    data.grounding = _json(paths.grounding, data, "grounding.json (the assemble stage's grounding summary)")
    if claims_tsv is not None and Path(claims_tsv).is_file():
        data.claims = {k: v.tolist() for k, v in read_tsv(claims_tsv).items()}
    else:
        data.absent.append("the claims table (build it with `snakemake --cores all claims`)")
    return data


def _meta(f: h5py.File, layout: Layout, paths: RunPaths) -> dict:
    T = int(f["lca_layer"].shape[0])
    stored = matrix(f, "lca", paths.lca)
    per_class = bool(f.attrs.get("per_class", True)) and "lca_class_layer" in f
    return {
        "run": str(f.attrs.get("run_name", Path(paths.dir).name)),
        "iterations": T,
        "parameters": layout.num_params,
        "stored_columns": int(stored.shape[1]),
        "sampled": bool(stored.sampled),
        "groups": list(layout.layers),
        "classes": [str(c) for c in f["classes"].asstr()[()]] if per_class else None,
        "frame": frame_size(T),
        "config": json.loads(f.attrs.get("run_config", "{}")),
        **({"steps": json.loads(f.attrs["steps"])} if "steps" in f.attrs else {}),  # the views' time axis: steps
    }


def _curves(f: h5py.File, data: RunData) -> dict:
    """The losses at theta_0..theta_T and each iteration's grounding error (at its start), train and val."""
    T = data.meta["iterations"]
    splits = ["train", "validation"] if _has_val(f) else ["train"]
    if len(splits) == 1:
        data.absent.append("validation losses and LCA (the run has no validation split)")
    t = np.concatenate([np.arange(T + 1)] * len(splits))
    split = np.repeat(splits, T + 1)
    loss = np.concatenate([f[k][()] for k in ("loss", "loss_val")[: len(splits)]])
    error = np.concatenate([np.append(np.abs(f[k][()]), np.nan) for k in ("error", "error_val")[: len(splits)]])
    return columns(t=t, split=split, loss=loss, error=error)


def _has_val(f: h5py.File) -> bool:
    return bool(np.isfinite(f["loss_val"][()]).all() and np.isfinite(f["lca_val_layer"][()]).all())


def _groups(f: h5py.File, layout: Layout, data: RunData) -> dict:
    """Each group's LCA and its running sum at every iteration, train and validation."""
    keys = ["lca_layer", "lca_val_layer"] if _has_val(f) else ["lca_layer"]
    parts = {k: f[k][()] for k in keys}
    T, L = parts["lca_layer"].shape
    split = np.repeat(["train", "validation"][: len(keys)], T * L)
    t = np.tile(np.repeat(np.arange(T), L), len(keys))
    group = np.tile(np.array(layout.layers), T * len(keys))
    lca = np.concatenate([parts[k].ravel() for k in keys])
    cumulative = np.concatenate([np.cumsum(parts[k], axis=0).ravel() for k in keys])
    return columns(t=t, group=group, split=split, lca=lca, cumulative=cumulative)


def _grid(units: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each unit sits in a near-square grid: (column, row)."""
    width = math.ceil(math.sqrt(units))
    u = np.arange(units)
    return u % width, u // width


def _neurons(f: h5py.File, layout: Layout, frame: int, data: RunData) -> dict:
    """Each output neuron's (channel's) LCA per frame, in a grid per group (groups with units only)."""
    parts = []
    for name in layout.layers:
        if f"lca_neuron/{name}" not in f or units_of(layout, name)[0] is None:
            continue
        sums = in_frames(f[f"lca_neuron/{name}"][()], frame)
        n, units = sums.shape
        x, y = _grid(units)
        parts.append(
            {"group": np.full(n * units, name), "unit": np.tile(np.arange(units), n), "x": np.tile(x, n), "y": np.tile(y, n)}
            | {"t": np.repeat(np.arange(n) * frame, units), "lca": sums.ravel()}
        )
    data.meta["neuron_groups"] = [p["group"][0] for p in parts]
    if not parts:
        data.absent.append("per-neuron LCA (no group of this run has output neurons or channels)")
        return {}
    return columns(**{k: np.concatenate([p[k] for p in parts]) for k in parts[0]})


def _classes(f: h5py.File, layout: Layout, frame: int, data: RunData) -> dict:
    """Each class's LCA per group and frame (lca_class_layer summed into frames)."""
    if data.meta["classes"] is None:
        data.absent.append("per-class LCA (the run's loss has no classes)")
        return {}
    sums = in_frames(f["lca_class_layer"][()], frame)  # (frames, C, L)
    n, C, L = sums.shape
    return columns(
        t=np.repeat(np.arange(n) * frame, C * L),
        cls=np.tile(np.repeat(np.array(data.meta["classes"]), L), n),
        group=np.tile(np.array(layout.layers), n * C),
        lca=sums.ravel(),
    )


def _candidates(f: h5py.File, layout: Layout, stored: np.ndarray) -> np.ndarray:
    """The TOP_PER_GROUP most helping and most hurting stored parameters of each group over the whole run."""
    totals, index = f["lca_total"][()], layout.layer_index()
    chosen = []
    for j in range(len(layout.layers)):
        members = np.flatnonzero((index == j) & stored)
        order = members[np.argsort(totals[members], kind="stable")]
        helping, hurting = order[totals[order] < 0][:TOP_PER_GROUP], order[totals[order] > 0][::-1][:TOP_PER_GROUP]
        chosen += [*helping, *hurting]
    return np.array(sorted(chosen), dtype=np.int64)


def parameter_label(layout: Layout, column: int) -> str:
    """A parameter by its tensor and index, e.g. fc1.weight[3, 140]."""
    i = int(np.searchsorted(layout.offsets, column, side="right") - 1)
    where = np.unravel_index(column - layout.offsets[i], layout.shapes[i]) if layout.shapes[i] else ()
    return f"{layout.names[i]}[{', '.join(str(int(w)) for w in where)}]"


def _parameters(f: h5py.File, layout: Layout, frame: int, data: RunData) -> dict:
    """The candidates' LCA per frame, read in one streamed pass over the stored rows (their columns only)."""
    stored = matrix(f, "lca")
    is_stored = np.zeros(layout.num_params, dtype=bool)
    is_stored[stored.columns] = True
    chosen = _candidates(f, layout, is_stored)
    data.meta["parameters_from"] = (
        f"a sample of {stored.shape[1]:,} of the {layout.num_params:,} parameters (lca.store: sampled)"
        if stored.sampled
        else f"all {layout.num_params:,} parameters"
    )
    if chosen.size == 0:
        data.absent.append("top parameters (no stored parameter has a non-zero LCA)")
        return {}
    where = stored.position(chosen)
    traces = np.zeros((stored.shape[0], chosen.size), dtype=np.float64)
    for start, block in iter_row_blocks(stored):
        traces[start : start + len(block)] = block[:, where]
    sums = in_frames(traces, frame)
    n = len(sums)
    labels = np.array([parameter_label(layout, int(c)) for c in chosen])
    groups = np.array(layout.layers)[layout.layer_index()[chosen]]
    return columns(t=np.repeat(np.arange(n) * frame, chosen.size), param=np.tile(labels, n), group=np.tile(groups, n), lca=sums.ravel())


def _moments(paths: RunPaths, data: RunData) -> dict:
    """The iterations where every layer has one of its moments of learning (the synchronisation analysis's
    `lca` signal over all classes), and each layer's own moments."""
    path = Path(paths.stats("moments.tsv"))
    if not path.is_file():
        data.absent.append(f"moments of learning ({path} missing: build it with `snakemake --cores all {path}`)")
        return {}
    t = read_tsv(path)
    keep = (t["signal"] == "lca") & (t["group"] == "all classes")
    return columns(t=t["iteration"][keep].astype(np.int64), layer=t["layer"][keep], synchronized=t["synchronized"][keep].astype(np.int64))


def _json(path, data: RunData, what: str) -> dict:
    if not Path(path).is_file():
        data.absent.append(f"{what}: {path} missing")
        return {}
    return json.loads(Path(path).read_text())
