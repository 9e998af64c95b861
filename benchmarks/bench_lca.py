"""LCA cost against one plain full-set gradient pass, measured in one process on this machine.

    python benchmarks/bench_lca.py                       # default run of config.yaml, iterations 0..59
    python benchmarks/bench_lca.py --start 400 --iterations 100 --threads 2

Uses the run's trajectory from the workflow if it exists, else trains the first iterations itself.
Prints a markdown table and writes benchmarks/out/<run>.json."""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import h5py
import torch
import torch.nn.functional as F
import yaml

REPO = Path(__file__).resolve().parents[1]


def plain_gradient_pass(model, x, y, chunk_size) -> None:
    """What a plain PyTorch loop does for a full-set gradient: mean loss, backward, chunked."""
    model.zero_grad(set_to_none=True)
    for start in range(0, len(y), chunk_size):
        loss = F.cross_entropy(model(x[start : start + chunk_size]), y[start : start + chunk_size], reduction="sum") / len(y)
        loss.backward()


def main() -> None:
    from lcaflow.config import run_fingerprint, validate_config
    from lcaflow.data import load_examples, load_official, write_data_file
    from lcaflow.gradients import compute_chunk
    from lcaflow.models import build_model
    from lcaflow.training import read_trajectory_meta, resolve_device, train

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "config.yaml"))
    parser.add_argument("--run", default=None, help="run name (default: the first run)")
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=5, help="plain passes timed (the median is used)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = validate_config(yaml.safe_load(Path(args.config).read_text()))
    name = args.run or next(iter(cfg["runs"]))
    run = cfg["runs"][name]
    results = REPO / cfg["results_dir"]
    stop = args.start + args.iterations
    lca = dict(cfg["lca"], iterations_per_job=args.iterations)
    work = Path(tempfile.mkdtemp(prefix="lca-bench-"))
    data_path = results / "data" / f"{run['dataset']}.h5"
    if not data_path.exists():
        data_path = work / "data.h5"
        d = cfg["data"]
        write_data_file(
            data_path, run["dataset"], load_official(run["dataset"], d["root"], d["fashion_mnist_dir"], d["download"])
        )
    trajectory = results / "runs" / name / "trajectory.h5"
    if trajectory.exists() and read_trajectory_meta(trajectory)["fingerprint"] != run_fingerprint(run):
        print(f"{trajectory} was made with another config or version: not used", file=sys.stderr)
        trajectory = work / "missing.h5"
    if not trajectory.exists():
        print(f"no usable trajectory: training {stop} iterations for the benchmark", file=sys.stderr)
        run = dict(run, iterations=stop)
        trajectory = work / "trajectory.h5"
        train(name, run, str(data_path), str(trajectory), str(work / "ckpt"))
    meta = read_trajectory_meta(trajectory)
    device = resolve_device(run["device"])

    # one plain full-set gradient pass, timed after a warm-up
    model = build_model(run["architecture"], meta["input_shape"], meta["num_classes"], run["seed"]).to(device)
    (split,) = load_examples(data_path, [meta["train_indices"]], device)
    plain_gradient_pass(model, split.x, split.y, lca["eval_chunk_size"])
    times = []
    for _ in range(args.repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        plain_gradient_pass(model, split.x, split.y, lca["eval_chunk_size"])
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    plain = sorted(times)[len(times) // 2]

    # LCA over [start, stop): the real gradient job, refinement and HDF5 writing included
    chunk_index = args.start // args.iterations
    if args.start % args.iterations:
        raise SystemExit("--start must be a multiple of --iterations")
    out = work / "chunk.h5"
    t0 = time.perf_counter()
    compute_chunk(
        name,
        run if meta["shape"][0] - 1 == run["iterations"] else dict(run, iterations=meta["shape"][0] - 1),
        lca,
        chunk_index,
        str(trajectory),
        str(data_path),
        str(out),
    )
    lca_total = time.perf_counter() - t0
    with h5py.File(out) as f:
        train_passes = int(f.attrs["train_passes"])
        val_passes = int(f.attrs["val_passes"])
        splits = f["num_splits"][()]
    per_iteration = lca_total / args.iterations
    record = {
        "run": name,
        "architecture": run["architecture"],
        "dataset": run["dataset"],
        "train_examples": len(meta["train_indices"]),
        "val_examples": len(meta["val_indices"]),
        "num_params": meta["layout"].num_params,
        "iterations": [args.start, stop],
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": args.threads,
        "plain_full_set_gradient_pass_s": plain,
        "lca_s_per_iteration": per_iteration,
        "ratio_lca_iteration_to_plain_pass": per_iteration / plain,
        "train_passes_per_iteration": train_passes / args.iterations,
        "val_passes_per_iteration": val_passes / args.iterations,
        "iterations_refined": int((splits > 1).sum()),
        "bytes_written_per_iteration": out.stat().st_size / args.iterations,
        "bytes_float32_lca_row": 4 * meta["layout"].num_params,
        "peak_host_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "paper_s_per_iteration_gtx1080ti": {"mnist_fc": 0.4}.get(run["architecture"]),
    }
    out_dir = REPO / "benchmarks" / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"| measure ({name}, {record['device_name']}, {args.threads} threads) | value |\n|---|---|")
    for key in (
        "plain_full_set_gradient_pass_s",
        "lca_s_per_iteration",
        "ratio_lca_iteration_to_plain_pass",
        "train_passes_per_iteration",
        "val_passes_per_iteration",
        "iterations_refined",
        "bytes_written_per_iteration",
        "bytes_float32_lca_row",
        "peak_host_rss_mb",
    ):
        value = record[key]
        print(f"| {key} | {value:.4g} |" if isinstance(value, float) else f"| {key} | {value} |")


if __name__ == "__main__":
    main()
