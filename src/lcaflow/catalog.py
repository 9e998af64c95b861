"""What the workflow knows about a run's data before loading anything: the built-in datasets, and the
names of the data files a run reads. Torch-free, so the config check and the DAG stay fast."""

from __future__ import annotations

import hashlib
import json
import re

BUILTIN_DATASETS = ("fashion_mnist", "mnist", "cifar10")
INPUT_SHAPE = {"fashion_mnist": (1, 28, 28), "mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
NUM_CLASSES = {"fashion_mnist": 10, "mnist": 10, "cifar10": 10}
# Size of the official training set of each dataset (the split is carved out of it), and of its test set.
OFFICIAL_TRAIN_SIZE = {"fashion_mnist": 60000, "mnist": 60000, "cifar10": 50000}
TEST_SIZE = {"fashion_mnist": 10000, "mnist": 10000, "cifar10": 10000}


def is_import_path(ref: str) -> bool:
    """ "<file.py>:<callable>" or "<dotted.module>:<callable>" rather than a registered name."""
    return ":" in ref


def is_builtin_dataset(ref: str) -> bool:
    return ref in BUILTIN_DATASETS


def data_key(dataset: str, dataset_args: dict | None = None) -> str:
    """Name of the cached data file (results/data/<key>.h5) of a dataset: a built-in's own name, or for a
    dataset by import path a readable slug of it plus a hash of the path and its arguments."""
    if is_builtin_dataset(dataset):
        return dataset
    module, _, name = dataset.rpartition(":")
    stem = re.sub(r"\.py$", "", module.replace("\\", "/").rsplit("/", 1)[-1])
    slug = re.sub(r"[^A-Za-z0-9]+", "_", f"{stem}_{name}").strip("_")
    digest = hashlib.sha256(json.dumps([dataset, dataset_args or {}], sort_keys=True).encode()).hexdigest()[:8]
    return f"user_{slug}_{digest}"
