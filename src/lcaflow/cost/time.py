"""How long each job of a run takes, and what it requests (runtime): one model for the plan and the jobs.

A job's time is its start-up, its reads and writes, and its passes: training steps at the run's batch
size, full-set evaluations (train + validation examples) at the quadrature's measured evaluations per
iteration. The seconds per example of a step and of an evaluation come from a calibration of the run's
model on this machine where one was made (`snakemake plan` makes it), from conservative FLOP rates
otherwise. A job requests its predicted time with a margin."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..spec import RunSpec
from .disk import chunk_rows, run_files
from .size import RunSize

# Full-set evaluations (train + validation examples) per iteration, from the default run's measured 2.21
# (simpson) and 1.29 (adaptive) plain passes over its 55,000 training examples per iteration, times
# 55,000 / 60,000 (docs/speed.md): the end point and the midpoint, plus refinement where it is needed.
EVALUATIONS_PER_ITERATION = {"simpson": 2.03, "adaptive": 1.18}
# Seconds of every job before and after its work: starting Python, importing torch and lcaflow, and
# Snakemake's script wrapper (measured: a tiny gradient job of 10 iterations takes 2.0 to 2.4 s over four
# runs, of which 0.2 s are passes; the tiny assemble 1.6 s).
STARTUP_S = 2.0
# Reading and writing HDF5 files (measured: the default run's assemble reads 0.96 GB and writes 0.9 GB in 3.9 s).
IO_BYTES_PER_S = 500e6
# Bytes of a run's files (the stored matrix and lca.h5) per second of an analysis job, the mean over the
# default run's analyses (benchmarks/results/2026-11-29_plan_default_run.md: measured / predicted 0.67).
ANALYSIS_BYTES_PER_S = 70e6
# lca.example_curves: points per iteration and split (2 ends + 7 interior points of 4 Simpson panels, the most
# lcaflow.curves takes) and the fixed cost of one forward-mode pass (measured: 1.5 ms for mnist_fc on 20
# examples, 1 thread, of which the arithmetic is negligible)
CURVE_POINTS = 9
JVP_OVERHEAD_S = 1.5e-3
# Token groups (lcaflow.curves.TokenGroups) per point, both splits whole: forward mode costs a JVP per parameter
# group, reverse mode (lca.token_group_parameters) one forward and a backward per token group through it, each
# as a share of a full-set evaluation pass of the same examples (benchmarks/token_routes.py on the example's
# char transformer, 1,000 windows, 1 thread: a JVP 2.8 passes, attention by its math kernel; one forward and 6
# backwards 8.6 passes, 1.3 per backward with the forward counted in; 2.2 and 0.6 on 200 windows). Points per
# iteration: both ends again and 2n - 1 interior ones for n panels; the groups' totals converge as the run's own
# (1.08 panels on the char transformer, benchmarks/results/2026-12-06_groups_*.md): 3.2 points, priced at 3.5.
TOKEN_JVP_PASSES = 2.8
TOKEN_BACKWARD_PASSES = 1.3
TOKEN_POINTS = 3.5
FIGURE_S = 4.0  # a figure from a table: start-up and matplotlib (measured 3-5 s)
# Sustained rates where no calibration was made: conservative (MNIST-FC passes run at ~90 GFLOP/s per core
# on AVX-512 CPUs; small models use a fraction of a GPU).
CPU_FLOPS_PER_THREAD = 10e9
GPU_FLOPS = 1e12
# A job requests its predicted time times the margin, plus the slack, at least the minimum (minutes);
# a retry after a failure asks for that times the attempt.
REQUEST_MARGIN = 2.0
REQUEST_SLACK_MIN = 5
MIN_REQUEST_MIN = 10
UNKNOWN_RUNTIME_MIN = 240  # a run whose size is not known yet


@dataclass(frozen=True)
class Rates:
    """Seconds per example of a training step and of a full-set evaluation pass, and where they come from."""

    train_s_per_example: float | None  # None: a recorded run, which no job trains
    eval_s_per_example: float
    source: str

    @classmethod
    def calibrated(cls, calibration: dict) -> Rates:
        return cls(calibration["train_s_per_example"], calibration["eval_s_per_example"], f"calibration {calibration['file']}")

    @classmethod
    def from_flops(cls, size: RunSize, threads: int, gpu: bool) -> Rates:
        rate = GPU_FLOPS if gpu else CPU_FLOPS_PER_THREAD * threads
        per_example = size.model.flops_per_example / rate  # forward and backward: a step or an evaluation
        return cls(per_example, per_example, f"{'GPU' if gpu else 'CPU'} FLOP rates")


def job_seconds(spec: RunSpec, size: RunSize, lca: dict, rates: Rates) -> dict:
    """Seconds of one job of each kind of a run: train (or adopt), every gradient job (a list, in order),
    assemble, one analysis, one figure."""
    run = spec.run
    files = run_files(spec, size, lca, "")
    data, trajectory, lca_bytes = (sum(n for k, _, n in files if k == kind) for kind in ("data", "trajectory", "lca"))
    chunks = [n for kind, _, n in files if kind == "chunks"]
    if spec.recorded:  # an adopted recording is read and written once
        train = STARTUP_S + 2 * trajectory / IO_BYTES_PER_S
    else:
        steps = run["iterations"] * run["batch_size"] * rates.train_s_per_example
        train = STARTUP_S + steps + (data + 3 * trajectory) / IO_BYTES_PER_S
    per_iteration = size.examples * EVALUATIONS_PER_ITERATION[lca["quadrature"]] * rates.eval_s_per_example
    if lca["quadrature"] == "adaptive" and lca.get("midpoint_sample"):  # at most every class's sample once an iteration
        per_iteration += min(size.examples, lca["midpoint_sample"] * size.num_classes) * rates.eval_s_per_example
    per_iteration += curve_seconds_per_iteration(size, lca, rates) + token_seconds_per_iteration(size, lca, rates)
    gradients = [
        STARTUP_S + (data + n) / IO_BYTES_PER_S + B * per_iteration
        for B, n in zip(chunk_rows(run["iterations"], lca["iterations_per_job"]), chunks)
    ]
    return {
        "train": train,
        "gradients": gradients,
        "assemble": STARTUP_S + 2 * lca_bytes / IO_BYTES_PER_S,  # reads the chunks' reductions, writes lca.h5
        "analysis": STARTUP_S + (lca_bytes + sum(chunks)) / ANALYSIS_BYTES_PER_S,
        "figure": FIGURE_S,
    }


def curve_seconds_per_iteration(size: RunSize, lca: dict, rates: Rates) -> float:
    """lca.example_curves: per iteration and split, up to CURVE_POINTS points (the ends and 4 Simpson panels'
    interior), each a forward-mode pass per parameter group over the M sampled examples (priced as an
    evaluation pass of M examples) plus its fixed cost."""
    m = lca.get("example_curves", 0)
    groups = len(size.model.group_sizes)
    return 2 * CURVE_POINTS * groups * (m * rates.eval_s_per_example + JVP_OVERHEAD_S) if m else 0.0


def request_minutes(seconds: float | None, attempt: int = 1) -> int:
    """The runtime a job requests for a predicted time (None: unknown)."""
    if seconds is None:
        return UNKNOWN_RUNTIME_MIN * attempt
    return max(MIN_REQUEST_MIN, math.ceil(REQUEST_MARGIN * seconds / 60) + REQUEST_SLACK_MIN) * attempt


def token_seconds_per_iteration(size: RunSize, lca: dict, rates: Rates) -> float:
    """Token groups: TOKEN_POINTS points per iteration, each over both whole splits in chunks of
    lca.eval_chunk_size: a forward-mode pass per parameter group (TOKEN_JVP_PASSES evaluation passes each, plus
    the fixed cost per chunk), or with lca.token_group_parameters one forward and a backward per token group
    (E: as the trajectory records it, else at its bound: the labels are known only once the data is labelled)."""
    E = size.model.token_groups
    if not E:
        return 0.0
    chunks = sum(math.ceil(n / lca["eval_chunk_size"]) for n in (size.n_train, size.n_val))
    pass_s = size.examples * rates.eval_s_per_example
    if lca.get("token_group_parameters"):
        return TOKEN_POINTS * pass_s * (1 + E * TOKEN_BACKWARD_PASSES)
    groups = len(size.model.group_sizes)
    return TOKEN_POINTS * groups * (pass_s * TOKEN_JVP_PASSES + chunks * JVP_OVERHEAD_S)
