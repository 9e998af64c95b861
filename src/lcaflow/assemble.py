"""Assemble the chunk files of a run into lca.h5 and measure how well the LCA is grounded."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from .config import chunk_range, n_chunks
from .data import open_h5
from .errors import CorruptFileError, GroundingError
from .gradients import CHUNK_FORMAT_VERSION, check_trajectory, lca_settings_fingerprint
from .grounding import ADAPTIVE_ONLY, QUADRATURE_NAMES, grounding_report
from .io import atomic_h5, create_matrix, require
from .progress import log
from .trajectory import read_trajectory_meta

PER_ITERATION = (
    "lca_first_order",
    "lca_first_order_val",
    "error",
    "error_val",
    "num_splits",
    "lca_class_layer",
    "lca_layer",
    "lca_val_layer",
)
PER_POINT = ("loss", "loss_val", "loss_class", "grad_norm_layer", "grad_norm_class_layer")


def _per_iteration(lca: dict) -> tuple[str, ...]:
    return PER_ITERATION + (ADAPTIVE_ONLY if lca["quadrature"] != "simpson" else ())


def _check_chunk(f: h5py.File, path, run_name: str, meta: dict, lca: dict, chunk: int, T: int, K: int) -> None:
    require(f, ("lca", "lca_val", "lca_class_param") + _per_iteration(lca) + PER_POINT, path, "gradients")
    attrs = f.attrs
    start, stop = chunk_range(chunk, T, lca["iterations_per_job"])
    problems = []
    if attrs.get("format_version") != CHUNK_FORMAT_VERSION:
        problems.append(f"format version {attrs.get('format_version')} (expected {CHUNK_FORMAT_VERSION})")
    if attrs.get("trajectory_fingerprint") != meta["fingerprint"] or attrs.get("run_name") != run_name:
        problems.append(
            f"it belongs to run {attrs.get('run_name')!r} trajectory {attrs.get('trajectory_fingerprint')}, "
            f"not run {run_name!r} trajectory {meta['fingerprint']}"
        )
    if attrs.get("lca_fingerprint") != lca_settings_fingerprint(lca):
        problems.append("it was computed with other LCA settings (tolerance, max_splits, eval_chunk_size or quadrature)")
    if (attrs.get("start"), attrs.get("stop")) != (start, stop):
        problems.append(f"it covers iterations {attrs.get('start')}..{attrs.get('stop')} instead of {start}..{stop}")
    if f["lca"].shape != (stop - start, K):
        problems.append(f"lca has shape {f['lca'].shape}, expected {(stop - start, K)}")
    if problems:
        raise CorruptFileError(f"{path}: {'; '.join(problems)}; delete it and rerun its gradient job")


def _read_small(path, run_name, meta, lca, k, T, K) -> tuple[dict, dict]:
    """Check one chunk and read everything but its T x K blocks."""
    with open_h5(path, "gradient chunk") as f:
        _check_chunk(f, path, run_name, meta, lca, k, T, K)
        try:
            small = {key: f[key][()] for key in _per_iteration(lca) + PER_POINT + ("lca_class_param",)}
        except OSError as err:
            raise CorruptFileError(f"{path}: data unreadable ({err}); delete it and rerun its gradient job") from err
        attrs = {key: int(f.attrs[key]) for key in ("start", "stop", "train_passes", "val_passes")}
    return small, attrs


def assemble(
    run_name: str, run: dict, lca: dict, trajectory_path: str, chunk_paths: list[str], out_path: str, grounding_path: str
) -> dict:
    meta = read_trajectory_meta(trajectory_path)
    check_trajectory(meta, run_name, run, trajectory_path)
    T, K = run["iterations"], meta["layout"].num_params
    expected = n_chunks(T, lca["iterations_per_job"])
    if len(chunk_paths) != expected:
        raise CorruptFileError(f"run {run_name}: got {len(chunk_paths)} chunk files, expected {expected}")

    # Pass 1: every chunk checked and the grounding judged before any T x K block is copied.
    parts = [_read_small(path, run_name, meta, lca, k, T, K) for k, path in enumerate(chunk_paths)]
    arrays = {key: np.concatenate([p[0][key] for p in parts]) for key in _per_iteration(lca)}
    for key in PER_POINT:  # neighbouring chunks share their boundary point: keep it once
        arrays[key] = np.concatenate([p[0][key][:-1] for p in parts] + [parts[-1][0][key][-1:]])
    for (prev, _), (path, (nxt, attrs)) in zip(parts, zip(chunk_paths[1:], parts[1:])):
        if not np.isclose(prev["loss"][-1], nxt["loss"][0], rtol=1e-6, atol=1e-9):
            log.warning(
                f"{path}: loss at theta_{attrs['start']} differs from the previous chunk's "
                f"({nxt['loss'][0]!r} vs {prev['loss'][-1]!r}); non-deterministic evaluation?"
            )
    report = grounding_report(arrays, lca["tolerance"], lca["quadrature"])
    report["train_passes_per_iteration"] = sum(p[1]["train_passes"] for p in parts) / T
    report["val_passes_per_iteration"] = sum(p[1]["val_passes"] for p in parts) / T
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

    # Pass 2: stream the big blocks, checking that the stored float32 rows still sum to the allocation.
    max_row_sum_gap = 0.0
    with atomic_h5(out_path) as out:
        compression = lca["compression"]
        big = {key: create_matrix(out, key, T, K, compression) for key in ("lca", "lca_val")}
        grad = None
        for path, (small, attrs) in zip(chunk_paths, parts):
            start, stop = attrs["start"], attrs["stop"]
            with open_h5(path, "gradient chunk") as f:
                try:
                    for key, dset in big.items():
                        block = f[key][()]
                        dset[start:stop] = block
                        if key == "lca":
                            expected_sum = np.diff(small["loss"]) + small["error"]
                            gap = np.abs(block.sum(1, dtype=np.float64) - expected_sum).max()
                            max_row_sum_gap = max(max_row_sum_gap, float(gap))
                    if "grad" in f:
                        grad = grad if grad is not None else create_matrix(out, "grad", T + 1, K, compression)
                        grad[start : stop + 1] = f["grad"][()]
                except OSError as err:
                    raise CorruptFileError(f"{path}: data unreadable ({err}); delete it and rerun its gradient job") from err
        for key, value in arrays.items():
            out.create_dataset(key, data=value)
        out.create_dataset("lca_class_param", data=sum(p[0]["lca_class_param"] for p in parts))
        with open_h5(trajectory_path, "trajectory") as f:
            f.copy(f["layout"], out, "layout")
            f.copy(f["classes"], out, "classes")
        report["max_abs_gap_float32_rows_vs_float64_sum"] = max_row_sum_gap
        out.attrs.update(
            {
                "run_name": run_name,
                "run_config": json.dumps(run, sort_keys=True),
                "lca_config": json.dumps(lca, sort_keys=True),
                "trajectory_fingerprint": meta["fingerprint"],
                "grounding": json.dumps(report, sort_keys=True),
                "per_class": meta["per_class"],
            }
        )
    Path(grounding_path).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report
