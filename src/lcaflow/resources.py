"""Size of a run derived from its config alone: parameters, FLOPs, memory, runtime and disk.

Used to request cluster resources that scale with the run and to refuse a run the disk cannot hold."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from .catalog import INPUT_SHAPE, OFFICIAL_TRAIN_SIZE, TEST_SIZE, data_key, is_builtin_dataset, is_import_path
from .config import chunk_range, n_chunks
from .errors import LCAError
from .io import matrix_bytes, open_h5
from .progress import log
from .spec import full_run
from .storage import MAX_TRACED, STORAGE_BYTES, sample_size

NUM_CLASSES = 10
# Conservative sustained rates for the runtime request (measured: MNIST-FC passes run at ~90 GFLOP/s
# per core on AVX-512 CPUs; small models use a fraction of a GPU).
CPU_FLOPS_PER_THREAD = 10e9
GPU_FLOPS = 1e12
PASSES_PER_ITERATION = 3.0  # 2 train passes + validation + refinement margin
BASE_MEM_MB = 1500  # interpreter, torch, CUDA context


def _cost(model, x) -> tuple[int, float, int, int]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    activations = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: activations.append(o.numel() if isinstance(o, torch.Tensor) else 0))
        for m in model.modules()
    ]
    with FlopCounterMode(display=False) as counter:
        model(x).float().sum().backward()
    for hook in hooks:
        hook.remove()
    K = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n = len(x)
    kernels = [p.numel() for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    return K, counter.get_total_flops() / n, sum(activations) // n, kernels[-1] if kernels else 0


@cache
def model_cost(architecture: str, dataset: str) -> tuple[int, float, int, int]:
    """(trainable parameters K, forward+backward FLOPs per example, activation floats per example, entries of
    the last kernel) of a
    registered network on a built-in dataset, measured on the meta device: nothing is allocated."""
    import torch

    from .models import ARCHITECTURES

    with torch.device("meta"):
        return _cost(ARCHITECTURES[architecture](INPUT_SHAPE[dataset], NUM_CLASSES), torch.empty(4, *INPUT_SHAPE[dataset]))


@cache
def _user_cost(run_json: str, data_path: str, mtime: float) -> tuple[int, float, int, int, int, int] | None:
    """Cost of a run with a model or dataset by import path, from its data file (None until it exists)."""
    import torch

    from .data import data_file_info
    from .spec import RunSpec

    run = json.loads(run_json)
    info = data_file_info(data_path)
    with open_h5(data_path, "dataset file") as f:
        sample = torch.from_numpy(f["x_train"][:4])
    if sample.dtype == torch.uint8 and not is_import_path(run["dataset"]):
        sample = sample.float()
    classes = len(info["classes"]) if run["loss"] == "cross_entropy" and info["classes"] else 1
    with torch.device("meta"):
        model = RunSpec.of("r", run).build_model(info["input_shape"], classes)
        K, flops, activations, last_kernel = _cost(model, sample.to("meta"))
    return K, flops, activations, info["n_train"], info["n_test"], math.prod(info["input_shape"]), classes, last_kernel


@dataclass(frozen=True)
class RunSize:
    num_params: int
    flops_per_example: float
    n_train: int
    n_val: int
    input_numel: int
    activations_per_example: int
    num_classes: int = NUM_CLASSES  # rows of the per-class sums (1 for a loss without classes)
    data_bytes: int | None = None  # a user's data file, which exists before the run starts
    last_kernel: int = MAX_TRACED  # entries of the last layer's kernel, whose gradients the jobs trace

    @classmethod
    def of(cls, run: dict, data_path: str | None = None) -> RunSize | None:
        """The size of a run; None when it cannot be known yet (a user's model or data before its data file exists)."""
        run = full_run(run)
        if is_builtin_dataset(run["dataset"]) and not is_import_path(run["architecture"]):
            K, flops, activations, last_kernel = model_cost(run["architecture"], run["dataset"])
            n_train = run["train_size"] or OFFICIAL_TRAIN_SIZE[run["dataset"]] - run["val_size"]
            numel = math.prod(INPUT_SHAPE[run["dataset"]])
            return cls(K, flops, n_train, run["val_size"], numel, activations, last_kernel=last_kernel)
        if data_path is None or not Path(data_path).is_file():
            return None
        try:
            K, flops, activations, n_official, n_test, numel, classes, last_kernel = _user_cost(
                json.dumps(run, sort_keys=True), str(data_path), Path(data_path).stat().st_mtime
            )
        except Exception as err:  # sizing is advice: the jobs report real problems themselves
            log.warning(f"cannot size the run from {data_path} ({type(err).__name__}: {err}); using default resources")
            return None
        if run["validation"] == "test":
            n_train, n_val = run["train_size"] or n_official, n_test
        else:
            n_train, n_val = run["train_size"] or n_official - run["val_size"], run["val_size"]
        return cls(K, flops, n_train, n_val, numel, activations, classes, Path(data_path).stat().st_size, last_kernel)


# Requests for a run whose size is not known yet (a user's model before its data file exists).
UNKNOWN_MEM_MB = 8000
UNKNOWN_RUNTIME_MIN = 240


def train_mem_mb(run: dict, data_path: str | None = None) -> int:
    s = RunSize.of(run, data_path)
    if s is None:
        return UNKNOWN_MEM_MB
    data = (s.n_train + s.n_val) * s.input_numel * 4 * 2  # float copy + the uint8 file read
    return int(BASE_MEM_MB + 1.5 * (data + 40 * s.num_params * 4) / 2**20)


def gradient_mem_mb(run: dict, lca: dict, data_path: str | None = None) -> int:
    s = RunSize.of(run, data_path)
    if s is None:
        return UNKNOWN_MEM_MB
    data = (s.n_train + s.n_val) * s.input_numel * 4 * 2
    # per-class gradients of the Simpson points, float64: ~650 bytes a parameter with 10 classes, measured
    # (benchmarks/results/2026-11-29_scale_*); the rows go to disk as they come, so nothing grows with T
    accumulators = 8 * s.num_classes * s.num_params * 8
    per_param = 64 * s.num_params  # the reducers' per-parameter sums and counts, theta and its step
    activations = min(lca["eval_chunk_size"], s.n_train) * s.activations_per_example * 4 * 3  # outputs, grads, workspace
    return int(BASE_MEM_MB + 1.5 * (data + accumulators + per_param + activations) / 2**20)


def gradient_runtime_min(run: dict, lca: dict, threads: int, gpu: bool, data_path: str | None = None) -> int:
    s = RunSize.of(run, data_path)
    if s is None:
        return UNKNOWN_RUNTIME_MIN
    flops = lca["iterations_per_job"] * PASSES_PER_ITERATION * (s.n_train + s.n_val) * s.flops_per_example
    rate = GPU_FLOPS if gpu else CPU_FLOPS_PER_THREAD * threads
    return max(10, math.ceil(2 * flops / rate / 60) + 5)


def train_runtime_min(run: dict, threads: int, gpu: bool, data_path: str | None = None) -> int:
    s = RunSize.of(run, data_path)
    if s is None:
        return UNKNOWN_RUNTIME_MIN
    flops = run["iterations"] * run["batch_size"] * s.flops_per_example
    rate = GPU_FLOPS if gpu else CPU_FLOPS_PER_THREAD * threads
    return max(10, math.ceil(3 * flops / rate / 60) + 5)


ANALYSIS_READ_RATE = 50e6  # bytes/s, a conservative shared-file-system streaming rate


def analysis_mem_mb(run: dict, data_path: str | None = None, n_groups: int = 12) -> int:
    """A streaming analysis holds a few copies of one block, a dozen K-long arrays and the parameter
    columns it follows over all T iterations (the correlation test: up to 3 x 30 x 12 weights per
    layer with the default settings, float32)."""
    from .summary import BLOCK_BYTES

    s = RunSize.of(run, data_path)
    if s is None:
        return UNKNOWN_MEM_MB
    followed = run["iterations"] * 3 * 30 * 12 * n_groups * 4
    return int(BASE_MEM_MB + 1.5 * (6 * BLOCK_BYTES + 12 * 8 * s.num_params + followed) / 2**20)


def analysis_runtime_min(run: dict, data_path: str | None = None) -> int:
    """Up to four streamed passes over a T x K float32 matrix."""
    s = RunSize.of(run, data_path)
    if s is None:
        return UNKNOWN_RUNTIME_MIN
    seconds = 4 * run["iterations"] * s.num_params * 4 / ANALYSIS_READ_RATE
    return max(10, math.ceil(2 * seconds / 60) + 5)


# Bytes a gradient job writes per parameter besides its stored rows (lcaflow.reducers): the total (float64),
# the helped and hurt counts, the gradient and the step sign changes (int16 each), their end signs (a byte each)
PER_PARAM_PER_JOB = 8 + 4 * 2 + 2
# ...and lca.h5 per parameter: the total (float64), the four counts (int16 while T < 32768)
PER_PARAM_LCA = 8 + 4 * 2


def stored_columns_count(K: int, lca: dict, group_sizes: tuple[int, ...] | None = None) -> int:
    """Columns of the stored matrices: K, or the sample (lcaflow.storage.sample_columns)."""
    if lca["store"] == "full":
        return K
    sizes = group_sizes or (K,)
    return sum(sample_size(n, lca["sample_fraction"]) for n in sizes)


def traced_columns(K: int, lca: dict, last_kernel: int) -> int:
    """Weights whose gradient the jobs trace (lcaflow.reducers.trace_columns): the last kernel's stored ones."""
    stored = last_kernel if lca["store"] == "full" else sample_size(last_kernel, lca["sample_fraction"])
    return min(stored, MAX_TRACED)


def job_bytes(B: int, K: int, lca: dict, num_classes: int = NUM_CLASSES, traced: int = MAX_TRACED, group_sizes: tuple[int, ...] | None = None) -> int:
    """Bytes of one gradient job's chunk file over B iterations (its metadata and neuron sums left out:
    they are small)."""
    S = stored_columns_count(K, lca, group_sizes)
    e = STORAGE_BYTES[lca["storage"]]
    rows = B * S * e * (2 if lca["store_validation"] else 1) + ((B + 1) * S * e if lca["store_gradients"] else 0)
    small = 2 * (B + 1) * 4 * traced + (8 * S if lca["store"] == "sampled" else 0) + 64 * B * (num_classes + 8)
    return rows + K * PER_PARAM_PER_JOB + small


# The tables, figures, summary and grounding.json of a run, measured once on the default run (stats 2.3 MB,
# figures 7.0 MB, summary 0.3 MB): they hardly depend on its size.
SMALL_OUTPUTS_BYTES = 9_600_000


def chunk_rows(T: int, per_job: int) -> list[int]:
    """Iterations of each gradient job, in order (the last one may be shorter)."""
    return [stop - start for start, stop in (chunk_range(k, T, per_job) for k in range(n_chunks(T, per_job)))]


def chunk_bytes(run: dict, lca: dict, data_path: str | None = None) -> list[int]:
    """Bytes of each chunks/NNNN.h5 of a run, in order (empty while the size of a user's model is unknown)."""
    s = RunSize.of(run, data_path)
    if s is None:
        return []
    traced = traced_columns(s.num_params, lca, s.last_kernel)
    return [job_bytes(B, s.num_params, lca, s.num_classes, traced) for B in chunk_rows(run["iterations"], lca["iterations_per_job"])]


def disk_bytes(run: dict, lca: dict, data_path: str | None = None) -> dict:
    """Bytes each output of a run will take (empty while the size of a user's model is unknown)."""
    s = RunSize.of(run, data_path)
    if s is None:
        return {}
    T, K = run["iterations"], s.num_params
    return {
        "trajectory": matrix_bytes(T + 1, K),
        "checkpoint": (T + 1) * K * 4,  # the raw row file, removed once the trajectory is written
        "chunks": sum(chunk_bytes(run, lca, data_path)),
        "lca": K * PER_PARAM_LCA + T * 64 * (s.num_classes + 8) + 2 * (T + 1) * 4 * traced_columns(K, lca, s.last_kernel),
        "small": SMALL_OUTPUTS_BYTES,
        "data": (OFFICIAL_TRAIN_SIZE[run["dataset"]] + TEST_SIZE[run["dataset"]]) * (s.input_numel + 8)
        if s.data_bytes is None
        else s.data_bytes,
    }


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def check_free_space(
    run_name: str, run: dict, lca: dict, results_dir: str | Path, already_there: int = 0, data_path: str | None = None
) -> None:
    """Stop before training if the results directory cannot hold the whole run
    (`already_there`: bytes of its files that exist already, e.g. the data file or a checkpoint)."""
    run = full_run(run)
    data_path = data_path or Path(results_dir) / "data" / f"{data_key(run['dataset'], run['dataset_args'])}.h5"
    need = disk_bytes(run, lca, data_path)
    if run.get("trajectory"):
        need.pop("checkpoint", None)
    total = sum(need.values()) - already_there
    path = Path(results_dir).resolve()
    while not path.exists():
        path = path.parent
    free = shutil.disk_usage(path).free
    if free < total:
        parts = ", ".join(f"{k} {human(v)}" for k, v in need.items())
        raise LCAError(
            f"run {run_name} needs about {human(total)} on disk ({parts}) but {path} has {human(free)} free; "
            f"free space, point results_dir elsewhere or lower iterations (`snakemake --cores 1 plan` shows every run's files)"
        )
