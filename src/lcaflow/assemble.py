"""Assemble the chunk files of a run into lca.h5 and measure how well the LCA is grounded.

lca.h5 holds the joined reductions of the chunks and virtual datasets over their stored matrices
(lcaflow.storage): reassembly reads no T x K block and writes none."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from . import chunkfile
from .chunkfile import chunk_range, n_chunks
from .errors import CorruptFileError, GroundingError
from .examplegroups import NONE
from .grounding import curve_grounding, grounding_report, group_grounding, recorded_losses_check
from .integrate import QUADRATURE_NAMES
from .io import atomic_h5, open_h5, write_json
from .joins import VIRTUAL, Joined
from .progress import log
from .reducers import join_kind
from .storage import STORAGE_BYTES, link_matrix
from .trajectory import check_trajectory, read_trajectory_meta


def _read_reductions(path, run_name, meta, lca, k, T, K) -> tuple[dict, dict]:
    """Check one chunk and read its reductions (everything but the stored matrices)."""
    small = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and join_kind(name) not in (None, VIRTUAL):
            small[name] = obj[()]

    start, stop = chunk_range(k, T, lca["iterations_per_job"])
    with open_h5(path, "gradient chunk") as f:
        chunkfile.check(f, path, chunkfile.attributes(run_name, meta["fingerprint"], lca, k, start, stop), K, lca["store"])
        try:
            f.visititems(visit)
        except OSError as err:
            raise CorruptFileError(f"{path}: data unreadable ({err}); delete it and rerun its gradient job") from err
        attrs = {key: int(f.attrs[key]) for key in ("start", "stop", "train_passes", "val_passes")}
        # passes over adaptive quadrature's midpoint sample, in whole-pass equivalents (0 without one)
        attrs["sample_fraction"] = float(f.attrs.get("midpoint_sample_fraction", 0.0))
        attrs["train_passes"] += int(f.attrs.get("train_sample_passes", 0)) * attrs["sample_fraction"]
        attrs["matrices"] = [m for m in chunkfile.MATRICES if m in f]
        attrs["identity"] = chunkfile.identity(f)
    return small, attrs


def storage_report(arrays: dict, lca: dict, K: int) -> dict:
    """How far the stored training rows' sums are from the float64 sums (the real loss change + error):
    the error of the number format, per iteration and cumulative."""
    exact = np.diff(arrays["loss"]) + arrays["error"]
    gap = arrays["stored_row_sum"] - exact
    total = float(arrays["loss"][-1] - arrays["loss"][0])
    columns = K if lca["store"] == "full" else int(arrays["sample_index"].size)
    return {
        "storage": lca["storage"],
        "store": lca["store"],
        "stored_columns": columns,
        "bytes_per_entry": STORAGE_BYTES[lca["storage"]],
        "max_abs_iteration_error": float(np.abs(gap).max()),
        "mean_abs_iteration_error": float(np.abs(gap).mean()),
        "cumulative_error": float(gap.sum()),
        "cumulative_error_pct": float(100 * gap.sum() / abs(total)) if total else float("nan"),
    }


def assemble(
    run_name: str, run: dict, lca: dict, trajectory_path: str, chunk_paths: list[str], out_path: str, grounding_path: str
) -> dict:
    meta = read_trajectory_meta(trajectory_path)
    check_trajectory(meta, run_name, run, trajectory_path)
    T, K = run["iterations"], meta["layout"].num_params
    expected = n_chunks(T, lca["iterations_per_job"])
    if len(chunk_paths) != expected:
        raise CorruptFileError(f"run {run_name}: got {len(chunk_paths)} chunk files, expected {expected}")

    # Every chunk checked and the grounding judged before lca.h5 is written; no T x K block is read, and the
    # chunks' reductions are folded in one at a time.
    joined, chunks, previous = Joined(join_kind), [], None
    for k, path in enumerate(chunk_paths):
        small, attrs = _read_reductions(path, run_name, meta, lca, k, T, K)
        if previous is not None:
            _warn_boundary(path, attrs["start"], previous, small["loss"][0])
        previous = small["loss"][-1]
        try:
            joined.add(small)
        except ValueError as err:
            raise CorruptFileError(f"{path}: {err}; rerun the gradient jobs") from err
        chunks.append(attrs)
    arrays = joined.result()
    report = _grounding(run_name, arrays, lca, chunks, T, out_path)
    report["storage"] = storage_report(arrays, lca, K)
    groups = meta["example_groups"]
    tokens = groups is not None and groups["train"].ndim == 2  # token groups: their own datasets (token_*)
    names = _group_names(trajectory_path, meta)
    report["example_groups"] = _groups_grounding(arrays, tokens, names, "")
    if "loss_val_class" in arrays or "token_loss_val" in arrays:  # the validation split by group too
        report["example_groups"]["val"] = _groups_grounding(arrays, tokens, names, "_val")
    if "curve_lca" in arrays:
        report["example_curves"] = curve_grounding(arrays, lca["tolerance"])
    if run.get("trajectory"):  # a recorded run: does the evaluated model reproduce its own training losses?
        with open_h5(trajectory_path, "trajectory") as f:
            checked = recorded_losses_check(f["minibatch_loss"][()], arrays["loss"])
        if checked is not None:
            report["recorded_losses"] = checked
            if not checked["reproduced"]:
                log.warning(_not_reproduced(run_name, checked))

    folder = Path(out_path).parent
    with atomic_h5(out_path) as out:
        for name in chunks[0]["matrices"]:
            pieces = [(os.path.relpath(path, folder), a["start"], a["stop"]) for path, a in zip(chunk_paths, chunks)]
            with open_h5(chunk_paths[0], "gradient chunk") as f:
                n_cols, encoding = f[name].shape[1], str(f[name].attrs.get("encoding", "float32"))
            link_matrix(out, name, pieces, n_cols, encoding, shared_rows=name == "grad")
        for key, value in arrays.items():
            out.create_dataset(key, data=value)
        with open_h5(trajectory_path, "trajectory") as f:
            f.copy(f["layout"], out, "layout")
            if groups is None or tokens:
                f.copy(f["classes"], out, "classes")
            else:  # the rows of the per-class datasets are the example groups
                f.copy(f["example_groups/names"], out, "classes")
            if tokens:
                f.copy(f["example_groups/names"], out, "token_groups")
            if "steps" in f.attrs:  # a run of checkpoints: the training step of each row (lcaflow.checkpoints)
                out.attrs["steps"] = f.attrs["steps"]
        out.attrs.update(
            {
                "run_name": run_name,
                "run_config": json.dumps(meta["run"], sort_keys=True),  # as the trajectory records it
                "lca_config": json.dumps(lca, sort_keys=True),
                "trajectory_fingerprint": meta["fingerprint"],
                "grounding": json.dumps(report, sort_keys=True),
                "midpoint_sample_fraction": chunks[0]["sample_fraction"],
                "per_class": meta["per_class"] if groups is None or tokens else run.get("example_groups") != NONE,
                **({} if groups is None else {"example_groups": run.get("example_groups")}),
                "storage": lca["storage"],
                "store": lca["store"],
                # each chunk mapped, as assembled: a chunk rewritten later is refused (storage.check_sources)
                "chunks": json.dumps({os.path.relpath(p, folder): a["identity"] for p, a in zip(chunk_paths, chunks)}, sort_keys=True),
            }
        )
    write_json(grounding_path, report, allow_nan=True)
    return report


def _groups_grounding(arrays: dict, tokens: bool, names: list[str], sfx: str) -> dict:
    """Each example group's (token group's, class's) grounding on the split of the datasets' suffix ("", "_val")."""
    if tokens:
        report = group_grounding({"loss_class": arrays["token_loss" + sfx], "lca_class_layer": arrays["token_lca" + sfx]}, names)
        return {**report, **_removed(arrays["token_error" + sfx])}
    return group_grounding({"loss_class": arrays[f"loss{sfx}_class"], "lca_class_layer": arrays[f"lca{sfx}_class_layer"]}, names)


def _removed(error: np.ndarray) -> dict:
    """The token groups' Simpson error removed from their rows (lcaflow.curves), per iteration and over training."""
    return {
        "quadrature_error_removed_max_abs": float(np.abs(error).max()),
        "quadrature_error_removed_cumulative_max_abs": float(np.abs(error.sum(0)).max()),
    }


def _group_names(trajectory_path, meta) -> list[str]:
    """The names of the rows of the per-class datasets: the example groups, or the classes the trajectory records."""
    if meta["example_groups"] is not None:
        return meta["example_groups"]["names"]
    with open_h5(trajectory_path, "trajectory") as f:
        return [str(c) for c in f["classes"].asstr()[()]]


def _not_reproduced(run_name: str, checked: dict) -> str:
    return (
        f"run {run_name}: the evaluated model does not reproduce the recording's training losses ({checked['mismatch']}, "
        "beyond their noise): check the model, loss and data settings against the training's"
    )


def _warn_boundary(path, start: int, previous: float, loss: float) -> None:
    if not np.isclose(previous, loss, rtol=1e-6, atol=1e-9):
        log.warning(
            f"{path}: loss at theta_{start} differs from the previous chunk's ({loss!r} vs {previous!r}); "
            f"non-deterministic evaluation?"
        )


def _grounding(run_name, arrays, lca, chunks, T, out_path) -> dict:
    """The grounding report; a run whose cumulative error exceeds lca.max_cumulative_error_pct fails here."""
    report = grounding_report(arrays, lca["tolerance"], lca["quadrature"], chunks[0]["sample_fraction"])
    report["train_passes_per_iteration"] = sum(c["train_passes"] for c in chunks) / T
    report["val_passes_per_iteration"] = sum(c["val_passes"] for c in chunks) / T
    log.info("grounding: " + json.dumps(report, indent=1))
    cum = report["train"]["cumulative_error_pct"]
    if not abs(cum) <= lca["max_cumulative_error_pct"]:
        raise GroundingError(
            f"run {run_name}: cumulative {QUADRATURE_NAMES[lca['quadrature']]} error {cum:.3g}% of the total loss change exceeds "
            f"lca.max_cumulative_error_pct={lca['max_cumulative_error_pct']}; lower lca.tolerance or raise lca.max_splits"
        )
    if report["iterations_over_tolerance"]:
        log.warning(
            f"{report['iterations_over_tolerance']} iterations stay above tolerance {lca['tolerance']} at "
            f"max_splits={lca['max_splits']} (see 'error' in {out_path})"
        )
    return report
