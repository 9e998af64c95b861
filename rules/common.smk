# Shared by every stage: the config validated, its constants, wildcard constraints, input functions, the
# params and resources of each job. What a setting changes (and so which job gets it as a param) is in
# lcaflow.settings, where every file lives in lcaflow.paths, what a job costs in lcaflow.cost.
import functools
import json
import re
import sys
from pathlib import Path

from lcaflow import settings
from lcaflow.catalog import BUILTIN_DATASETS, data_key, is_import_path
from lcaflow.checkpoints import checkpoint_files, is_checkpoints
from lcaflow.chunkfile import n_chunks
from lcaflow.config import misread_target, validate_config
from lcaflow.cost.run import RunCost
from lcaflow.errors import ConfigError
from lcaflow.frontpage import front_page
from lcaflow.gpus import visible_gpus
from lcaflow.paths import ResultPaths
from lcaflow.plugins import source_file
from lcaflow.spec import RunSpec

# --- the config ----------------------------------------------------------------------------------------

if misread_target(workflow.overwrite_configfiles, Path.cwd()):
    sys.exit(f"ERROR: {misread_target(workflow.overwrite_configfiles, Path.cwd())}")
try:
    CONFIG = validate_config(config)
except ConfigError as err:
    # One line naming the key beats a schema dump; exit before any job is scheduled.
    sys.exit(f"ERROR: {err}")

RESULTS = CONFIG["results_dir"]
THREADS = CONFIG["threads"]
RUNS = CONFIG["runs"]
LCA = CONFIG["lca"]
ANALYSIS = CONFIG["analysis"]
EXPERIMENTS = CONFIG["experiments"]
# Data files by name: a built-in dataset's own name, or a key for a dataset given by import path
DATASETS = {
    data_key(r["dataset"], r["dataset_args"]): (r["dataset"], r["dataset_args"])
    for r in RUNS.values()
}
# Runs trained by the train rule, and runs recorded by the user's own loop (runs.<run>.trajectory)
TRAINED = sorted(r for r in RUNS if RUNS[r]["trajectory"] is None)
RECORDED = sorted(r for r in RUNS if RUNS[r]["trajectory"] is not None)
# Runs that ask for the example-group analyses (runs.<run>.example_groups given, or lca.example_curves):
# who helped whom, interference, clusters of examples; the others' DAG is as before
GROUPED = sorted(
    r
    for r in RUNS
    if RUNS[r]["example_groups"] is not None or LCA["example_curves"] > 0
)

# Every file's pattern: PATHS.run("{run}").lca is results/runs/{run}/lca.h5
PATHS = ResultPaths(RESULTS)
RUN = PATHS.run("{run}")
EXPERIMENT = PATHS.experiment("{experiment}")


# --- wildcard constraints ------------------------------------------------------------------------------


def one_of(names):
    return "|".join(re.escape(n) for n in names) or "(?!)"


wildcard_constraints:
    run=one_of(sorted(RUNS)),
    experiment=one_of(sorted(EXPERIMENTS)),
    dataset=one_of(sorted(set(DATASETS) | set(BUILTIN_DATASETS))),
    chunk=r"\d+",


# --- params: the settings that change a job's output (a change reruns it) -------------------------------


def run_params(wildcards):
    return settings.run_params(RUNS[wildcards.run])


LCA_PARAMS = {rule: settings.lca_params(LCA, rule) for rule in settings.LCA_RULES}


def results_dir(wildcards):
    """The results directory, where a job looks for free space and the calibration cache (the workflow
    assumes one file system shared by its jobs, as on a cluster: docs/cluster.md)."""
    return RESULTS


def analysis_params(rule):
    return settings.analysis_params(ANALYSIS, rule)


# The settings a job needs that change none of its output (speed, where data comes from): resources,
# which Snakemake does not compare, so changing one reruns nothing.
LCA_EXECUTION = settings.job_resources(LCA, "lca")
DATA_LOCATION = settings.job_resources(CONFIG["data"], "data")


def run_execution(wildcards):
    return settings.job_resources(RUNS[wildcards.run], "run")


# --- input functions -----------------------------------------------------------------------------------


def data_file(wildcards):
    run = RUNS[wildcards.run]
    return PATHS.data(data_key(run["dataset"], run["dataset_args"]))


def dataset_source(wildcards):
    """The .py file of a dataset given by file path: editing it remakes the data file."""
    return [f for f in [source_file(DATASETS[wildcards.dataset][0])] if f]


def run_sources(wildcards):
    """The .py files of a run's model, loss and example grouping given by file path: editing one recomputes the run."""
    run = RUNS[wildcards.run]
    return [
        f
        for f in (
            source_file(run["architecture"]),
            source_file(run["loss"]),
            source_file(run["example_groups"] or ""),
        )
        if f
    ]


def recorded_trajectory(wildcards):
    """The recording, or the checkpoint files (a glob or a list) of a run given by its checkpoints."""
    run = RUNS[wildcards.run]
    trajectory = run["trajectory"]
    if is_checkpoints(trajectory):
        return [
            path
            for _, path in checkpoint_files(
                trajectory, f"config: runs.{wildcards.run}.trajectory", run["steps"]
            )
        ]
    return trajectory


def trajectory_output():
    """trajectory.h5, deleted once every job that reads it is done when lca.keep_trajectory is false."""
    return RUN.trajectory if LCA["keep_trajectory"] else temp(RUN.trajectory)


def chunks_of(run):
    return [
        PATHS.run(run).chunk(k)
        for k in range(n_chunks(RUNS[run]["iterations"], LCA["iterations_per_job"]))
    ]


def chunk_files(wildcards):
    return chunks_of(wildcards.run)


def experiment_tables(name):
    runs = EXPERIMENTS[name]["runs"]
    return {
        "layers": [PATHS.run(r).stats("layers.tsv") for r in runs],
        "grounding": [PATHS.run(r).grounding for r in runs],
    }


def experiment_inputs(wildcards):
    return experiment_tables(wildcards.experiment)


def compared_experiment(wildcards):
    return EXPERIMENTS[wildcards.experiment]["compare_with"]


def comparison_inputs(wildcards):
    a = experiment_tables(wildcards.experiment)
    b = experiment_tables(compared_experiment(wildcards))
    return {
        f"{key}_{side}": files
        for side, t in (("a", a), ("b", b))
        for key, files in t.items()
    }


def experiment_figure_inputs(wildcards):
    e = PATHS.experiment(wildcards.experiment)
    inputs = {"layers": e.layers, "summary": e.summary}
    if EXPERIMENTS[wildcards.experiment]["compare_with"]:
        inputs["comparison"] = e.comparison
    return inputs


def experiment_explorer_inputs(wildcards):
    """Each run's losses and LCA per group (over time and in total), the experiment's tests and, where it
    has one, its comparison."""
    runs = EXPERIMENTS[wildcards.experiment]["runs"]
    e = PATHS.experiment(wildcards.experiment)
    inputs = {
        "grounding": [PATHS.run(r).stats("grounding.tsv") for r in runs],
        "cumulative": [PATHS.run(r).stats("layers_cumulative.tsv") for r in runs],
        "layers": [PATHS.run(r).stats("layers.tsv") for r in runs],
        "experiment": e.layers,
    }
    if EXPERIMENTS[wildcards.experiment]["compare_with"]:
        inputs["comparison"] = e.comparison
    return inputs


def claims_inputs(wildcards):
    """Every table the claims read (lcaflow.claims.RUN_TABLES, EXPERIMENT_TABLES), one list each, in the
    order of the runs and the experiments."""
    stats = {
        "noise": "noise.json",
        "oscillation": "oscillation.json",
        "synchronization": "synchronization.json",
        "layers": "layers.tsv",
    }
    files = {
        key: [PATHS.run(r).stats(name) for r in RUNS] for key, name in stats.items()
    }
    files["grounding"] = [PATHS.run(r).grounding for r in RUNS]
    files["experiment_summary"] = [PATHS.experiment(e).summary for e in EXPERIMENTS]
    files["experiment_layers"] = [PATHS.experiment(e).layers for e in EXPERIMENTS]
    files["comparison"] = [
        PATHS.experiment(e).comparison
        for e, exp in EXPERIMENTS.items()
        if exp["compare_with"]
    ]
    return files


def plan_inputs(wildcards):
    """Nothing of training: only the data files of runs with a dataset given by import path (the size of such
    a run is read from its data file, which is cheap to make), and the .py files of user code.
    """
    data = {
        PATHS.data(data_key(r["dataset"], r["dataset_args"]))
        for r in RUNS.values()
        if is_import_path(r["dataset"])
    }
    sources = {
        f
        for r in RUNS.values()
        for f in (
            source_file(r["architecture"]),
            source_file(r["loss"]),
            source_file(r["dataset"]),
        )
        if f
    }
    return sorted(data | sources)


# --- resources: what each job requests (lcaflow.cost, the model the plan reports) ----------------------


def job_device(run):
    """Where a run's jobs compute: a GPU unless the run is pinned to the CPU, where jobs are submitted to a
    cluster (each requests one) or this machine has one."""
    if RUNS[run]["device"] == "cpu":
        return "cpu"
    return "cuda" if workflow.non_local_exec or visible_gpus() else "cpu"


@functools.cache
def cost(run):
    return RunCost(RunSpec.of(run, RUNS[run]), LCA, THREADS, RESULTS, job_device(run))


def gpus_wanted(wildcards):
    """One GPU unless the run is pinned to the CPU. Locally the Snakefile caps `gpu` at the GPUs seen
    (share_gpus); deciding by CUDA on the submit host would make `-n` previews of cluster runs, which
    use Snakemake's local dry-run executor, show no GPU."""
    return 0 if RUNS[wildcards.run]["device"] == "cpu" else 1


def cpus_per_gpu(wildcards):
    """The threads of a GPU job, as the SLURM plugin asks for them with a GPU (--cpus-per-gpu; a job
    without a GPU asks --cpus-per-task for its threads)."""
    return THREADS if gpus_wanted(wildcards) else 0


def mem_mb(kind):
    """A job's memory: a retry after a failure (out of memory or time) asks for proportionally more."""
    return lambda wildcards, attempt: cost(wildcards.run).mem_mb(kind, attempt)


def experiment_mem_mb(kind):
    """An experiment's job: the memory of its first run's job of that kind."""
    return lambda wildcards, attempt: cost(
        EXPERIMENTS[wildcards.experiment]["runs"][0]
    ).mem_mb(kind, attempt)


def runtime(kind):
    def request(wildcards, attempt):
        chunk = int(wildcards.chunk) if kind == "gradients" else None
        return cost(wildcards.run).runtime(kind, attempt, chunk)

    return request


def run_disk(wildcards):
    """The disk a run takes at its peak, by kind of file (JSON): train and adopt_trajectory refuse to start
    without it."""
    return json.dumps(cost(wildcards.run).disk_need())


# --- the report ----------------------------------------------------------------------------------------

# The report's front page (report/workflow.rst) shows each run's headline numbers: read only for a report.
if any(arg.startswith("--report") for arg in sys.argv):
    config["front_page"] = front_page(PATHS, RUNS)


def run_report(caption, kind="figures", table=None):
    """report() settings of a run's figure (or table: kind="tables" with its label), filed under the run."""
    return {
        "caption": f"../report/{kind}/{caption}.rst",
        "category": "Runs",
        "subcategory": "{run}",
        **({"labels": {"table": table}} if table else {}),
    }


def experiment_report(caption, kind="tables", table=None):
    return {
        "caption": f"../report/{kind}/{caption}.rst",
        "category": "Experiments",
        "subcategory": "{experiment}",
        **({"labels": {"table": table}} if table else {}),
    }


# --- targets: the outputs of rules, for every run and experiment -----------------------------------------


def grouped_outputs(*rules_):
    """Every output of the rules, for every run of GROUPED."""
    return [
        f for r in rules_ for pattern in r.output for f in expand(pattern, run=GROUPED)
    ]


def outputs(*rules_):
    """Every output of the rules, for every run and experiment of the config."""
    names = {"run": list(RUNS), "experiment": list(EXPERIMENTS)}
    files = []
    for r in rules_:
        for pattern in r.output:
            used = {k: v for k, v in names.items() if f"{{{k}}}" in pattern}
            files += expand(pattern, **used) if used else [pattern]
    return files
