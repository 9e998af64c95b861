"""LCA cost per training iteration against one plain full-set gradient pass, for each network, measured in
one process per network on this machine, beside the paper's S8 timings (one GTX 1080 Ti).

    python benchmarks/bench_lca.py                                   # every network, sizes for this device
    python benchmarks/bench_lca.py --networks mnist_fc lenet --iterations 10
    python benchmarks/bench_lca.py --device cuda --examples 50000    # the paper's full CIFAR size on a GPU
    python benchmarks/bench_lca.py --device cuda --tf32              # the same with TF32 (runs.<run>.tf32)
    snakemake --cores all benchmark                                  # the same, into results/benchmark/

MNIST-shaped networks use the real Fashion-MNIST (55,000 train + 5,000 validation examples); CIFAR-shaped
ones a synthetic CIFAR-10-shaped set (random pixels and labels: the cost of a pass does not depend on the
values) of --examples images, 5,000 of them validation (--examples below 60,000 shrinks the Fashion-MNIST
training split too, as the device check's smoke mode does). Each network: train `--skip + --iterations`
iterations (not timed), time the plain pass (fastest of --repeats), then run the real gradient job twice,
over --iterations and over a third of them, starting at --skip: full-set passes, Simpson refinement and HDF5
writing included. The difference of the two is the cost of an iteration in a long job, without the job's
start (loading data, the first point), which a 110-iteration job of the workflow spreads thin. The long
job's grounding error (its LCA against the real loss change) comes with each time.
Writes <out>/lca_speed.md and <out>/lca_speed.json, again after each network (a run cut short keeps those done)."""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

# Paper S8: time per iteration of gradient calculations and storage per iteration, one GTX 1080 Ti.
PAPER_S8 = {
    "mnist_fc": {"params": 84_060, "s_per_iteration": "0.4", "storage": "300 kB"},
    "lenet": {"params": 808_970, "s_per_iteration": "2.4", "storage": "3.5 MB"},
    "resnet20": {"params": 273_066, "s_per_iteration": "18-20", "storage": "1.2 MB"},
    "allcnn": {"params": 1_371_658, "s_per_iteration": "36-42", "storage": "6 MB"},
}
DATASET = {"mnist_fc": "fashion_mnist", "lenet": "fashion_mnist", "resnet20": "cifar10", "allcnn": "cifar10", "vgg5": "cifar10", "vgg9": "cifar10"}
PAPER_SGD = {"mnist_fc": (0.05, 250), "lenet": (0.02, 250), "resnet20": (0.1, 128), "allcnn": (0.1, 128), "vgg5": (0.05, 128), "vgg9": (0.05, 128)}
VAL_FRACTION = 0.1  # the paper's split: 5,000 of 50,000 (CIFAR) or 60,000 (MNIST) images held out
# CPU sizes for the CIFAR nets: a full 50,000-image pass of AllCNN takes ~20 min on 2 cores. The ratio of
# LCA time to a plain pass does not depend on the number of examples; per-example times scale linearly.
CPU_CIFAR_EXAMPLES = {"resnet20": 10_000, "allcnn": 5_000, "vgg5": 10_000, "vgg9": 5_000}


def plain_gradient_pass(model, x, y, batch: int) -> None:
    """What a plain PyTorch loop does for a full-set gradient: mean loss, backward, in batches."""
    model.zero_grad(set_to_none=True)
    for start in range(0, len(y), batch):
        loss = F.cross_entropy(model(x[start : start + batch]), y[start : start + batch], reduction="sum")
        (loss / len(y)).backward()


def _timed(fn, device, repeats: int) -> float:
    fn()  # warm-up: allocator, kernel choice
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return min(times)  # the pass at its best: makes the LCA ratio (an average over iterations) conservative


def _data_file(dataset: str, work: Path, cfg: dict, given: str | None) -> Path:
    from lcaflow.data import load_official, write_data_file
    from lcaflow.paths import ResultPaths

    if dataset == "fashion_mnist":
        cached = Path(given) if given else REPO / ResultPaths(cfg["results_dir"]).data("fashion_mnist")
        if cached.exists():
            return cached
        d = cfg["data"]
        arrays = load_official(dataset, d["root"], d["fashion_mnist_dir"], d["download"])
    else:  # synthetic CIFAR-10-shaped images (timing does not depend on the pixel values); runs use `examples` of them
        rng = np.random.default_rng(0)
        arrays = {
            "x_train": rng.integers(0, 256, (50_000, 3, 32, 32), dtype=np.uint8),
            "y_train": rng.integers(0, 10, 50_000).astype(np.int64),
            "x_test": np.zeros((0, 3, 32, 32), np.uint8),
            "y_test": np.zeros(0, np.int64),
            "classes": [f"class{i}" for i in range(10)],
        }
    path = work / f"{dataset}.h5"
    write_data_file(path, dataset, arrays)
    return path


QUADRATURES = ("simpson", "adaptive")


def _time_jobs(network, run, lca, trajectory, data_path, work, args, device) -> dict:
    """Two real gradient jobs of one quadrature starting at --skip, a short and a long one; per iteration of the
    long one beyond the short one: seconds, full-set passes, evaluations, iterations refined or by the trapezoid."""
    import h5py

    from lcaflow.gradients import compute_chunk
    from lcaflow.integrate import TRAPEZOID, evaluations

    jobs = {}
    for length in (max(1, args.iterations // 3), args.iterations):  # short first: the peak memory after each
        out = work / f"{lca['quadrature']}_chunk{length}.h5"
        t0 = time.perf_counter()
        compute_chunk(network, run, dict(lca, iterations_per_job=length), args.skip // length, str(trajectory), str(data_path), str(out))
        seconds = time.perf_counter() - t0
        with h5py.File(out) as f:
            splits = f["num_splits"][()]
            # bytes that grow with the iterations, apart from the per-job, per-parameter sums (18 bytes a parameter)
            rows = [d for d in f.values() if isinstance(d, h5py.Dataset) and d.shape and d.shape[0] in (length, length + 1)]
            growing = sum(d.id.get_storage_size() for d in rows)
            loss_change = float(f["loss"][-1] - f["loss"][0])
            jobs[length] = {
                "s": seconds,
                "grounding_error_pct": 100 * float(f["error"][()].sum()) / abs(loss_change) if loss_change else float("nan"),
                "passes": (int(f.attrs["train_passes"]), int(f.attrs["val_passes"])),
                "splits": splits,
                "bytes": growing,
                "peak_host_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        if device.type == "cuda":
            jobs[length]["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    short, long = sorted(jobs)
    extra = long - short
    splits = jobs[long]["splits"]
    return {
        "job_lengths": [short, long],
        "lca_s_per_iteration": (jobs[long]["s"] - jobs[short]["s"]) / extra,
        "lca_s_per_iteration_whole_job": jobs[long]["s"] / long,
        "train_passes_per_iteration": (jobs[long]["passes"][0] - jobs[short]["passes"][0]) / extra,
        "val_passes_per_iteration": (jobs[long]["passes"][1] - jobs[short]["passes"][1]) / extra,
        "evaluations_per_iteration": float(1 + evaluations(splits).mean()),  # of the long job, end points counted once
        "iterations_refined": int((splits > 1).sum()),
        "iterations_trapezoid": int((splits == TRAPEZOID).sum()),
        "bytes_per_iteration": jobs[long]["bytes"] / long,
        # the long job's LCA against the real loss change over its iterations (as grounding.json's, per job)
        "grounding_error_pct": jobs[long]["grounding_error_pct"],
        "peak_host_mb": [jobs[short]["peak_host_mb"], jobs[long]["peak_host_mb"]],
        "peak_gpu_mb": [jobs[short]["peak_gpu_mb"], jobs[long]["peak_gpu_mb"]] if device.type == "cuda" else None,
    }


def measure(network: str, args) -> dict:
    """One network, in this process (run through a subprocess per network, so peak memory is its own)."""
    import h5py
    import yaml

    from lcaflow.catalog import OFFICIAL_TRAIN_SIZE
    from lcaflow.config import validate_config
    from lcaflow.cost.size import model_size
    from lcaflow.data import load_examples
    from lcaflow.models import build_model, layout_of, set_lca_mode
    from lcaflow.objective import FullSetObjective, resolve_speed
    from lcaflow.spec import RunSpec, resolve_device
    from lcaflow.training import train
    from lcaflow.trajectory import read_trajectory_meta

    torch.set_num_threads(args.threads)
    cfg = validate_config(yaml.safe_load((REPO / "config.yaml").read_text()))
    device = resolve_device(args.device)
    dataset = DATASET[network]
    full = OFFICIAL_TRAIN_SIZE[dataset]
    examples = min(full, args.examples) if args.examples else full if dataset == "fashion_mnist" or device.type == "cuda" else CPU_CIFAR_EXAMPLES[network]
    lr, batch_size = PAPER_SGD[network]
    total = args.skip + args.iterations
    work = Path(tempfile.mkdtemp(prefix=f"lca-bench-{network}-"))
    data_path = _data_file(dataset, work, cfg, args.fashion_mnist_file)
    run = {
        "dataset": dataset,
        "architecture": network,
        "optimizer": {"name": "sgd", "lr": lr, "momentum": 0.9},
        "batch_size": batch_size,
        "iterations": total,
        "val_size": 5000 if examples >= 50_000 else int(examples * VAL_FRACTION),
        "device": args.device,
        "tf32": args.tf32,
    }
    if examples < full:
        run["train_size"] = examples - run["val_size"]
    lca_settings = {"iterations_per_job": args.iterations, "store_gradients": args.store_gradients}
    for key in ("compute_batch", "channels_last", "compression"):
        if getattr(args, key) is not None:
            lca_settings[key] = getattr(args, key)
    cfg = validate_config({"runs": {network: run}, "lca": lca_settings})
    run, lca = cfg["runs"][network], cfg["lca"]
    trajectory = work / "trajectory.h5"
    t0 = time.perf_counter()
    train(network, run, str(data_path), str(trajectory), str(work / "checkpoints"))
    train_s_per_iteration = (time.perf_counter() - t0) / total
    meta = read_trajectory_meta(trajectory)

    # the real gradient job, long and short, with each quadrature in turn: the difference is an iteration's cost
    methods = {q: _time_jobs(network, run, dict(lca, quadrature=q), trajectory, data_path, work, args, device) for q in args.quadratures}
    first = args.quadratures[0]
    long, short = methods[first]["job_lengths"][1], methods[first]["job_lengths"][0]
    with h5py.File(work / f"{first}_chunk{long}.h5") as f:
        rows = f["lca"]
        t0 = time.perf_counter()
        for a in range(0, rows.shape[0], 16):
            rows[a : a + 16]
        read_mb_s = rows.nbytes / (time.perf_counter() - t0) / 1e6
    # plain full-set gradient passes over the training split: PyTorch defaults, and the engine's layout
    model = set_lca_mode(build_model(network, meta["input_shape"], meta["num_classes"], run["seed"]).to(device))
    (split,) = load_examples(data_path, [meta["train_indices"]], device)
    speed = resolve_speed(lca, model, device)
    # the engine's batches and layout (class-sorted examples, as it evaluates them)
    engine = FullSetObjective(model, layout_of(model), split, meta["num_classes"], lca["eval_chunk_size"], speed=speed)
    engine_batch = engine.compute_batch or lca["eval_chunk_size"]
    # for comparison only (the slowest column: LeNet takes 37 s on 2 CPU cores): timed once after a warm-up
    plain_default = _timed(lambda: plain_gradient_pass(model, split.x, split.y, lca["eval_chunk_size"]), device, 1)
    model = model.to(memory_format=torch.channels_last) if speed.channels_last else model
    plain = _timed(lambda: plain_gradient_pass(model, engine.x, engine.y, engine_batch), device, args.repeats)

    K = meta["layout"].num_params
    n_train, n_val = len(meta["train_indices"]), len(meta["val_indices"])
    flops_per_example = model_size(RunSpec.of(network, run), data_path).flops_per_example  # forward + backward, by torch

    def of_peak(gflop_per_s: float) -> float | None:
        return gflop_per_s / args.peak_gflops if args.peak_gflops else None
    return {
        "network": network,
        "dataset": dataset if dataset == "fashion_mnist" else "cifar10-shaped synthetic",
        "params": K,
        "paper_params": PAPER_S8.get(network, {}).get("params"),
        "train_examples": n_train,
        "val_examples": n_val,
        "iterations_timed": [args.skip, total],
        "job_lengths": [short, long],
        "compute_batch": speed.compute_batch or lca["eval_chunk_size"],
        "channels_last": speed.channels_last,
        "train_s_per_iteration": train_s_per_iteration,
        "plain_pass_s": plain,
        "plain_pass_pytorch_defaults_s": plain_default,
        "plain_pass_gflop_per_s": flops_per_example * n_train / plain / 1e9,
        "plain_pass_fraction_of_peak": of_peak(flops_per_example * n_train / plain / 1e9),
        "lca_row_bytes": 4 * K,
        "matrices_per_iteration": 1 + lca["store_validation"] + lca["store_gradients"],
        "compression": lca["compression"],
        "read_mb_per_s": read_mb_s,
        # per quadrature; peak memory after the short and after the long job (equal when memory does not grow
        # with the iterations; the adaptive jobs run after the Simpson ones, so theirs include Simpson's peak)
        "methods": {
            q: {
                **m,
                "ratio": m["lca_s_per_iteration"] / plain,
                "pass_equivalents_per_iteration": (m["train_passes_per_iteration"] * n_train + m["val_passes_per_iteration"] * n_val) / n_train,
                # the passes' floating-point work per second of an LCA iteration (bookkeeping and writing not counted)
                "lca_fraction_of_peak": of_peak(
                    flops_per_example * (m["train_passes_per_iteration"] * n_train + m["val_passes_per_iteration"] * n_val) / m["lca_s_per_iteration"] / 1e9
                ),
            }
            for q, m in methods.items()
        },
        "paper_s_per_iteration": PAPER_S8.get(network, {}).get("s_per_iteration"),
        "paper_storage_per_iteration": PAPER_S8.get(network, {}).get("storage"),
    }


def device_name(device: str) -> str:
    from lcaflow.spec import resolve_device

    d = resolve_device(device)
    if d.type == "cuda":
        return torch.cuda.get_device_name(d)
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.machine())
    return f"{model}, {torch.get_num_threads()} threads"


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _pair(values) -> str:
    return "-" if values is None else " / ".join(f"{v:.0f}" for v in values)


def markdown(results: list[dict], header: dict) -> str:
    def fmt(value, digits=3):
        if value is None:
            return "-"
        return f"{value:.{digits}g}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value)

    lines = [
        f"# LCA speed: {header['device']} ({header['date']})",
        "",
        f"torch {header['torch']}, {header['threads']} CPU threads, float32, TF32 {'on' if header['tf32'] else 'off'}; plain pass = one full-set gradient pass over the "
        "training split by a plain PyTorch loop with the engine's batch and memory layout (the PyTorch-defaults column: "
        "contiguous layout, eval_chunk_size batches). Ratio = LCA s/iteration over the plain pass; its floor is the "
        "pass equivalents per iteration (train evaluations per iteration on train plus validation split: 2 for Simpson, "
        "1 plus the share of iterations whose midpoint was needed for adaptive quadrature). Both quadratures are timed in "
        "the same process on the same trajectory iterations.",
        "",
        "| network | quadrature | params (paper) | train + val examples | plain pass s | plain pass GFLOP/s (of peak) | plain pass, PyTorch defaults s "
        "| LCA s/iteration (of peak) | ratio | grounding error of the long job | train evaluations / iteration | pass equivalents / iteration | refined | by trapezoid "
        "| paper s/iteration (1080 Ti) | bytes/iteration (LCA row 4K) | paper storage | block read MB/s "
        "| peak host MB (short / long job) | peak GPU MB (short / long job) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for q, m in r["methods"].items():
            lines.append(
                f"| {r['network']} | {q} | {fmt(r['params'])} ({fmt(r['paper_params'])}) | {fmt(r['train_examples'])} + {fmt(r['val_examples'])} "
                f"| {fmt(r['plain_pass_s'])} | {r['plain_pass_gflop_per_s']:.0f} ({_percent(r['plain_pass_fraction_of_peak'])}) "
                f"| {fmt(r['plain_pass_pytorch_defaults_s'])} | {fmt(m['lca_s_per_iteration'])} ({_percent(m['lca_fraction_of_peak'])}) | {m['ratio']:.2f} "
                f"| {m['grounding_error_pct']:+.3f}% "
                f"| {m['evaluations_per_iteration']:.2f} | {m['pass_equivalents_per_iteration']:.2f} "
                f"| {m['iterations_refined']}/{m['job_lengths'][1]} | {m['iterations_trapezoid']}/{m['job_lengths'][1]} "
                f"| {fmt(r['paper_s_per_iteration'])} | {fmt(round(m['bytes_per_iteration']))} ({fmt(r['lca_row_bytes'])}) "
                f"| {fmt(r['paper_storage_per_iteration'])} | {r['read_mb_per_s']:.0f} | {_pair(m['peak_host_mb'])} | {_pair(m['peak_gpu_mb'])} |"
            )
    lines += [
        "",
        "Bytes/iteration: what the gradient job writes per iteration (the training LCA, plus the full-set gradient "
        "with --store-gradients), against 4 bytes per parameter for one float32 LCA row; each job also writes its "
        "per-parameter sums once (18 bytes a parameter). "
        "LCA s/iteration: the difference between a long and a short gradient job over the difference in iterations, "
        "so a job's start (loading data, its first point) is left out, as a 110-iteration workflow job spreads it thin. "
        "Peak host MB: the whole process, data set and model included, after the short and after the long job "
        "(the job streams the trajectory and its output, so memory does not grow with the iterations).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", nargs="+", default=["mnist_fc", "lenet", "resnet20", "allcnn", "vgg5", "vgg9"], choices=list(DATASET))
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--iterations", type=int, default=None, help="iterations of the long timed job (default: 48 for MNIST-FC, 6 for LeNet, 3 for the others)")
    parser.add_argument("--skip", type=int, default=None, help="iterations trained before the timed ones (default: ~100)")
    parser.add_argument(
        "--examples", type=int, default=None, help="CIFAR-shaped set size (default: 50,000 on a GPU, smaller on CPU); below 60,000 it shrinks Fashion-MNIST too"
    )
    parser.add_argument("--threads", type=int, default=min(os.cpu_count() or 1, 16))
    parser.add_argument("--repeats", type=int, default=5, help="plain passes timed; the fastest is reported")
    parser.add_argument("--compute-batch", dest="compute_batch", default=None, help="lca.compute_batch (default: auto)")
    parser.add_argument("--channels-last", dest="channels_last", default=None, help="lca.channels_last: true, false or auto")
    parser.add_argument("--compression", default=None, choices=["none", "lzf", "gzip"])
    parser.add_argument("--store-gradients", dest="store_gradients", action="store_true", help="lca.store_gradients")
    parser.add_argument("--peak-gflops", dest="peak_gflops", type=float, default=None, help="the device's peak for the fraction columns: float32 (H100 SXM: 67,000), TF32 with --tf32")
    parser.add_argument("--tf32", action="store_true", help="runs.<run>.tf32: TF32 matmuls and convolutions on a GPU")
    parser.add_argument("--quadratures", nargs="+", default=list(QUADRATURES), choices=QUADRATURES, help="timed in this order")
    parser.add_argument(
        "--fashion-mnist-file", dest="fashion_mnist_file", default=None, help="its data file, as the data stage writes it (default: the results dir's, else made from config.yaml's data)"
    )
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "out"))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one network, print JSON
    args = parser.parse_args()

    if args.one:
        args.iterations = args.iterations or (48 if args.one == "mnist_fc" else 6 if args.one == "lenet" else 3)  # 48, 16: whole HDF5 chunks
        # past the first ~100 iterations, whose large steps need more Simpson refinement than the rest of a run
        unit = math.lcm(args.iterations, max(1, args.iterations // 3))  # both jobs start at --skip
        args.skip = unit * -(-100 // unit) if args.skip is None else args.skip
        if args.skip % unit:
            raise SystemExit(f"--skip must be a multiple of {unit} (both timed gradient jobs start there)")
        print(json.dumps(measure(args.one, args)))
        return

    torch.set_num_threads(args.threads)
    header = {
        "device": device_name(args.device),
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "threads": args.threads,
        "tf32": args.tf32,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for network in args.networks:
        print(f"benchmarking {network} ...", file=sys.stderr, flush=True)
        cmd = [sys.executable, __file__, "--one", network, *sys.argv[1:]]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{network}: benchmark failed:\n{done.stderr[-3000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        table = markdown(results, header)  # after each network: a run cut short keeps what it measured
        (out / "lca_speed.md").write_text(table)
        (out / "lca_speed.json").write_text(json.dumps({**header, "results": results}, indent=2) + "\n")
    print(table)


if __name__ == "__main__":
    main()
