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


def run_python(code: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, **kwargs)
