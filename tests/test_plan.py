"""`snakemake plan`: the cost plan before any compute, then its predictions against a real tiny run."""

import csv
import json

import pytest
import torch
from conftest import snakemake, write_tiny_config

from lcaflow.cost.time import STARTUP_S


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """The plan of the tiny config, made in a fresh directory with nothing trained: (workdir, config)."""
    workdir = tmp_path_factory.mktemp("plan")
    config = write_tiny_config(workdir)
    result = snakemake(workdir, "--cores", "1", "plan", "--configfile", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, config


def read_plan(workdir):
    return json.loads((workdir / "results" / "plan.json").read_text())


def test_plan_runs_before_any_training_and_names_every_file(planned):
    workdir, _ = planned
    results = workdir / "results"
    assert not (results / "runs").exists() and not (results / "data").exists()  # nothing trained, no data made
    plan = read_plan(workdir)
    run = plan["runs"]["tiny_sgd"]
    assert run["parameters"] == 84060 and run["iterations"] == 20 and run["gradient_jobs"] == 2
    assert run["examples"] == {"train": 400, "val": 100}
    expected = {
        "data/fashion_mnist.h5",
        "runs/tiny_sgd/trajectory.h5",
        "runs/tiny_sgd/chunks/0000.h5",
        "runs/tiny_sgd/chunks/0001.h5",
        "runs/tiny_sgd/lca.h5",
        "runs/tiny_sgd/train_checkpoint/params.f32",
    }
    assert expected <= set(run["files"]) and all(n > 0 for n in run["files"].values())
    assert run["transient"] == ["runs/tiny_sgd/train_checkpoint/params.f32"]
    assert set(run["jobs"]) == {"train", "gradients", "assemble", "analyses", "figures"}
    assert run["jobs"]["gradients"]["count"] == 2 and all(j["mem_mb"] > 0 and j["seconds_each"] > 0 for j in run["jobs"].values())
    assert plan["totals"]["disk_bytes"] == run["totals"]["disk_bytes"] and plan["free_bytes"] > 0
    text = (results / "plan.md").read_text()
    assert "| tiny_sgd | 84,060 | 20 | 2 | 400 / 100 |" in text
    assert all(f"`{name}`" in text for name in expected)


def test_a_second_plan_reuses_the_calibration(planned):
    workdir, config = planned
    first = read_plan(workdir)["runs"]["tiny_sgd"]["calibration"]
    cache = workdir / "results" / "plan" / "calibration"
    (path,) = cache.iterdir()
    assert first["cached"] is False and first["file"] == str(path)
    mtime = path.stat().st_mtime_ns
    result = snakemake(workdir, "--cores", "1", "plan", "--configfile", str(config), "-R", "plan")
    assert result.returncode == 0, result.stderr[-3000:]
    second = read_plan(workdir)["runs"]["tiny_sgd"]["calibration"]
    assert second["cached"] is True and path.stat().st_mtime_ns == mtime
    assert second["eval_s_per_example"] == first["eval_s_per_example"]
    assert "reused from" in (workdir / "results" / "plan.md").read_text()


def test_the_jobs_request_what_the_plan_predicts(planned):
    """One cost model: each job's runtime request (what SLURM gets) is the plan's predicted time with the
    request margin, from the same calibration; its memory request is the plan's."""
    from lcaflow.cost.time import request_minutes

    workdir, config = planned
    run = read_plan(workdir)["runs"]["tiny_sgd"]
    result = snakemake(workdir, "-n", "--cores", "1", "lca_all", "--configfile", str(config))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    requests = {}
    rule = None
    for line in out.splitlines():
        if line.startswith(("rule ", "localrule ")):
            rule = line.split()[1].rstrip(":")
        elif line.strip().startswith("resources:"):
            fields = dict(item.split("=", 1) for item in line.split(":", 1)[1].strip().split(", ") if "=" in item)
            requests.setdefault(rule, []).append(fields)
    for kind, rule in (("gradients", "gradients"), ("train", "train"), ("assemble", "assemble")):
        expected = request_minutes(run["jobs"][kind]["seconds_each"])
        assert all(int(r["runtime"]) == expected for r in requests[rule]), (rule, requests[rule], expected)
        assert all(int(r["mem_mb"]) == run["jobs"][kind]["mem_mb"] for r in requests[rule]), rule


def test_predictions_match_a_real_run(planned):
    """Every file the plan names is within 10% of the real one; a gradient job's predicted time is its
    start-up plus its passes, and Snakemake's benchmark of it exists. How close predicted times come to measured
    ones is a benchmark's question, not a test's (a tiny job's time is mostly start-up, which other work on
    the processors doubles): benchmarks/results/2026-11-29_plan_default_run.md."""
    workdir, config = planned
    result = snakemake(workdir, "--cores", "1", "lca_all", "--configfile", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    results = workdir / "results"
    run = read_plan(workdir)["runs"]["tiny_sgd"]
    compared = 0
    for name, predicted in run["files"].items():
        if not name.endswith(".h5"):
            continue  # the transient checkpoint (gone by now) and the small outputs' estimate
        real = (results / name).stat().st_size
        assert abs(predicted - real) <= 0.1 * real, f"{name}: predicted {predicted} bytes, real {real}"
        compared += 1
    assert compared == 5
    assert not (results / "runs" / "tiny_sgd" / "train_checkpoint" / "params.f32").exists()
    predicted = run["jobs"]["gradients"]["seconds_each"]
    assert predicted > STARTUP_S
    for chunk in ("0000", "0001"):
        with open(results / "benchmarks" / "gradients" / "tiny_sgd" / f"{chunk}.tsv") as f:
            assert float(next(csv.DictReader(f, delimiter="\t"))["s"]) > 0


def test_a_bad_config_value_stops_the_plan_with_one_line(tmp_path):
    config = write_tiny_config(tmp_path, lca={"iterations_per_job": 0})
    result = snakemake(tmp_path, "--cores", "1", "plan", "--configfile", str(config))
    errors = [line for line in (result.stdout + result.stderr).splitlines() if "ERROR" in line or "Error" in line]
    assert result.returncode != 0
    assert len(errors) == 1 and errors[0].startswith("ERROR: config: lca.iterations_per_job: 0 is out of range"), errors


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_this_machine_lacks_is_one_line(tmp_path):
    config = write_tiny_config(tmp_path, run={"device": "cuda"})
    result = snakemake(tmp_path, "--cores", "1", "plan", "--configfile", str(config))
    assert result.returncode != 0
    log = (tmp_path / "results" / "logs" / "plan.log").read_text()
    errors = [line for line in log.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "device 'cuda' requested but CUDA is not available here" in errors[0], log
    assert "Traceback" not in log and not (tmp_path / "results" / "plan.json").exists()
