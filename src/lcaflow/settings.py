"""What each setting changes, and so what a change of it reruns: the one table of every config key.

Every key of the config (top level, `lca`, `analysis`, a run) has one entry here saying what it affects.
From the table come each rule's Snakemake params (a change of a param reruns the job: `params_of`), the
settings a job needs that never change a number (passed as its resources, which Snakemake never compares:
`execution_of`), the fingerprints a gradient chunk records of the settings it was computed and stored with
(`fingerprint_of`) and the key names that assembly's messages give. tests/test_settings.py checks that the
table and the schema (config.schema.json, which validates and documents each key) list the same keys.

Torch-free: the DAG is built from it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# What a setting affects. A job of a rule gets a setting as a param when the setting affects its output.
NUMBERS = "numbers"  # the computed values (trajectory, LCA): the jobs that compute them and everything after
STORED = "stored"  # what the gradient chunks hold, not the numbers: the gradient jobs and everything after
JOBS = "jobs"  # how the iterations are cut into gradient jobs: the gradient jobs and everything after
VERDICT = "verdict"  # how assembly judges the run's grounding: assembly and everything after
FILES = "files"  # which files the workflow keeps: the DAG (temp()), recorded by assembly
EXECUTION = "execution"  # how fast, or how the bytes are laid out, never what they are: reruns nothing
ANALYSIS = "analysis"  # the analyses and figures of `used_by` only
LOCATION = "location"  # where files are: a path, never a job's content


@dataclass(frozen=True)
class Setting:
    affects: str
    when: Callable[[dict], bool] | None = None  # applies only when this holds of its section (else it is left out)
    used_by: tuple[str, ...] = ()  # analysis settings: the rules that read it


def _adaptive(lca: dict) -> bool:
    return lca["quadrature"] == "adaptive"


def _midpoint_sample(lca: dict) -> bool:
    return _adaptive(lca) and lca["midpoint_sample"] > 0


def _tf32(run: dict) -> bool:
    return bool(run["tf32"])


def _sampled(lca: dict) -> bool:
    return lca["store"] == "sampled"


TOP = {
    "results_dir": Setting(LOCATION),
    "threads": Setting(NUMBERS),  # float sums depend on the thread count
    "jobs_per_gpu": Setting(EXECUTION),  # how many jobs share a GPU locally, not what they compute
}
SECTION_KEYS = ("data", "lca", "analysis", "runs", "experiments")  # the top level's sections: their keys below

# Where the official datasets are read from: the data files are the same whichever way they come.
DATA = {
    "root": Setting(LOCATION),
    "fashion_mnist_dir": Setting(LOCATION),
    "download": Setting(LOCATION),
}

LCA = {
    "tolerance": Setting(NUMBERS),
    "max_splits": Setting(NUMBERS),
    "quadrature": Setting(NUMBERS),
    "trapezoid_tolerance": Setting(NUMBERS, when=_adaptive),
    "midpoint_sample": Setting(NUMBERS, when=_midpoint_sample),  # 0: as before the key existed
    "eval_chunk_size": Setting(NUMBERS),  # evaluation chunks fix the summation order and batch-norm statistics
    "compute_batch": Setting(EXECUTION),  # changes results only at float rounding
    "channels_last": Setting(EXECUTION),
    "compression": Setting(EXECUTION),  # how the chunks' bytes are compressed, not what they hold
    "iterations_per_job": Setting(JOBS),
    "storage": Setting(STORED),
    "store": Setting(STORED),
    "sample_fraction": Setting(STORED, when=_sampled),
    "store_validation": Setting(STORED),
    "store_gradients": Setting(STORED),
    "example_curves": Setting(STORED, when=lambda lca: lca["example_curves"] > 0),  # 0 (off): chunks stored before stay valid
    # token groups per parameter, by reverse mode: other numbers (the error's removal per parameter); off: as before
    "token_group_parameters": Setting(NUMBERS, when=lambda lca: lca["token_group_parameters"]),
    "keep_trajectory": Setting(FILES),
    "max_cumulative_error_pct": Setting(VERDICT),
}

RUN = {
    "dataset": Setting(NUMBERS),
    "dataset_args": Setting(NUMBERS),
    "architecture": Setting(NUMBERS),
    "architecture_args": Setting(NUMBERS),
    "output": Setting(NUMBERS, when=lambda run: run.get("output") is not None),  # null: runs made before it stay
    "loss": Setting(NUMBERS),
    "groups": Setting(NUMBERS),
    # the per-group rows of the LCA; the default (classes, or one group) is left out of the run's fingerprint
    "example_groups": Setting(NUMBERS, when=lambda run: run["example_groups"] not in (None, "classes")),
    "optimizer": Setting(NUMBERS),
    "batch_size": Setting(NUMBERS),
    "iterations": Setting(NUMBERS),
    "seed": Setting(NUMBERS),
    "device": Setting(NUMBERS),
    "tf32": Setting(NUMBERS, when=_tf32),  # TF32 rounds float32 products on a GPU; off: as before the key existed
    "val_size": Setting(NUMBERS),
    "train_size": Setting(NUMBERS),
    "split_seed": Setting(NUMBERS),
    "checkpoint_every": Setting(EXECUTION),  # where a crashed training resumes from, not what it computes
    "layers": Setting(NUMBERS),
    "trajectory": Setting(NUMBERS),
    "steps": Setting(NUMBERS, when=lambda run: run.get("steps") is not None),  # null: runs made before it stay
    "validation": Setting(NUMBERS),
}

# The run settings of training itself, which a recorded run (runs.<run>.trajectory) does not have: its own loop
# trained it. Its config refuses them (of the optimizer, weight_decay stays: the L2 term of the loss analysed),
# and its files record the run without them (RunSpec.described).
TRAINING_ONLY = ("optimizer", "batch_size", "checkpoint_every", "layers")
# ... and the split's settings where the run validates on the test set.
SPLIT_ONLY = ("val_size", "split_seed")

ANALYSIS_SETTINGS = {
    "seed": Setting(ANALYSIS, used_by=("noise", "synchronization", "neurons")),
    "sample_size": Setting(ANALYSIS, used_by=("noise",)),
    "top_moments": Setting(ANALYSIS, used_by=("synchronization",)),
    "max_shift": Setting(ANALYSIS, used_by=("synchronization",)),
    "shift_repeats": Setting(ANALYSIS, used_by=("synchronization",)),
    "sync_min_fraction": Setting(ANALYSIS, used_by=("synchronization",)),
    "oscillation_window": Setting(ANALYSIS, used_by=("oscillation",)),
    "top_params": Setting(ANALYSIS, used_by=("neurons",)),
    "correlation_nodes": Setting(ANALYSIS, used_by=("neurons",)),
    "correlation_weights_per_node": Setting(ANALYSIS, used_by=("neurons",)),
    "heatmap_iterations": Setting(ANALYSIS, used_by=("heatmaps",)),
    "animation_max_frames": Setting(ANALYSIS, used_by=("animation",)),
    "animation_fps": Setting(ANALYSIS, used_by=("animation",)),
}

SECTIONS = {"top": TOP, "data": DATA, "lca": LCA, "run": RUN, "analysis": ANALYSIS_SETTINGS}

# The lca settings each job of the LCA stages depends on. Assembly also judges (VERDICT) and records which
# files are kept (FILES); the plan predicts every job, so it depends on all of them.
LCA_RULES = {
    "gradients": (NUMBERS, STORED, JOBS),
    "assemble": (NUMBERS, STORED, JOBS, VERDICT, FILES),
    "plan": (NUMBERS, STORED, JOBS, VERDICT, FILES, EXECUTION),
}


def _select(section: dict, table: dict, kinds: tuple[str, ...]) -> dict:
    return {
        k: v
        for k, v in section.items()
        if table[k].affects in kinds and (table[k].when is None or table[k].when(section))
    }


def lca_params(lca: dict, rule: str) -> dict:
    """The lca settings a job of `rule` (gradients, assemble, plan) gets as params: those its output depends on."""
    return _select(lca, LCA, LCA_RULES[rule])


def run_params(run: dict) -> dict:
    """A run's settings that change its numbers: the run as the train, gradient and assembly jobs get it."""
    return _select(run, RUN, (NUMBERS,))


def job_resources(section: dict, kind: str) -> str:
    """The settings of a section (lca, run, data) that a job needs but that change none of its output (how
    fast, where from): JSON for the job's `resources`, which Snakemake does not compare when it decides what
    to rerun, so changing one reruns nothing and the jobs still to run use the new value (read them back
    with `from_resources`)."""
    return json.dumps(_select(section, SECTIONS[kind], (EXECUTION, LOCATION)), sort_keys=True)


def from_resources(value: str) -> dict:
    return json.loads(value)


def analysis_params(analysis: dict, rule: str) -> dict:
    """The analysis settings that the analysis or figure rule `rule` reads."""
    return {k: v for k, v in analysis.items() if rule in ANALYSIS_SETTINGS[k].used_by}


def names(kind: str, section: str = "lca") -> str:
    """The keys of a section that affect `kind`, for messages: "tolerance, max_splits, ... or trapezoid_tolerance"."""
    keys = [k for k, s in SECTIONS[section].items() if s.affects == kind]
    return ", ".join(keys[:-1]) + f" or {keys[-1]}" if len(keys) > 1 else keys[0]


def fingerprint_of(lca: dict, kind: str) -> str:
    """The fingerprint of the lca settings of one kind (NUMBERS, STORED) that apply: what a gradient chunk
    records of how it was computed and stored, and assembly checks."""
    return fingerprint(_select(lca, LCA, (kind,)))


def run_fingerprint(run: dict) -> str:
    """Identifies a run's numbers across its files (the trajectory records it, every later stage checks it)."""
    return fingerprint(run_params(run))


def run_fingerprints(run: dict) -> tuple[str, ...]:
    """Every fingerprint a trajectory of this run may carry: today's, and, with `tf32` off, the one the version
    of 2026-12-05 wrote, which also fingerprinted `tf32: false` (the same numbers: no need to retrain)."""
    params = run_params(run)
    if "tf32" in params:
        return (fingerprint(params),)
    return fingerprint(params), fingerprint({**params, "tf32": False})


def fingerprint(obj: Any) -> str:
    """Stable short hash of a JSON-able object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]
