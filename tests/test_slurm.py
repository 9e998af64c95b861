"""The tiny workflow through `--profile profiles/slurm` on a real one-node SLURM started here.

Needs root and Debian's slurm-wlm (installed by .ci/local-slurm.sh); skipped with the reason otherwise."""

import re

import yaml
from conftest import REPO, output_hashes, snakemake, write_tiny_config

from lcaflow.config import validate_config


def test_slurm_profile_runs_the_workflow_and_matches_a_local_run(slurm_cluster, tiny_workflow, tmp_path):
    local_dir, _, _ = tiny_workflow
    config_path = write_tiny_config(tmp_path, datasets=local_dir / "datasets")
    noise_figure = str(tmp_path / "results" / "runs" / "tiny_sgd" / "figures" / "noise.png")
    result = snakemake(
        tmp_path,
        "summary_all", noise_figure,  # the core stages plus one analysis and its figure
        "--configfile", str(config_path),
        "--profile", str(REPO / "profiles" / "slurm"),
        # no slurmdbd here: without these the plugin waits on sacct forever (see .ci/local-slurm.sh)
        "--slurm-status-command", "squeue",
        "--slurm-init-seconds-before-status-checks", "1",
        "--verbose",
        timeout=900,
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    sbatch = {m.group(1): line for line in out.splitlines() if (m := re.search(r"--comment rule_(\w+?)_wildcards", line))}
    assert "--gpus=1" in sbatch["gradients"] and "--gpus=1" in sbatch["train"]
    assert "--gpus" not in sbatch["assemble"] and "--gpus" not in sbatch["summary"]
    threads = validate_config(yaml.safe_load(config_path.read_text()))["threads"]
    # a GPU job's threads come with its GPU; every other job asks for them per task
    assert f"--cpus-per-gpu={threads}" in sbatch["gradients"] and f"--cpus-per-gpu={threads}" in sbatch["train"]
    assert "--cpus-per-task=1" in sbatch["assemble"] and "--cpus-per-gpu" not in sbatch["assemble"]
    assert re.search(r"--mem \d+", sbatch["gradients"]) and re.search(r"-t \d+", sbatch["gradients"])
    on_slurm, local = output_hashes(tmp_path / "results"), output_hashes(local_dir / "results")
    assert "runs/tiny_sgd/lca.h5" in on_slurm and "runs/tiny_sgd/figures/noise.png" in on_slurm
    assert on_slurm == {name: local[name] for name in on_slurm}
