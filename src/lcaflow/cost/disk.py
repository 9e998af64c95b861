"""The bytes of every file of a run, and the check that the results file system can hold them.

Predicted from the run's size and the storage settings (lca.storage, lca.store, store_validation,
store_gradients); compared with the default run's real files in benchmarks/results/ (within 0.4%)."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..catalog import OFFICIAL_TRAIN_SIZE, TEST_SIZE
from ..chunkfile import chunk_range, n_chunks
from ..errors import LCAError
from ..io import matrix_bytes
from ..paths import ResultPaths
from ..spec import RunSpec
from ..storage import MAX_TRACED, STORAGE_BYTES, sample_size
from .size import RunSize

# Bytes a gradient job writes per parameter besides its stored rows (lcaflow.reducers): the total (float64),
# the helped and hurt counts, the gradient and the step sign changes (int16 each), their end signs (a byte each)
PER_PARAM_PER_JOB = 8 + 4 * 2 + 2
# ...and lca.h5 per parameter: the total (float64), the four counts (int16 while T < 32768)
PER_PARAM_LCA = 8 + 4 * 2
# The tables, figures, summary, explorer page and grounding.json of a run, measured once on the default run
# (stats 2.3 MB, figures 7.0 MB, summary 0.3 MB, explorer.html 2.0 MB): they hardly depend on its size.
SMALL_OUTPUTS_BYTES = 11_600_000


def stored_columns_count(K: int, lca: dict, group_sizes: tuple[int, ...] | None = None) -> int:
    """Columns of the stored matrices: K, or the sample (lcaflow.storage.sample_columns)."""
    if lca["store"] == "full":
        return K
    return sum(sample_size(n, lca["sample_fraction"]) for n in (group_sizes or (K,)))


def traced_columns(K: int, lca: dict, last_kernel: int) -> int:
    """Weights whose gradient the jobs trace (lcaflow.reducers.trace_columns): the last kernel's stored ones."""
    stored = last_kernel if lca["store"] == "full" else sample_size(last_kernel, lca["sample_fraction"])
    return min(stored, MAX_TRACED)


def job_bytes(B: int, K: int, lca: dict, num_classes: int, traced: int, group_sizes: tuple[int, ...] | None = None, val_rows: int = 0, tokens: int = 0) -> int:
    """Bytes of one gradient job's chunk file over B iterations (its metadata and neuron sums left out:
    they are small); `val_rows`: the validation split's example groups, `tokens`: token groups (size.ModelSize)."""
    S = stored_columns_count(K, lca, group_sizes)
    e = STORAGE_BYTES[lca["storage"]]
    rows = B * S * e * (2 if lca["store_validation"] else 1) + ((B + 1) * S * e if lca["store_gradients"] else 0)
    small = 2 * (B + 1) * 4 * traced + (8 * S if lca["store"] == "sampled" else 0) + 64 * B * (num_classes + val_rows + 8)
    return rows + K * PER_PARAM_PER_JOB + small + curve_bytes(B, lca, len(group_sizes or ())) + token_bytes(B, K, lca, tokens, len(group_sizes or ()))


def curve_bytes(B: int, lca: dict, groups: int) -> int:
    """Bytes of the per-example curves (lca.example_curves: M) of B iterations, both splits: the LCA per
    iteration, example and group, the examples' losses and Simpson errors (float64), their indices."""
    return _rows_bytes(B, lca.get("example_curves", 0), groups)


def token_bytes(B: int, K: int, lca: dict, tokens: int, groups: int) -> int:
    """Bytes of E token groups over B iterations, both splits: as the curves with a row per group, and with
    lca.token_group_parameters each parameter's total per group (E x K float64) per split."""
    totals = 2 * tokens * K * 8 if tokens and lca.get("token_group_parameters") else 0
    return _rows_bytes(B, tokens, groups) + totals


def _rows_bytes(B: int, m: int, groups: int) -> int:
    """Both splits' m rows (examples or token groups) over B iterations: the LCA per row and parameter group, the
    losses and Simpson errors (float64), the panels and the rows' indices."""
    return 2 * (B * m * (groups + 1) * 8 + (B + 1) * m * 8 + m * 8 + B * 4) if m else 0


def chunk_rows(T: int, per_job: int) -> list[int]:
    """Iterations of each gradient job, in order (the last one may be shorter)."""
    return [stop - start for start, stop in (chunk_range(k, T, per_job) for k in range(n_chunks(T, per_job)))]


def chunk_bytes(size: RunSize, run: dict, lca: dict) -> list[int]:
    """Bytes of each chunks/NNNN.h5 of a run, in order."""
    m = size.model
    traced = traced_columns(m.num_params, lca, m.last_kernel)
    return [
        job_bytes(B, m.num_params, lca, m.num_classes, traced, m.group_sizes, m.val_group_rows, m.token_groups)
        for B in chunk_rows(run["iterations"], lca["iterations_per_job"])
    ]


def run_files(spec: RunSpec, size: RunSize, lca: dict, results: str) -> list[tuple[str, str, int]]:
    """(kind, path, predicted bytes) of every file of a run, paths under `results` (lcaflow.paths). Kinds: data,
    trajectory, checkpoint (the training checkpoint's rows, transient: removed once the trajectory is written;
    an adopted recording has none), chunks, lca, small (one estimate for the summary, stats and figures)."""
    run, m = spec.run, size.model
    T, K = run["iterations"], m.num_params
    paths = ResultPaths(results)
    here = paths.run(spec.name)
    files = [("data", paths.data(spec.data_key), _data_bytes(spec, size)), ("trajectory", here.trajectory, matrix_bytes(T + 1, K))]
    if not spec.recorded:
        files.append(("checkpoint", here.checkpoint_rows, (T + 1) * K * 4))
    files += [("chunks", here.chunk(k), n) for k, n in enumerate(chunk_bytes(size, run, lca))]
    traced = traced_columns(K, lca, m.last_kernel)
    files.append(
        ("lca", here.lca, K * PER_PARAM_LCA + T * 64 * (m.num_classes + m.val_group_rows + 8) + 2 * (T + 1) * 4 * traced
         + curve_bytes(T, lca, len(m.group_sizes)) + token_bytes(T, K, lca, m.token_groups, len(m.group_sizes)))
    )
    files.append(("small", here.dir + "/{summary,stats,figures}/", SMALL_OUTPUTS_BYTES))
    return files


def by_kind(files: list[tuple[str, str, int]]) -> dict[str, int]:
    parts: dict[str, int] = {}
    for kind, _, n in files:
        parts[kind] = parts.get(kind, 0) + n
    return parts


def _data_bytes(spec: RunSpec, size: RunSize) -> int:
    if size.data_bytes is not None:
        return size.data_bytes
    return (OFFICIAL_TRAIN_SIZE[spec.dataset] + TEST_SIZE[spec.dataset]) * (size.model.input_numel + 8)


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def free_bytes(path) -> int:
    """Free bytes of the file system that holds `path` (or would: its nearest existing parent)."""
    path = Path(path).resolve()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def check_free_space(run_name: str, need: dict[str, int], results, already_there: int = 0) -> None:
    """Stop before training if the results directory cannot hold the run: `need` its bytes by kind (by_kind),
    of which `already_there` exist already (the data file, a checkpoint's rows)."""
    free, total = free_bytes(results), sum(need.values()) - already_there
    if free < total:
        parts = ", ".join(f"{k} {human(v)}" for k, v in need.items())
        raise LCAError(
            f"run {run_name} needs about {human(total)} more on disk ({parts}) but {Path(results).resolve()} has "
            f"{human(free)} free; free space, point results_dir elsewhere or lower iterations "
            f"(`snakemake --cores 1 plan` shows every run's files)"
        )
