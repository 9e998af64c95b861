# Config validation, derived paths and input functions shared by all stages.
import re
import sys

from lcaflow.config import n_chunks, numerics_of, validate_config
from lcaflow.errors import ConfigError
from lcaflow import resources as size

try:
    CONFIG = validate_config(config)
except ConfigError as err:
    # One line naming the key beats a schema dump; exit before any job is scheduled.
    sys.exit(f"ERROR: {err}")

RESULTS = CONFIG["results_dir"]
THREADS = CONFIG["threads"]
RUNS = CONFIG["runs"]
LCA = CONFIG["lca"]
# Gradient jobs get only the settings that change their output, so e.g. a new assembly
# threshold never recomputes gradients.
LCA_GRADIENTS = {k: v for k, v in LCA.items() if k != "max_cumulative_error_pct"}
DATA = CONFIG["data"]


wildcard_constraints:
    run="|".join(re.escape(r) for r in sorted(RUNS)),
    dataset="fashion_mnist|mnist|cifar10",
    chunk=r"\d+",


def run_dir(run):
    return f"{RESULTS}/runs/{run}"


def chunk_ids(run):
    return [
        f"{k:04d}"
        for k in range(n_chunks(RUNS[run]["iterations"], LCA["iterations_per_job"]))
    ]


def data_file(wildcards):
    return f"{RESULTS}/data/{RUNS[wildcards.run]['dataset']}.h5"


def run_config(wildcards):
    """The run settings that determine the numbers (a change reruns the run's jobs)."""
    return numerics_of(RUNS[wildcards.run])


def checkpoint_dir(wildcards):
    """Training checkpoints live outside the declared outputs so that a failed job keeps them."""
    return f"{run_dir(wildcards.run)}/train_checkpoint"


def chunk_files(wildcards):
    return [f"{run_dir(wildcards.run)}/chunks/{c}.h5" for c in chunk_ids(wildcards.run)]


def gpus_wanted(wildcards):
    """One GPU unless the run is pinned to the CPU. Locally this limits nothing unless the user caps
    `gpu` (--resources gpu=N); deciding by CUDA on the submit host would make `-n` previews of cluster
    runs, which use Snakemake's local dry-run executor, show no GPU."""
    return 0 if RUNS[wildcards.run]["device"] == "cpu" else 1


# Cluster requests derived from the run's size (parameters, FLOPs, examples); a retry after a
# failure (e.g. out of memory or time) asks for proportionally more.
def train_mem_mb(wildcards, attempt):
    return size.train_mem_mb(RUNS[wildcards.run]) * attempt


def train_runtime(wildcards, attempt):
    gpu = gpus_wanted(wildcards) > 0
    return f"{size.train_runtime_min(RUNS[wildcards.run], THREADS, gpu) * attempt}m"


def gradient_mem_mb(wildcards, attempt):
    return size.gradient_mem_mb(RUNS[wildcards.run], LCA) * attempt


def gradient_runtime(wildcards, attempt):
    gpu = gpus_wanted(wildcards) > 0
    return f"{size.gradient_runtime_min(RUNS[wildcards.run], LCA, THREADS, gpu) * attempt}m"


def train_outputs():
    return [f"{run_dir(r)}/trajectory.h5" for r in RUNS]


def lca_outputs():
    return [f"{run_dir(r)}/lca.h5" for r in RUNS]


def summary_outputs():
    return [f"{run_dir(r)}/summary/summary.json" for r in RUNS]


def chunk_outputs():
    return [f"{run_dir(r)}/chunks/{c}.h5" for r in RUNS for c in chunk_ids(r)]
