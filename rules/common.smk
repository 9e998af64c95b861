# Config validation, derived paths and input functions shared by all stages.
import functools
import re
import sys

from lcaflow.config import (
    job_lca_settings,
    n_chunks,
    numerics_of,
    validate_config,
    without_later_defaults,
)
from lcaflow.errors import ConfigError
from lcaflow.catalog import BUILTIN_DATASETS, data_key, is_import_path
from lcaflow.plugins import source_file
from lcaflow.spec import RunSpec
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
# Jobs get as params only the settings that change their numbers, so e.g. a new assembly threshold
# or speed setting never recomputes gradients; scripts read the others from the config.
LCA_GRADIENTS = job_lca_settings(LCA, leave_out=("max_cumulative_error_pct",))
LCA_ASSEMBLE = job_lca_settings(LCA)
DATA = CONFIG["data"]
# Data files by name: a built-in dataset's own name, or a key for a dataset given by import path
DATASETS = {
    data_key(r["dataset"], r["dataset_args"]): (r["dataset"], r["dataset_args"])
    for r in RUNS.values()
}
# Runs trained by the train rule, and runs recorded by the user's own loop (runs.<run>.trajectory)
TRAINED = sorted(r for r in RUNS if RUNS[r]["trajectory"] is None)
RECORDED = sorted(r for r in RUNS if RUNS[r]["trajectory"] is not None)


def one_of(names):
    return "|".join(re.escape(n) for n in names) or "(?!)"


wildcard_constraints:
    run=one_of(sorted(RUNS)),
    dataset=one_of(sorted(set(DATASETS) | set(BUILTIN_DATASETS))),
    chunk=r"\d+",


def trajectory_output():
    """trajectory.h5, deleted once every job that reads it is done when lca.keep_trajectory is false."""
    path = f"{RESULTS}/runs/{{run}}/trajectory.h5"
    return path if LCA["keep_trajectory"] else temp(path)


def run_dir(run):
    return f"{RESULTS}/runs/{run}"


def chunk_ids(run):
    return [
        f"{k:04d}"
        for k in range(n_chunks(RUNS[run]["iterations"], LCA["iterations_per_job"]))
    ]


def data_file(wildcards):
    run = RUNS[wildcards.run]
    return f"{RESULTS}/data/{data_key(run['dataset'], run['dataset_args'])}.h5"


def dataset_source(wildcards):
    """The .py file of a dataset given by file path: editing it remakes the data file."""
    return [f for f in [source_file(DATASETS[wildcards.dataset][0])] if f]


def run_sources(wildcards):
    """The .py files of a run's model and loss given by file path: editing one recomputes the run."""
    run = RUNS[wildcards.run]
    return [
        f for f in (source_file(run["architecture"]), source_file(run["loss"])) if f
    ]


def recorded_trajectory(wildcards):
    return RUNS[wildcards.run]["trajectory"]


def run_config(wildcards):
    """The run settings that determine the numbers (a change reruns the run's jobs)."""
    return numerics_of(RUNS[wildcards.run])


def checkpoint_dir(wildcards):
    """Training checkpoints live outside the declared outputs so that a failed job keeps them."""
    return f"{run_dir(wildcards.run)}/train_checkpoint"


def chunk_files(wildcards):
    return [f"{run_dir(wildcards.run)}/chunks/{c}.h5" for c in chunk_ids(wildcards.run)]


def gpus_wanted(wildcards):
    """One GPU unless the run is pinned to the CPU. Locally the Snakefile caps `gpu` at the GPUs seen
    (share_gpus); deciding by CUDA on the submit host would make `-n` previews of cluster runs, which
    use Snakemake's local dry-run executor, show no GPU."""
    return 0 if RUNS[wildcards.run]["device"] == "cpu" else 1


# Cluster requests derived from the run's size (parameters, FLOPs, examples); a retry after a
# failure (e.g. out of memory or time) asks for proportionally more.
def train_mem_mb(wildcards, attempt):
    return size.train_mem_mb(RUNS[wildcards.run], data_file(wildcards)) * attempt


def train_runtime(wildcards, attempt):
    gpu = gpus_wanted(wildcards) > 0
    return f"{size.train_runtime_min(RUNS[wildcards.run], THREADS, gpu, data_file(wildcards)) * attempt}m"


def gradient_mem_mb(wildcards, attempt):
    return (
        size.gradient_mem_mb(RUNS[wildcards.run], LCA, data_file(wildcards)) * attempt
    )


def gradient_runtime(wildcards, attempt):
    gpu = gpus_wanted(wildcards) > 0
    return f"{size.gradient_runtime_min(RUNS[wildcards.run], LCA, THREADS, gpu, data_file(wildcards)) * attempt}m"


def analysis_mem_mb(wildcards, attempt):
    return (
        size.analysis_mem_mb(
            RUNS[wildcards.run], data_file(wildcards), n_groups(wildcards.run)
        )
        * attempt
    )


@functools.cache
def n_groups(run):
    """The run's parameter groups (layers), from its model built on the meta device; 12 while unknown."""
    layout = RunSpec.of(run, RUNS[run]).meta_layout()
    return len(layout.layers) if layout is not None else 12


def analysis_runtime(wildcards, attempt):
    return f"{size.analysis_runtime_min(RUNS[wildcards.run], data_file(wildcards)) * attempt}m"


def train_outputs():
    return [f"{run_dir(r)}/trajectory.h5" for r in RUNS]


def lca_outputs():
    return [f"{run_dir(r)}/lca.h5" for r in RUNS]


def summary_outputs():
    return [f"{run_dir(r)}/summary/summary.json" for r in RUNS]


def chunk_outputs():
    return [f"{run_dir(r)}/chunks/{c}.h5" for r in RUNS for c in chunk_ids(r)]


ANALYSIS = CONFIG["analysis"]
EXPERIMENTS = CONFIG["experiments"]


wildcard_constraints:
    experiment="|".join(re.escape(e) for e in sorted(EXPERIMENTS)) or "(?!)",


def stats_path(name):
    """A table of the run's analysis stage (wildcard {run} left in)."""
    return f"{RESULTS}/runs/{{run}}/stats/{name}"


def figure_path(name):
    return f"{RESULTS}/runs/{{run}}/figures/{name}"


def experiment_runs(wildcards):
    return EXPERIMENTS[wildcards.experiment]["runs"]


def compared_experiment(wildcards):
    return EXPERIMENTS[wildcards.experiment]["compare_with"]


def compared_runs(wildcards):
    return EXPERIMENTS[compared_experiment(wildcards)]["runs"]


def _experiment_files(name):
    runs = EXPERIMENTS[name]["runs"]
    return {
        "layers": [f"{run_dir(r)}/stats/layers.tsv" for r in runs],
        "grounding": [f"{run_dir(r)}/grounding.json" for r in runs],
    }


def experiment_inputs(wildcards):
    return _experiment_files(wildcards.experiment)


def comparison_inputs(wildcards):
    a = _experiment_files(wildcards.experiment)
    b = _experiment_files(compared_experiment(wildcards))
    return {
        "layers_a": a["layers"],
        "grounding_a": a["grounding"],
        "layers_b": b["layers"],
        "grounding_b": b["grounding"],
    }


def experiment_figure_inputs(wildcards):
    inputs = {
        "layers": f"{RESULTS}/experiments/{wildcards.experiment}/layers.tsv",
        "summary": f"{RESULTS}/experiments/{wildcards.experiment}/summary.json",
    }
    if EXPERIMENTS[wildcards.experiment]["compare_with"]:
        inputs["comparison"] = (
            f"{RESULTS}/experiments/{wildcards.experiment}/comparison.tsv"
        )
    return inputs


def run_report(caption):
    """report() settings of a run's figure: its caption file, filed under the run."""
    return {
        "caption": f"../report/figures/{caption}.rst",
        "category": "Runs",
        "subcategory": "{run}",
    }


RUN_FIGURES = (
    "grounding.png",
    "noise.png",
    "heavy_tails.png",
    "oscillation.png",
    "layers.png",
    "synchronization.png",
    "synchronization_classes.png",
    "neurons.png",
    "parameters.png",
    "correlation.png",
    "specialization.png",
    "heatmaps.png",
    "animation.gif",
)


def figure_outputs():
    return [f"{run_dir(r)}/figures/{name}" for r in RUNS for name in RUN_FIGURES] + [
        f"{RESULTS}/experiments/{e}/experiment.png" for e in EXPERIMENTS
    ]


def analysis_outputs():
    names = (
        "grounding.tsv",
        "noise.json",
        "oscillation.json",
        "layers.tsv",
        "synchronization.json",
        "neurons.json",
    )
    runs = [f"{run_dir(r)}/stats/{n}" for r in RUNS for n in names]
    return runs + [f"{RESULTS}/experiments/{e}/summary.json" for e in EXPERIMENTS]


def claims_inputs(wildcards):
    """Every table the claims read: each run's analyses and each experiment's statistics."""
    names = (
        "noise.json",
        "oscillation.json",
        "synchronization.json",
        "layers.tsv",
    )
    files = [f"{run_dir(r)}/stats/{n}" for r in RUNS for n in names]
    files += [f"{run_dir(r)}/grounding.json" for r in RUNS]
    for e, exp in EXPERIMENTS.items():
        files += [
            f"{RESULTS}/experiments/{e}/summary.json",
            f"{RESULTS}/experiments/{e}/layers.tsv",
        ]
        if exp["compare_with"]:
            files.append(f"{RESULTS}/experiments/{e}/comparison.tsv")
    return files


def plan_inputs(wildcards):
    """Nothing of training: only the data files of runs with a model or dataset given by import path (the
    size of such a run is read from its data file, which is cheap to make), and their .py files.
    """
    user = [
        r
        for r in RUNS.values()
        if is_import_path(r["dataset"]) or is_import_path(r["architecture"])
    ]
    data = {
        f"{RESULTS}/data/{data_key(r['dataset'], r['dataset_args'])}.h5" for r in user
    }
    sources = {
        f
        for r in user
        for f in (
            source_file(r["architecture"]),
            source_file(r["loss"]),
            source_file(r["dataset"]),
        )
        if f
    }
    return sorted(data | sources)
