"""Datasets through torchvision, the paper's train/validation split, and the cached data file."""

from __future__ import annotations

import gzip
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from .errors import CorruptFileError, DataError
from .io import open_h5  # noqa: F401 (re-exported: stages open their inputs through it)

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
NUM_CLASSES = {"fashion_mnist": 10, "mnist": 10, "cifar10": 10}


def _stage_idx_files(source: Path, raw_folder: Path) -> bool:
    """Copy (decompressing) the four idx files from `source` into torchvision's raw folder."""
    found = {}
    for name in IDX_FILES:
        for candidate in (source / name, source / f"{name}.gz"):
            if candidate.is_file():
                found[name] = candidate
                break
    if len(found) < len(IDX_FILES):
        return False
    raw_folder.mkdir(parents=True, exist_ok=True)
    for name, path in found.items():
        target = raw_folder / name
        if target.exists():
            continue
        tmp = target.with_suffix(".partial")
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(tmp, target)
    return True


def _how_to_provide(name: str, root: Path, fashion_dir: Path) -> str:
    if name == "fashion_mnist":
        return (
            f"install the Debian package dataset-fashion-mnist (files in {fashion_dir}), set data.fashion_mnist_dir "
            f"to a folder with the four idx files, or allow data.download with internet access"
        )
    folder = {"mnist": root / "MNIST" / "raw", "cifar10": root / "cifar-10-batches-py"}[name]
    return f"place the torchvision files under {folder} or allow data.download with internet access"


def load_official(name: str, root: str | Path, fashion_mnist_dir: str | Path, download: bool):
    """Official train and test sets as uint8 arrays (N, C, H, W) and int64 labels, via torchvision."""
    import torchvision.datasets as tvd

    root, fashion_dir = Path(root), Path(fashion_mnist_dir)
    try:
        if name in ("fashion_mnist", "mnist"):
            cls = tvd.FashionMNIST if name == "fashion_mnist" else tvd.MNIST
            if name == "fashion_mnist":
                _stage_idx_files(fashion_dir, root / "FashionMNIST" / "raw")
            sets = [cls(str(root), train=train, download=download) for train in (True, False)]
            arrays = [(s.data.numpy()[:, None], s.targets.numpy()) for s in sets]
            classes = list(sets[0].classes)
        elif name == "cifar10":
            sets = [tvd.CIFAR10(str(root), train=train, download=download) for train in (True, False)]
            arrays = [(np.ascontiguousarray(s.data.transpose(0, 3, 1, 2)), np.asarray(s.targets)) for s in sets]
            classes = list(sets[0].classes)
        else:
            raise DataError(f"unknown dataset {name!r}")
    except (RuntimeError, OSError) as err:  # torchvision says "Dataset not found" or the download failed
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"dataset {name} unavailable ({first_line}): {_how_to_provide(name, root, fashion_dir)}") from err
    (x_train, y_train), (x_test, y_test) = arrays
    return {
        "x_train": x_train.astype(np.uint8),
        "y_train": y_train.astype(np.int64),
        "x_test": x_test.astype(np.uint8),
        "y_test": y_test.astype(np.int64),
        "classes": classes,
    }


def write_data_file(path: str | Path, name: str, arrays: dict) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    with h5py.File(tmp, "w") as f:
        for key in ("x_train", "y_train", "x_test", "y_test"):
            f.create_dataset(key, data=arrays[key])
        f.create_dataset("classes", data=np.array(arrays["classes"], dtype=object), dtype=h5py.string_dtype())
        f.attrs["dataset"] = name
    os.replace(tmp, path)


def make_split(n_official: int, val_size: int, train_size: int | None, split_seed: int):
    """The paper's split: `val_size` examples held out of the official training set by a seeded permutation.

    Returns sorted (train_indices, val_indices) into the official training set."""
    perm = np.random.default_rng(split_seed).permutation(n_official)
    val = np.sort(perm[:val_size])
    train = perm[val_size:]
    if train_size is not None:
        train = train[:train_size]
    return np.sort(train), val


@dataclass
class Split:
    x: torch.Tensor  # float32 in [0, 1], (N, C, H, W)
    y: torch.Tensor  # int64 (N,)


def read_dataset(f: h5py.File, key: str, path) -> np.ndarray:
    try:
        return f[key][()]
    except KeyError as err:
        raise CorruptFileError(f"{path}: has no dataset '{key}'; delete it and rerun the stage that makes it") from err
    except OSError as err:  # truncated or damaged data blocks
        raise CorruptFileError(f"{path}: dataset '{key}' is damaged ({err}); delete the file and rerun its stage") from err


def load_examples(data_path: str | Path, index_sets: list[np.ndarray], device="cpu") -> list[Split]:
    """One Split per index set into the official training set (the file is read once), scaled by 1/255
    as the paper (no mean subtraction)."""
    with open_h5(data_path, "dataset file") as f:
        x = read_dataset(f, "x_train", data_path)
        y = read_dataset(f, "y_train", data_path)
    return [
        Split(
            x=torch.from_numpy(x[indices]).to(device=device, dtype=torch.float32).div_(255.0),
            y=torch.from_numpy(y[indices]).to(device),
        )
        for indices in index_sets
    ]
