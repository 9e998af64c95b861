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
from .io import atomic_h5, create_matrix, require
from .progress import log
from .training import read_trajectory_meta

PER_ITERATION = ("lca_first_order", "lca_first_order_val", "error", "error_val", "num_splits", "lca_class_layer")
PER_POINT = ("loss", "loss_val", "loss_class")


def _check_chunk(f: h5py.File, path, run_name: str, meta: dict, lca: dict, chunk: int, T: int, K: int) -> None:
    require(f, ("lca", "lca_val", "lca_class_param") + PER_ITERATION + PER_POINT, path, "gradients")
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
        problems.append("it was computed with other LCA settings (tolerance, max_splits or eval_chunk_size)")
    if (attrs.get("start"), attrs.get("stop")) != (start, stop):
        problems.append(f"it covers iterations {attrs.get('start')}..{attrs.get('stop')} instead of {start}..{stop}")
    if f["lca"].shape != (stop - start, K):
        problems.append(f"lca has shape {f['lca'].shape}, expected {(stop - start, K)}")
    if problems:
        raise CorruptFileError(f"{path}: {'; '.join(problems)}; delete it and rerun its gradient job")


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


def assemble(
    run_name: str, run: dict, lca: dict, trajectory_path: str, chunk_paths: list[str], out_path: str, grounding_path: str
) -> dict:
    meta = read_trajectory_meta(trajectory_path)
    check_trajectory(meta, run_name, run, trajectory_path)
    T, K = run["iterations"], meta["layout"].num_params
    expected = n_chunks(T, lca["iterations_per_job"])
    if len(chunk_paths) != expected:
        raise CorruptFileError(f"run {run_name}: got {len(chunk_paths)} chunk files, expected {expected}")
    small = {key: [] for key in PER_ITERATION + PER_POINT}
    class_param = None
    passes = {"train_passes": 0, "val_passes": 0, "interior_points": 0}
    max_row_sum_gap = 0.0
    with atomic_h5(out_path) as out:
        big = {key: create_matrix(out, key, T, K) for key in ("lca", "lca_val")}
        grad = None
        for k, path in enumerate(chunk_paths):
            with open_h5(path, "gradient chunk") as f:
                _check_chunk(f, path, run_name, meta, lca, k, T, K)
                start, stop = int(f.attrs["start"]), int(f.attrs["stop"])
                try:
                    for key, dset in big.items():
                        block = f[key][()]
                        dset[start:stop] = block
                        if key == "lca":  # the stored float32 rows must still sum to the float64 allocation
                            expected_sum = np.diff(f["loss"][()]) + f["error"][()]
                            max_row_sum_gap = max(
                                max_row_sum_gap, float(np.abs(block.sum(1, dtype=np.float64) - expected_sum).max())
                            )
                    if "grad" in f:
                        if grad is None:
                            grad = create_matrix(out, "grad", T + 1, K)
                        grad[start : stop + 1] = f["grad"][()]
                    for key in PER_ITERATION:
                        small[key].append(f[key][()])
                    last = k == len(chunk_paths) - 1
                    for key in PER_POINT:
                        values = f[key][()]
                        if small[key] and key == "loss" and not np.isclose(small[key][-1][-1], values[0], rtol=1e-6, atol=1e-9):
                            log.warning(
                                f"{path}: loss at theta_{start} differs from the previous chunk's "
                                f"({values[0]!r} vs {small[key][-1][-1]!r}); non-deterministic evaluation?"
                            )
                        small[key].append(values if last else values[:-1])
                    block = f["lca_class_param"][()]
                    class_param = block if class_param is None else class_param + block
                    for key in passes:
                        passes[key] += int(f.attrs[key])
                except OSError as err:
                    raise CorruptFileError(f"{path}: data unreadable ({err}); delete it and rerun its gradient job") from err
        arrays = {key: np.concatenate(parts) for key, parts in small.items()}
        for key, value in arrays.items():
            out.create_dataset(key, data=value)
        out.create_dataset("lca_class_param", data=class_param)
        with open_h5(trajectory_path, "trajectory") as f:
            f.copy(f["layout"], out, "layout")
            f.copy(f["classes"], out, "classes")
        report = grounding_report(arrays, lca["tolerance"])
        report["train_passes_per_iteration"] = passes["train_passes"] / T
        report["val_passes_per_iteration"] = passes["val_passes"] / T
        report["max_abs_gap_float32_rows_vs_float64_sum"] = max_row_sum_gap
        out.attrs.update(
            {
                "run_name": run_name,
                "run_config": json.dumps(run, sort_keys=True),
                "lca_config": json.dumps(lca, sort_keys=True),
                "trajectory_fingerprint": meta["fingerprint"],
                "grounding": json.dumps(report, sort_keys=True),
            }
        )
        log.info("grounding: " + json.dumps(report, indent=1))
        cum = report["train"]["cumulative_error_pct"]
        if not abs(cum) <= lca["max_cumulative_error_pct"]:
            raise GroundingError(
                f"run {run_name}: cumulative Simpson error {cum:.3g}% of the total loss change exceeds "
                f"lca.max_cumulative_error_pct={lca['max_cumulative_error_pct']}; lower lca.tolerance or raise lca.max_splits"
            )
        if report["iterations_over_tolerance"]:
            log.warning(
                f"{report['iterations_over_tolerance']} iterations stay above tolerance {lca['tolerance']} at "
                f"max_splits={lca['max_splits']} (see 'error' in {out_path})"
            )
    Path(grounding_path).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report
