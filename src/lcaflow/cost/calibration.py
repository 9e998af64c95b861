"""Timing a run's real model on this machine: seconds per example of a training step and of a full-set
evaluation pass, from a few timed passes (`calibrate`), cached in {results}/plan/calibration/<key>.json.

The cost plan calibrates; the jobs' resource requests only look a calibration up (`cached`), never time
anything while the DAG is built."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

from ..catalog import INPUT_SHAPE, NUM_CLASSES, is_builtin_dataset
from ..gpus import gpu_name
from ..io import write_json
from ..numerics import set_numerics
from ..settings import fingerprint
from ..spec import RunSpec
from .size import RunSize

CALIBRATION_REPEATS = 3  # timed samples of passes, after one warm-up pass
MIN_SAMPLE_S = 0.1  # a sample repeats a fast pass until it lasts this long
MAX_CALIBRATION_BATCH = 2048  # examples per timed evaluation pass; per-example time scales linearly beyond


def machine() -> dict:
    """What a calibration depends on besides the model: host, processor, torch."""
    import torch

    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return {"host": platform.node(), "cpu": cpu, "torch": torch.__version__}


def facts(spec: RunSpec, lca: dict, threads: int, size: RunSize, device, data_path) -> dict:
    """Everything a calibration depends on: its cache key (found without initialising CUDA)."""
    return {
        "architecture": spec.architecture,
        "architecture_args": spec.run["architecture_args"],
        "loss": spec.run["loss"],
        "optimizer": None if spec.recorded else spec.run["optimizer"]["name"],  # a recorded run is not trained here
        "input_shape": list(spec.model_io(data_path)[0]),
        "device": device.type,
        "accelerator": gpu_name() if device.type == "cuda" else None,
        "threads": threads,
        "batches": {
            "train": None if spec.recorded else spec.run["batch_size"],
            "eval": min(lca["eval_chunk_size"], size.examples, MAX_CALIBRATION_BATCH),
        },
        "speed": {k: lca[k] for k in ("compute_batch", "channels_last")},
        "tf32": spec.tf32,  # faster on a GPU
        **machine(),
    }


def _path(cache_dir, f: dict) -> Path:
    return Path(cache_dir) / f"{fingerprint(f)}.json"


def cached(spec: RunSpec, lca: dict, threads: int, size: RunSize, device, cache_dir, data_path) -> dict | None:
    """The calibration of this model on this machine and device, if one was made (None otherwise, and for a
    GPU this machine does not have)."""
    if device.type == "cuda" and gpu_name() is None:
        return None
    path = _path(cache_dir, facts(spec, lca, threads, size, device, data_path))
    return {**json.loads(path.read_text()), "cached": True, "file": str(path)} if path.exists() else None


def calibrate(spec: RunSpec, lca: dict, threads: int, size: RunSize, device, cache_dir, data_path) -> dict:
    """Seconds per example of a training step and of a full-set evaluation pass of the run's model on `device`,
    from the cache when this model was timed here before ("cached": true)."""
    import torch

    torch.set_num_threads(threads)
    f = facts(spec, lca, threads, size, device, data_path)
    path = _path(cache_dir, f)
    if path.exists():
        return {**json.loads(path.read_text()), "cached": True, "file": str(path)}
    measured = {**f, **time_model(spec, lca, device, f["batches"], data_path)}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, measured)
    return {**measured, "cached": False, "file": str(path)}


def example_batch(spec: RunSpec, data_path, n: int, device):
    """n examples of the run's data: uniform random images for a built-in dataset (no file needed), the
    first examples of the data file, repeated up to n, for a user's."""
    import numpy as np
    import torch

    from ..data import data_file_info, load_examples

    if is_builtin_dataset(spec.dataset):
        g = torch.Generator().manual_seed(0)
        x = torch.rand((n, *INPUT_SHAPE[spec.dataset]), generator=g)
        return x.to(device), torch.randint(0, NUM_CLASSES[spec.dataset], (n,), generator=g).to(device)
    n_file = data_file_info(data_path)["n_train"]
    (split,) = load_examples(data_path, [np.arange(n) % n_file], device)
    return split.x, split.y


def time_model(spec: RunSpec, lca: dict, device, batches: dict, data_path) -> dict:
    """Time training steps and evaluation passes (forward, loss, backward) of the run's seeded model, as the
    train and gradient jobs run them; a recorded run times evaluation passes only (its adoption trains nothing):
    its train_s_per_example is None."""
    import torch

    from ..models import set_lca_mode
    from ..objective import resolve_speed, uses_batch_statistics
    from ..training import make_optimizer

    set_numerics(device, spec.tf32)  # the jobs' kernels, or the plan times others
    load, others = os.getloadavg()[0], OtherWork()
    shape, classes = spec.model_io(data_path)
    model = set_lca_mode(spec.build_model(shape, classes).to(device))
    train_s = None
    if batches["train"] is not None:
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
        "train_s_per_example": None if train_s is None else train_s / batches["train"],
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
    import torch

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
