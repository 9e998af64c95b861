"""The results layout: where every file of the workflow lives, defined once.

    {results}/data/{dataset}.h5                   one file per dataset (a built-in's name, or a user dataset's key)
    {results}/runs/{run}/trajectory.h5            theta_0..theta_T (train or adopt_trajectory)
    {results}/runs/{run}/train_checkpoint/        training's crash-safe state (removed once the trajectory is written)
    {results}/runs/{run}/chunks/{k:04d}.h5        gradient job k: its rows of the LCA matrix and its reductions
    {results}/runs/{run}/lca.h5, grounding.json   assembly: the run's view of its chunks, how well it is grounded
    {results}/runs/{run}/summary/, stats/, figures/   the first look, the analyses' tables, the figures
    {results}/runs/{run}/explorer.html            the run's interactive explorer (one self-contained page)
    {results}/experiments/{experiment}/           statistics across an experiment's runs, and their explorer.html
    {results}/claims.md|tsv, plan.md|json, plan/calibration/, benchmark/, logs/, benchmarks/

The rules build their patterns from these classes with wildcards for names (`ResultPaths(results).run("{run}")`),
the plan, the disk check, the claims and the reader with real names. Paths are strings joined with '/', so
that they serve as Snakemake patterns as they are. Torch-free."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

CHECKPOINT_ROWS = "params.f32"  # the raw (T+1) x K row file inside a run's training checkpoint
# Every file the analyses write in a run's stats/ folder, with the rule that makes it (`RunPaths.stats` takes
# no other name, so the list is complete: the reader names the target of a table not built yet from it).
STATS_FILES = {
    "grounding.tsv": "grounding_stats",
    "noise.json": "noise",
    "noise_iterations.tsv": "noise",
    "noise_layers.tsv": "noise",
    "lca_histogram.tsv": "noise",
    "help_fraction.tsv": "noise",
    "oscillation.json": "oscillation",
    "oscillation_layers.tsv": "oscillation",
    "oscillation_traces.tsv": "oscillation",
    "layers.tsv": "layer_stats",
    "layers_cumulative.tsv": "layer_stats",
    "synchronization.json": "synchronization",
    "moments.tsv": "synchronization",
    "neurons.json": "neurons",
    "neurons.h5": "neurons",
    "specialization.tsv": "neurons",
    "correlation.tsv": "neurons",
    "who_helped_whom.tsv": "example_groups_stats",
    "who_helped_whom_time.tsv": "example_groups_stats",
    "interference.tsv": "example_groups_stats",
    "interference_pairs.tsv": "example_groups_stats",
    "clusters.tsv": "example_groups_stats",
    "cluster_members.tsv": "example_groups_stats",
    "cluster_curves.tsv": "example_groups_stats",
    "example_groups.json": "example_groups_stats",
}


def _join(*parts: str) -> str:
    return posixpath.join(*(str(p) for p in parts))


@dataclass(frozen=True)
class RunPaths:
    """The files of one run, in its folder (e.g. results/runs/fc_sgd, or results/runs/{run} as a pattern)."""

    dir: str

    @property
    def trajectory(self) -> str:
        return _join(self.dir, "trajectory.h5")

    @property
    def checkpoint_dir(self) -> str:
        """Training's checkpoint folder, outside the declared outputs so that a failed job keeps it."""
        return _join(self.dir, "train_checkpoint")

    @property
    def checkpoint_rows(self) -> str:
        return _join(self.checkpoint_dir, CHECKPOINT_ROWS)

    def chunk(self, k: int | str) -> str:
        """Gradient job k's file (k an int, or a wildcard such as "{chunk}")."""
        return _join(self.dir, "chunks", f"{k:04d}.h5" if isinstance(k, int) else f"{k}.h5")

    @property
    def lca(self) -> str:
        return _join(self.dir, "lca.h5")

    @property
    def grounding(self) -> str:
        return _join(self.dir, "grounding.json")

    def summary(self, name: str) -> str:
        return _join(self.dir, "summary", name)

    @property
    def stats_dir(self) -> str:
        return _join(self.dir, "stats")

    def stats(self, name: str) -> str:
        """An analysis table, one of STATS_FILES."""
        if name not in STATS_FILES:
            raise ValueError(f"{name!r} is not an analysis table; add it to lcaflow.paths.STATS_FILES")
        return _join(self.stats_dir, name)

    def figure(self, name: str) -> str:
        return _join(self.dir, "figures", name)

    @property
    def explorer(self) -> str:
        """The run's interactive explorer: one self-contained HTML page (lcaflow.explorer)."""
        return _join(self.dir, "explorer.html")


@dataclass(frozen=True)
class ExperimentPaths:
    """The files of one experiment (statistics across its runs)."""

    dir: str

    @property
    def layers(self) -> str:
        return _join(self.dir, "layers.tsv")

    @property
    def summary(self) -> str:
        return _join(self.dir, "summary.json")

    @property
    def comparison(self) -> str:
        return _join(self.dir, "comparison.tsv")

    @property
    def figure(self) -> str:
        return _join(self.dir, "experiment.png")

    @property
    def explorer(self) -> str:
        """The experiment's interactive explorer, its runs side by side (lcaflow.explorer)."""
        return _join(self.dir, "explorer.html")


@dataclass(frozen=True)
class ResultPaths:
    """Everything under a results directory."""

    results: str

    def data(self, key: str) -> str:
        return _join(self.results, "data", f"{key}.h5")

    def run(self, name: str) -> RunPaths:
        return RunPaths(_join(self.results, "runs", name))

    def experiment(self, name: str) -> ExperimentPaths:
        return ExperimentPaths(_join(self.results, "experiments", name))

    @property
    def claims_md(self) -> str:
        return _join(self.results, "claims.md")

    @property
    def claims_tsv(self) -> str:
        return _join(self.results, "claims.tsv")

    @property
    def plan_md(self) -> str:
        return _join(self.results, "plan.md")

    @property
    def plan_json(self) -> str:
        return _join(self.results, "plan.json")

    @property
    def calibration_dir(self) -> str:
        """Cached timings of models on this machine (the cost plan's calibration)."""
        return _join(self.results, "plan", "calibration")

    @property
    def speed_table(self) -> str:
        """The speed benchmark's table (rule `benchmark`: benchmarks/bench_lca.py writes it, with its JSON)."""
        return _join(self.results, "benchmark", "lca_speed.md")

    @property
    def speed_json(self) -> str:
        return _join(self.results, "benchmark", "lca_speed.json")

    def log(self, *parts: str) -> str:
        """A job's log: {results}/logs/<parts>.log"""
        return _join(self.results, "logs", *parts) + ".log"

    def timing(self, *parts: str) -> str:
        """A job's Snakemake benchmark (time and memory): {results}/benchmarks/<parts>.tsv"""
        return _join(self.results, "benchmarks", *parts) + ".tsv"
