"""The real workflow: snakemake --cores 2 on a tiny config, stage reruns, report, lint, profiles."""

import json
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import yaml
from conftest import REPO, SEEDS_EXPERIMENT, SNAKEMAKE, output_hashes, snakemake, write_tiny_config


def test_end_to_end_outputs(tiny_workflow):
    workdir, _, _ = tiny_workflow
    run_dir = workdir / "results" / "runs" / "tiny_sgd"
    assert sorted(p.name for p in (run_dir / "chunks").iterdir()) == ["0000.h5", "0001.h5"]
    with h5py.File(run_dir / "trajectory.h5") as f:
        assert f["params"].shape == (21, 84060) and f["minibatch_loss"].shape == (20,)
    with h5py.File(run_dir / "lca.h5") as f:
        for key, shape in {
            "lca": (20, 84060),
            "lca_total": (84060,),
            "helped_count": (84060,),
            "grad_sign_changes": (84060,),
            "lca_neuron/fc1": (20, 100),
            "lca_class_neuron/fc1": (10, 100),
            "loss": (21,),
            "loss_val": (21,),
            "lca_first_order": (20,),
            "num_splits": (20,),
            "error": (20,),
            "error_val": (20,),
            "lca_class_layer": (20, 10, 3),
        }.items():
            assert f[key].shape == shape, key
        assert list(f["layout/layers"].asstr()[()]) == ["fc1", "fc2", "fc3"]
    grounding = json.loads((run_dir / "grounding.json").read_text())
    assert abs(grounding["train"]["cumulative_error_pct"]) < 1 and grounding["iterations_over_tolerance"] == 0
    summary = json.loads((run_dir / "summary" / "summary.json").read_text())
    assert 40 < summary["pct_helping_of_nonzero_mean"] < 80
    header = (run_dir / "stats" / "noise_iterations.tsv").read_text().splitlines()[0].split("\t")
    assert {"iteration", "pct_helping", "pct_hurting", "pct_zero", "pct_helping_of_nonzero_fc1"} <= set(header)
    assert sorted(p.name for p in (run_dir / "summary").iterdir()) == ["overview.png", "summary.json"]  # no copies of tables
    assert (run_dir / "summary" / "overview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for log in ("train/tiny_sgd.log", "gradients/tiny_sgd/0000.log", "assemble/tiny_sgd.log"):
        assert "finished" in (workdir / "results" / "logs" / log).read_text()
    assert "it/s, ETA" in (workdir / "results" / "logs" / "gradients/tiny_sgd/0001.log").read_text()


FIGURES = (
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
)


def test_analyses_and_figures_of_every_run_and_experiment(tiny_workflow):
    workdir, _, _ = tiny_workflow
    results = workdir / "results"
    for run in ("tiny_sgd", "tiny_sgd_s1"):
        stats = results / "runs" / run / "stats"
        noise = json.loads((stats / "noise.json").read_text())
        assert 30 < noise["pct_helping_of_nonzero"] < 80 and noise["distribution"]["nonzero_values"] > 0
        grounding = json.loads((stats.parent / "grounding.json").read_text())
        assert abs(grounding["train"]["cumulative_error_pct"]) < 1
        assert abs(grounding["train"]["first_order_cumulative_error_pct"]) > abs(grounding["train"]["cumulative_error_pct"])
        assert (stats / "grounding.tsv").read_text().startswith("iteration\tloss\t")
        oscillation = json.loads((stats / "oscillation.json").read_text())
        assert oscillation["gradient_measured"] and oscillation["iterations_per_gradient_sign_change"] > 1  # no gradients stored
        sync = json.loads((stats / "synchronization.json").read_text())
        assert set(sync["signals"]) == {"lca", "lca_by_class", "gradient", "gradient_by_class", "motion"}
        for name in FIGURES:
            assert (results / "runs" / run / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert (results / "runs" / run / "figures" / "animation.gif").read_bytes()[:6] == b"GIF89a"
    experiment = json.loads((results / "experiments" / "seeds" / "summary.json").read_text())
    assert experiment["runs"] == ["tiny_sgd", "tiny_sgd_s1"] and set(experiment["layers"]) == {"fc1", "fc2", "fc3"}
    comparison = (results / "experiments" / "seeds" / "comparison.tsv").read_text()
    assert comparison.startswith("metric\t") and "final_train_loss" in comparison
    assert (results / "experiments" / "seed0" / "experiment.png").exists()
    assert not (results / "experiments" / "seed0" / "comparison.tsv").exists()
    claims = (results / "claims.md").read_text()
    assert "| Simpson/RK4 total error under 1%" in claims and "not measured: no ResNet-20 or AllCNN run" in claims


@pytest.mark.parametrize("config", sorted((REPO / "configs" / "paper").glob("*.yaml")), ids=lambda p: p.stem)
def test_paper_experiment_configs_pass_a_dry_run(config, tmp_path):
    """Every experiment of the paper, GPU-sized ones included, expands into a valid DAG."""
    result = snakemake(
        tmp_path, "-n", "--quiet", "rules", "--configfile", str(config), "--config", f"results_dir={tmp_path}/results"
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "claims" in out and "gradients" in out


def test_nothing_to_do_after_a_complete_run_and_single_stage_reruns(tiny_workflow):
    workdir, config_path, _ = tiny_workflow
    result = snakemake(workdir, "-n", "--cores", "2", "--configfile", str(config_path))
    assert result.returncode == 0 and "Nothing to be done" in result.stdout + result.stderr
    result = snakemake(workdir, "-n", "--cores", "2", "--configfile", str(config_path), "-R", "assemble")
    out = result.stdout + result.stderr
    assert "assemble" in out and "summary" in out and "rule gradients" not in out and "rule train" not in out


def test_changing_a_tolerance_reruns_lca_but_not_training(tiny_workflow):
    workdir, config_path, _ = tiny_workflow
    result = snakemake(workdir, "-n", "--cores", "2", "--configfile", str(config_path), "--config", "lca={'tolerance': 0.0005}")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "rule gradients" in out and "rule train:" not in out


def test_settings_that_change_no_number_rerun_nothing(tiny_workflow):
    """Speed settings, compression, the checkpoint interval and the data location travel as job resources
    (lcaflow.settings): changing them keeps every finished job; the assembly threshold reruns assembly only."""
    workdir, config_path, _ = tiny_workflow
    changes = [
        "lca={'compute_batch': 32, 'channels_last': True, 'compression': 'lzf'}",
        "runs={'tiny_sgd': {'checkpoint_every': 3}}",
        "data={'download': True}",
    ]
    for change in changes:
        result = snakemake(workdir, "-n", "--cores", "2", "--configfile", str(config_path), "--config", change)
        out = result.stdout + result.stderr
        assert result.returncode == 0 and "Nothing to be done" in out, (change, out[-2000:])
    result = snakemake(
        workdir, "-n", "--cores", "2", "--configfile", str(config_path), "--config", "lca={'max_cumulative_error_pct': 2.0}"
    )
    out = result.stdout + result.stderr
    assert "rule assemble" in out and "rule gradients" not in out and "rule train" not in out, out[-2000:]


def test_report_gathers_the_figures(tiny_workflow):
    workdir, config_path, _ = tiny_workflow
    report = workdir / "report.zip"
    result = snakemake(workdir, "--cores", "1", "--configfile", str(config_path), "--report", str(report))
    assert result.returncode == 0, result.stderr[-2000:]
    assert report.stat().st_size > 10_000
    import zipfile

    names = zipfile.ZipFile(report).namelist()
    for name in FIGURES + ("animation.gif", "experiment.png", "layers.tsv", "comparison.tsv", "explorer.html"):
        assert any(n.endswith(name) for n in names), name


def test_bad_config_stops_with_one_line(tmp_path):
    bad = {
        "runs": {
            "x": {
                "dataset": "fashion_mnist",
                "architecture": "mnist_fc",
                "optimizer": {"name": "sgd", "lr": -0.1},
                "batch_size": 10,
                "iterations": 10,
                "colour": "red",
            }
        }
    }
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    result = snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(tmp_path / "bad.yaml"))
    assert result.returncode != 0
    errors = [line for line in (result.stdout + result.stderr).splitlines() if "ERROR" in line or "Error" in line]
    assert errors == [
        "ERROR: config: unknown key 'runs.x.colour'; allowed keys here: architecture, architecture_args, batch_size, "
        "checkpoint_every, dataset, dataset_args, device, example_groups, groups, iterations, layers, loss, optimizer, output, seed, split_seed, steps, tf32, "
        "train_size, trajectory, val_size, validation"
    ]


def test_default_config_dry_run_and_stage_targets():
    # one dry run asks for every stage target (each DAG build of the default config takes ~10 s)
    targets = ("lca_all", "train_all", "gradients_all", "summary_all", "data_all")
    result = subprocess.run([*SNAKEMAKE, "-n", "--cores", "2", *targets], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]


def resources_by_rule(dry_run_output: str) -> dict[str, list[str]]:
    """rule name -> the 'resources:' lines of its jobs in a dry run."""
    found, rule = {}, None
    for line in dry_run_output.splitlines():
        if line.startswith(("rule ", "localrule ")):
            rule = line.split()[1].rstrip(":")
        elif line.strip().startswith("resources:") and rule:
            found.setdefault(rule, []).append(line)
    return found


def test_slurm_profile_dry_run_asks_gpus_for_gradient_jobs_only(tmp_path):
    result = subprocess.run(
        [
            *SNAKEMAKE,
            "-d",
            str(tmp_path),
            "-n",
            "--profile",
            str(REPO / "profiles" / "slurm"),
            "--configfile",
            str(REPO / "config.yaml"),
        ],
        capture_output=True,
        text=True,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-2000:]
    jobs = resources_by_rule(out)
    assert len(jobs["gradients"]) == 8 and all("gpu=1" in r and "runtime=" in r for r in jobs["gradients"])
    assert all("gpu=1" not in r for r in jobs["summary"] + jobs["assemble"])
    assert all("slurm_partition=" in r for rules in jobs.values() for r in rules)


def test_lint_is_clean():
    result = subprocess.run([*SNAKEMAKE, "--lint", "--cores", "1"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakefmt_and_ruff_are_clean():
    assert (
        subprocess.run(
            [sys.executable, "-m", "snakefmt", "--check", "Snakefile", "rules"], cwd=REPO, capture_output=True
        ).returncode
        == 0
    )
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "src", "tests", "rules/scripts", "benchmarks"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout


def test_lca_files_are_documented():
    formats = (REPO / "docs" / "file-formats.md").read_text()
    from lcaflow.reducers import REDUCERS, Matrices

    keys = [k.rstrip("/") for r in (*REDUCERS, Matrices) for k in r.JOINS] + ["minibatch_loss", "train_indices"]
    for key in keys:
        assert key in formats, key
    assert Path(REPO / ".ci" / "run").exists()


def test_rerun_with_one_core_gives_byte_identical_files(tiny_workflow, tmp_path):
    """Same config and seed, different scheduling (one job at a time): every HDF5, JSON, TSV and PNG is identical."""
    workdir, _, _ = tiny_workflow
    config_path = write_tiny_config(tmp_path, datasets=workdir / "datasets", **SEEDS_EXPERIMENT)
    result = snakemake(tmp_path, "--cores", "1", "--configfile", str(config_path))
    assert result.returncode == 0, result.stderr[-2000:]
    first, second = output_hashes(workdir / "results"), output_hashes(tmp_path / "results")
    assert len(first) >= 10 and first == second
