import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FASHION_DIR = Path(os.environ.get("LCA_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))


@pytest.fixture(scope="session")
def fashion_data_file(tmp_path_factory) -> Path:
    """The real Fashion-MNIST through torchvision, cached as the data stage writes it."""
    from lcaflow.data import load_official, write_data_file

    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.fail(f"Fashion-MNIST missing in {FASHION_DIR}: apt-get install dataset-fashion-mnist")
    root = tmp_path_factory.mktemp("datasets")
    path = root / "fashion_mnist.h5"
    write_data_file(path, "fashion_mnist", load_official("fashion_mnist", root, FASHION_DIR, download=False))
    return path


def tiny_run(**overrides) -> dict:
    from lcaflow.config import validate_config

    run = {
        "dataset": "fashion_mnist",
        "architecture": "mnist_fc",
        "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
        "batch_size": 50,
        "iterations": 12,
        "train_size": 300,
        "val_size": 100,
        "checkpoint_every": 4,
        "device": "cpu",
    }
    run.update(overrides)
    return validate_config({"runs": {"r": run}})["runs"]["r"]


def tiny_lca(**overrides) -> dict:
    from lcaflow.config import validate_config

    return validate_config({"runs": {"r": tiny_run()}, "lca": {"eval_chunk_size": 64, "iterations_per_job": 6, **overrides}})[
        "lca"
    ]


SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]


def snakemake(workdir, *args, timeout=900):
    return subprocess.run([*SNAKEMAKE, "-d", str(workdir), *args], capture_output=True, text=True, timeout=timeout)


# The end-to-end fixture adds a second seed and two experiments, so that the cross-run statistics,
# the comparison and their figures run for real too.
SEEDS_EXPERIMENT = {
    "extra_runs": {"tiny_sgd_s1": {"seed": 1}},
    "experiments": {"seeds": {"runs": ["tiny_sgd", "tiny_sgd_s1"], "compare_with": "seed0"}, "seed0": {"runs": ["tiny_sgd"]}},
}


def write_tiny_config(
    workdir: Path,
    datasets: Path | None = None,
    run: dict | None = None,
    lca: dict | None = None,
    extra_runs: dict | None = None,
    experiments: dict | None = None,
) -> Path:
    """tests/configs/tiny.yaml with outputs under `workdir` (datasets may be shared between runs),
    optionally with some run and lca settings changed, more runs (variations of tiny_sgd) and experiments."""
    import yaml

    config = yaml.safe_load((REPO / "tests" / "configs" / "tiny.yaml").read_text())
    config["runs"]["tiny_sgd"].update(run or {})
    for name, changes in (extra_runs or {}).items():
        config["runs"][name] = {**config["runs"]["tiny_sgd"], **changes}
    if experiments:
        config["experiments"] = experiments
    config["lca"].update(lca or {})
    config["results_dir"] = str(workdir / "results")
    config["data"] = {"root": str(datasets or workdir / "datasets"), "fashion_mnist_dir": str(FASHION_DIR), "download": False}
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def output_hashes(results: Path) -> dict[str, str]:
    """sha256 of every result file (logs and timings excluded): equal dicts mean byte-identical runs."""
    import hashlib

    return {
        str(p.relative_to(results)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(results.rglob("*"))
        if p.is_file() and p.parts[len(results.parts)] not in ("logs", "benchmarks")
    }


@pytest.fixture(scope="session")
def tiny_workflow(tmp_path_factory):
    """One real `snakemake --cores 2` run of the tiny config: (workdir, config path, process)."""
    workdir = tmp_path_factory.mktemp("workflow")
    config_path = write_tiny_config(workdir, **SEEDS_EXPERIMENT)
    result = snakemake(workdir, "--cores", "2", "--configfile", str(config_path))
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, config_path, result


def run_python(code: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, **kwargs)
