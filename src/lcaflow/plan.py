"""A cost plan of every run before any compute: its files and their sizes, the memory and time of each of
its jobs, and totals against the free space of the results file system.

Sizes come from resources.disk_bytes (the one size model) and memory from the resources requests; times
from a short calibration of each run's real model on this machine (a few timed forward and backward
passes), cached in {results_dir}/plan/calibration/<key>.json so that a second plan reuses it."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from . import resources
from .catalog import INPUT_SHAPE, NUM_CLASSES, is_builtin_dataset
from .config import n_chunks
from .data import data_file_info, load_examples
from .errors import ConfigError
from .io import write_json
from .models import set_lca_mode
from .objective import resolve_speed, uses_batch_statistics
from .progress import log
from .spec import RunSpec, resolve_device
from .training import make_optimizer

# Full-set evaluations (train + validation examples) per iteration, from the default run's measured 2.21
# (simpson) and 1.29 (adaptive) plain passes over its 55,000 training examples per iteration, times
# 55,000 / 60,000 (docs/speed.md): the end point and the midpoint, plus refinement where it is needed.
EVALUATIONS_PER_ITERATION = {"simpson": 2.03, "adaptive": 1.18}
# Seconds of every job before and after its work: starting Python, importing torch and lcaflow, and
# Snakemake's script wrapper (measured once: a tiny gradient job of 10 iterations takes 2.1 s, of which
# 0.2 s are passes, 2.0 to 2.4 s over four runs; the tiny assemble 1.6 s).
STARTUP_S = 2.0
# Reading and writing HDF5 files (measured: the default run's assemble reads 0.96 GB and writes 0.9 GB in 3.9 s).
IO_BYTES_PER_S = 500e6
# Bytes of the stored LCA matrix (the chunks) per second of an analysis job, the mean over the default run's
# streaming analyses (measured before the reductions moved into the gradient jobs: noise 44 s, neurons,
# oscillation and synchronization 5-6 s each, over a 0.9 GB lca.h5; the analyses now read fewer bytes).
ANALYSIS_BYTES_PER_S = 70e6
FIGURE_S = 4.0  # a figure from a table: start-up and matplotlib (measured 3-5 s)
CALIBRATION_REPEATS = 3  # timed samples of passes, after one warm-up pass
MIN_SAMPLE_S = 0.1  # a sample repeats a fast pass until it lasts this long
MAX_CALIBRATION_BATCH = 2048  # examples per timed evaluation pass; per-example time scales linearly beyond


def write_plan(config: dict, md_path, json_path, analysis_jobs: int, figure_jobs: int) -> dict:
    """Plan every run of a validated config and write plan.json and plan.md."""
    results = Path(config["results_dir"])
    runs = {name: plan_run(name, run, config, analysis_jobs, figure_jobs) for name, run in config["runs"].items()}
    plan = {"runs": runs, "totals": totals(runs), "free_bytes": free_bytes(results), "results_dir": str(results.resolve())}
    plan["warnings"] = warnings(plan)
    write_json(json_path, plan)
    Path(md_path).write_text(markdown(plan))
    for line in plan["warnings"]:
        log.warning(line)
    return plan


def plan_run(name: str, run: dict, config: dict, analysis_jobs: int, figure_jobs: int) -> dict:
    """Files, jobs and totals of one run."""
    lca, results = config["lca"], Path(config["results_dir"])
    spec = RunSpec.of(name, run)
    data_path = results / "data" / f"{spec.data_key}.h5"
    size = resources.RunSize.of(spec.run, data_path)
    if size is None:
        raise ConfigError(
            f"{spec.where('dataset')}: cannot size the run before {data_path} exists; make it with `snakemake data_all`"
        )
    files = run_files(name, spec, lca, data_path)
    calibration = calibrate(spec, lca, config["threads"], size, data_path, results / "plan" / "calibration")
    jobs = run_jobs(spec, lca, size, calibration, files, data_path, analysis_jobs, figure_jobs)
    return {
        "parameters": size.num_params,
        "iterations": spec.run["iterations"],
        "gradient_jobs": n_chunks(spec.run["iterations"], lca["iterations_per_job"]),
        "examples": {"train": size.n_train, "val": size.n_val},
        "device": calibration["device"],
        "files": files,
        "jobs": jobs,
        "totals": run_totals(files, jobs, calibration["device"], config["threads"]),
        "calibration": calibration,
    }


def run_files(name: str, spec: RunSpec, lca: dict, data_path: Path) -> dict:
    """{path under results_dir: predicted bytes} of every file of a run, from resources.disk_bytes; the
    transient training checkpoint is named with `(transient)`, the small outputs as their folders."""
    parts = resources.disk_bytes(spec.run, lca, data_path)
    chunks = resources.chunk_bytes(spec.run, lca, data_path)
    run_dir = f"runs/{name}"
    named = {
        "data": f"data/{data_path.name}",
        "trajectory": f"{run_dir}/trajectory.h5",
        "checkpoint": f"{run_dir}/train_checkpoint/params.f32 (transient)",
        "lca": f"{run_dir}/lca.h5",
        "small": f"{run_dir}/{{summary,stats,figures}}/ (estimate)",
    }
    if spec.recorded:  # an adopted recording is copied, never trained: no checkpoint
        parts.pop("checkpoint", None)
    files = {}
    for part, n in parts.items():
        if part == "chunks":
            files.update({f"{run_dir}/chunks/{k:04d}.h5": b for k, b in enumerate(chunks)})
        else:
            files[named.get(part, f"{run_dir}/{part}")] = n
    return files


def run_jobs(spec: RunSpec, lca, size, calibration, files, data_path, analysis_jobs: int, figure_jobs: int) -> dict:
    """{job kind: {count, seconds_each, seconds_total, mem_mb}} of one run; the memory is what the jobs request."""
    run = spec.run
    layout = spec.meta_layout()
    analysis_mem = resources.analysis_mem_mb(run, data_path, len(layout.layers) if layout is not None else 12)
    per_iteration = (size.n_train + size.n_val) * EVALUATIONS_PER_ITERATION[lca["quadrature"]] * calibration["eval_s_per_example"]
    data = files.get(f"data/{data_path.name}", 0)
    chunk_seconds = [
        STARTUP_S + (data + n) / IO_BYTES_PER_S + B * per_iteration
        for B, n in zip(resources.chunk_rows(run["iterations"], lca["iterations_per_job"]), chunk_files(files))
    ]
    lca_bytes = sum(n for f, n in files.items() if f.endswith("/lca.h5"))  # the reductions; the matrix is in the chunks
    matrix_bytes = sum(chunk_files(files))
    return {
        "train": job(1, train_seconds(run, calibration, files), resources.train_mem_mb(run, data_path)),
        "gradients": job(len(chunk_seconds), chunk_seconds, resources.gradient_mem_mb(run, lca, data_path)),
        # the assemble rule requests no memory; it reads the chunks' reductions and writes lca.h5
        "assemble": job(1, STARTUP_S + 2 * lca_bytes / IO_BYTES_PER_S, analysis_mem),
        "analyses": job(analysis_jobs, STARTUP_S + (lca_bytes + matrix_bytes) / ANALYSIS_BYTES_PER_S, analysis_mem),
        "figures": job(figure_jobs, FIGURE_S, resources.BASE_MEM_MB),
    }


def chunk_files(files: dict) -> list[int]:
    return [n for f, n in files.items() if "/chunks/" in f]


def train_seconds(run: dict, calibration: dict, files: dict) -> float:
    """Training steps at the run's batch size, plus writing the row file and the trajectory; an adopted
    recording is read and written once."""
    trajectory = sum(n for f, n in files.items() if f.endswith("/trajectory.h5"))
    if run.get("trajectory"):
        return STARTUP_S + 2 * trajectory / IO_BYTES_PER_S
    steps = run["iterations"] * run["batch_size"] * calibration["train_s_per_example"]
    data = sum(n for f, n in files.items() if f.startswith("data/"))
    return STARTUP_S + steps + (data + 3 * trajectory) / IO_BYTES_PER_S


def job(count: int, seconds, mem_mb: int) -> dict:
    """A job kind: `seconds` is one job's time, or a list of each job's."""
    each = list(seconds) if isinstance(seconds, list) else [seconds] * count
    return {
        "count": count,
        "seconds_each": round(max(each, default=0.0), 2),
        "seconds_total": round(sum(each), 2),
        "mem_mb": mem_mb,
    }


def run_totals(files: dict, jobs: dict, device: str, threads: int) -> dict:
    """Disk at the end (the transient checkpoint left out, the shared data file too), peak disk while
    training, core-hours and GPU hours, and the serial time."""
    kept = sum(n for f, n in files.items() if not f.startswith("data/") and "(transient)" not in f)
    on_device = jobs["train"]["seconds_total"] + jobs["gradients"]["seconds_total"]
    rest = sum(j["seconds_total"] for kind, j in jobs.items() if kind not in ("train", "gradients"))
    gpu = device.startswith("cuda")
    return {
        "disk_bytes": kept,
        "disk_bytes_with_data_and_checkpoint": sum(files.values()),
        "cpu_core_hours": round(((0 if gpu else on_device * threads) + rest) / 3600, 4),
        "gpu_hours": round(on_device / 3600 if gpu else 0.0, 4),
        "serial_hours": round((on_device + rest) / 3600, 4),
    }


def totals(runs: dict) -> dict:
    """Over all runs; each data file counted once."""
    data = {f: n for r in runs.values() for f, n in r["files"].items() if f.startswith("data/")}
    summed = {
        k: sum(r["totals"][k] for r in runs.values()) for k in ("disk_bytes", "cpu_core_hours", "gpu_hours", "serial_hours")
    }
    return {**summed, "data_bytes": sum(data.values()), "disk_bytes_with_data": summed["disk_bytes"] + sum(data.values())}


def free_bytes(results: Path) -> int:
    path = results.resolve()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def warnings(plan: dict) -> list[str]:
    """One line per run (and for all runs together) whose predicted disk exceeds the free space."""
    free = plan["free_bytes"]
    lines = [
        f"WARNING: run {name} needs {resources.human(r['totals']['disk_bytes_with_data_and_checkpoint'])} on disk, "
        f"more than the {resources.human(free)} free under {plan['results_dir']}; its train job will refuse to start"
        for name, r in plan["runs"].items()
        if r["totals"]["disk_bytes_with_data_and_checkpoint"] > free
    ]
    if not lines and plan["totals"]["disk_bytes_with_data"] > free:
        lines.append(
            f"WARNING: all runs together need {resources.human(plan['totals']['disk_bytes_with_data'])}, more than the "
            f"{resources.human(free)} free under {plan['results_dir']}"
        )
    return lines


# --- calibration -----------------------------------------------------------------------------------------


def machine() -> dict:
    """What a calibration depends on besides the model: host, processor or GPU, torch."""
    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return {"host": platform.node(), "cpu": cpu, "torch": torch.__version__}


def calibration_facts(spec: RunSpec, lca: dict, threads: int, device, input_shape, batches: dict) -> dict:
    return {
        "architecture": spec.architecture,
        "architecture_args": spec.run.get("architecture_args") or {},
        "loss": spec.run.get("loss", "cross_entropy"),
        "optimizer": spec.run["optimizer"]["name"],
        "input_shape": list(input_shape),
        "device": device.type,
        "accelerator": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "threads": threads,
        "batches": batches,
        "speed": {k: lca[k] for k in ("compute_batch", "channels_last")},
        **machine(),
    }


def calibration_key(facts: dict) -> str:
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]


def calibrate(spec: RunSpec, lca: dict, threads: int, size, data_path: Path, cache_dir: Path) -> dict:
    """Seconds per example of a training step and of a full-set evaluation pass of the run's model on its
    device, from {cache_dir}/<key>.json when this model was timed here before ("cached": true)."""
    torch.set_num_threads(threads)
    device = resolve_device(spec.run["device"])
    input_shape, classes = model_io(spec, data_path)
    batches = {
        "train": spec.run["batch_size"],
        "eval": min(lca["eval_chunk_size"], size.n_train + size.n_val, MAX_CALIBRATION_BATCH),
    }
    facts = calibration_facts(spec, lca, threads, device, input_shape, batches)
    path = cache_dir / f"{calibration_key(facts)}.json"
    if path.exists():
        return {**json.loads(path.read_text()), "cached": True, "file": str(path)}
    measured = {**facts, **time_model(spec, lca, threads, device, input_shape, classes, batches, data_path)}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, measured)
    return {**measured, "cached": False, "file": str(path)}


def model_io(spec: RunSpec, data_path: Path) -> tuple[tuple, int]:
    """The model's input shape and number of classes (a user's dataset: from its data file)."""
    if is_builtin_dataset(spec.dataset):
        return INPUT_SHAPE[spec.dataset], NUM_CLASSES[spec.dataset]
    info = data_file_info(data_path)
    classes = len(info["classes"]) if spec.loss.has_classes else 1
    return info["input_shape"], classes


def example_batch(spec: RunSpec, data_path: Path, n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """n examples of the run's data: uniform random images for a built-in dataset (no file needed), the
    first examples of the data file, repeated up to n, for a user's."""
    if is_builtin_dataset(spec.dataset):
        g = torch.Generator().manual_seed(0)
        x = torch.rand((n, *INPUT_SHAPE[spec.dataset]), generator=g)
        return x.to(device), torch.randint(0, NUM_CLASSES[spec.dataset], (n,), generator=g).to(device)
    n_file = data_file_info(data_path)["n_train"]
    (split,) = load_examples(data_path, [np.arange(n) % n_file], device)
    return split.x, split.y


def time_model(spec: RunSpec, lca: dict, threads: int, device, input_shape, classes: int, batches: dict, data_path: Path) -> dict:
    """Time training steps and evaluation passes (forward, loss, backward) of the run's seeded model."""
    load, others = os.getloadavg()[0], OtherWork()
    model = set_lca_mode(spec.build_model(input_shape, classes).to(device))
    optimizer = make_optimizer(model, spec.layout(model), spec.run)
    x, y = example_batch(spec, data_path, batches["train"], device)
    train_s = timed(lambda: train_step(model, optimizer, spec.loss, x, y), device)
    speed = resolve_speed(lca, model, device)
    x, y = example_batch(spec, data_path, batches["eval"], device)
    if speed.channels_last and x.dim() == 4:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    whole = speed.compute_batch is None or uses_batch_statistics(model)  # as the engine: batch norm needs the whole chunk
    step = len(x) if whole else min(speed.compute_batch, len(x))
    eval_s = timed(lambda: evaluation_pass(model, spec.loss, x, y, step), device)
    other = others.cores()
    return {
        "train_s_per_example": train_s / batches["train"],
        "eval_s_per_example": eval_s / batches["eval"],
        "repeats": CALIBRATION_REPEATS,
        "load_average": round(load, 2),
        "other_work_cores": round(other, 2),
        # other processes kept a quarter of a core busy: threads that wait for each other slow down by up to 100x
        "busy": other > 0.25,
        "cpu_count": os.cpu_count(),
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


class OtherWork:
    """Processor time that other processes used since it was made, in cores (Linux /proc/stat; 0 elsewhere)."""

    def __init__(self):
        self.start, self.busy, self.own = time.perf_counter(), self.busy_seconds(), time.process_time()

    @staticmethod
    def busy_seconds() -> float:
        stat = Path("/proc/stat")
        if not stat.exists():
            return 0.0
        jiffies = [int(v) for v in stat.read_text().split("\n", 1)[0].split()[1:]]
        return (sum(jiffies[:8]) - jiffies[3] - jiffies[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait

    def cores(self) -> float:
        if not Path("/proc/stat").exists():
            return 0.0
        others = (self.busy_seconds() - self.busy) - (time.process_time() - self.own)
        return max(0.0, others / (time.perf_counter() - self.start))


def train_step(model, optimizer, loss, x, y) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.mean(model(x), y).backward()
    optimizer.step()


def evaluation_pass(model, loss, x, y, step: int) -> None:
    model.zero_grad(set_to_none=True)
    for a in range(0, len(x), step):
        loss.total(model(x[a : a + step]), y[a : a + step]).backward()


def timed(fn, device) -> float:
    """Median seconds per call of fn over CALIBRATION_REPEATS samples, after one warm-up call. A sample
    repeats fn for at least MIN_SAMPLE_S, so that a small model's time is not one tick of a busy scheduler."""
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda device: None
    fn()
    sync(device)
    samples = []
    for _ in range(CALIBRATION_REPEATS):
        start, calls, elapsed = time.perf_counter(), 0, 0.0
        while elapsed < MIN_SAMPLE_S:
            fn()
            sync(device)
            calls += 1
            elapsed = time.perf_counter() - start
        samples.append(elapsed / calls)
    return statistics.median(samples)


# --- plan.md ----------------------------------------------------------------------------------------------


def hours(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def markdown(plan: dict) -> str:
    lines = ["# Cost plan", "", *run_table(plan), "", *totals_lines(plan)]
    for name, r in plan["runs"].items():
        lines += [
            "",
            f"## {name}",
            "",
            *calibration_line(r["calibration"]),
            "",
            *jobs_table(r["jobs"]),
            "",
            *files_table(r["files"]),
        ]
    return "\n".join(lines) + "\n"


def run_table(plan: dict) -> list[str]:
    rows = [
        "| run | parameters K | iterations T | gradient jobs | examples train / val | device | disk | CPU core-h | GPU h | serial time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in plan["runs"].items():
        t = r["totals"]
        rows.append(
            f"| {name} | {r['parameters']:,} | {r['iterations']:,} | {r['gradient_jobs']} | {r['examples']['train']:,} / "
            f"{r['examples']['val']:,} | {r['device']} | {resources.human(t['disk_bytes'])} | {t['cpu_core_hours']:.2f} | "
            f"{t['gpu_hours']:.2f} | {hours(t['serial_hours'] * 3600)} |"
        )
    return rows


def totals_lines(plan: dict) -> list[str]:
    t = plan["totals"]
    return [
        f"All runs: {resources.human(t['disk_bytes'])} of run files plus {resources.human(t['data_bytes'])} of data; "
        f"{t['cpu_core_hours']:.2f} CPU core-hours, {t['gpu_hours']:.2f} GPU hours, {hours(t['serial_hours'] * 3600)} one job at a time.",
        f"Free under {plan['results_dir']}: {resources.human(plan['free_bytes'])}.",
        *([""] + plan["warnings"] if plan["warnings"] else []),
    ]


def calibration_line(c: dict) -> list[str]:
    where = "reused from" if c["cached"] else "measured now, cached in"
    return [
        f"Calibration ({where} `{c['file']}`): {c['architecture']} on {c['accelerator'] or c['cpu']} ({c['threads']} threads, "
        f"torch {c['torch']}): {c['train_s_per_example'] * 1e6:.1f} us per training example (batch {c['batches']['train']}), "
        f"{c['eval_s_per_example'] * 1e6:.1f} us per evaluated example (batch {c['batches']['eval']}).",
        *busy_note(c),
    ]


def busy_note(c: dict) -> list[str]:
    """A calibration made while other work kept the processors busy overestimates every time."""
    if c["device"] != "cpu" or not c["busy"]:
        return []
    return [
        f"The processors were busy while it was measured (other work used {c['other_work_cores']} of {c['cpu_count']} cores): the times "
        "below may be too long; delete the calibration file and plan again on a quieter machine."
    ]


def jobs_table(jobs: dict) -> list[str]:
    rows = ["| job | count | time each (longest) | time, all | memory requested |", "|---|---|---|---|---|"]
    for kind, j in jobs.items():
        rows.append(f"| {kind} | {j['count']} | {hours(j['seconds_each'])} | {hours(j['seconds_total'])} | {j['mem_mb']:,} MB |")
    return rows


def files_table(files: dict) -> list[str]:
    return ["| file | size |", "|---|---|", *(f"| `{f}` | {resources.human(n)} |" for f, n in files.items())]
