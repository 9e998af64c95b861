"""Datasets (through torchvision, or a user's callable), the train/validation split, and the cached data file."""

from __future__ import annotations

import gzip
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from .errors import ConfigError, CorruptFileError, DataError
from .io import open_h5

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


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


def write_data_file(path: str | Path, name: str, arrays: dict, raw_inputs: bool = False) -> None:
    """The cached data file. Built-in image datasets store uint8 pixels (read back scaled by 1/255);
    `raw_inputs` (a dataset by import path) stores inputs as given and reads them back unchanged."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    with h5py.File(tmp, "w") as f:
        for key in ("x_train", "y_train", "x_test", "y_test"):
            f.create_dataset(key, data=arrays[key])
        f.create_dataset("classes", data=np.array(arrays["classes"], dtype=object), dtype=h5py.string_dtype())
        f.attrs["dataset"] = name
        if raw_inputs:
            f.attrs["raw_inputs"] = True
    os.replace(tmp, path)


def _as_array(value, what: str) -> np.ndarray:
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.dtype == np.float64 or array.dtype == np.float16:
        array = array.astype(np.float32)
    elif array.dtype.kind in "iu" and array.dtype != np.uint8:
        array = array.astype(np.int64)
    elif array.dtype.kind not in "fiu":
        raise ValueError(f"{what} has dtype {array.dtype}; give numbers (float, int) as tensors or arrays")
    return array


def _stack(ds, where: str, part: str) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) of every item of a torch Dataset, stacked."""
    tensors = getattr(ds, "tensors", None)
    try:
        if tensors is not None and len(tensors) == 2:  # TensorDataset: no need to walk it
            return _as_array(tensors[0], "the inputs"), _as_array(tensors[1], "the targets")
        n = len(ds)
    except ValueError as err:
        raise ConfigError(f"{where}: {part} set: {err}") from err
    except TypeError as err:
        raise ConfigError(f"{where}: the {part} set is a {type(ds).__name__}, not a torch Dataset with a length") from err
    xs, ys = [], []
    for i in range(n):
        try:
            item = ds[i]
        except Exception as err:
            raise ConfigError(f"{where}: reading item {i} of the {part} set failed ({type(err).__name__}: {err}); fix the Dataset") from err
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ConfigError(
                f"{where}: item {i} of the {part} set is a {type(item).__name__}{'' if not isinstance(item, (tuple, list)) else f' of {len(item)}'}, not an (input, target) pair"
            )
        try:
            xs.append(_as_array(item[0], "an input"))
            ys.append(_as_array(item[1], "a target"))
        except ValueError as err:
            raise ConfigError(f"{where}: item {i} of the {part} set: {err}") from err
        if xs[-1].shape != xs[0].shape or ys[-1].shape != ys[0].shape:
            raise ConfigError(
                f"{where}: item {i} of the {part} set has shapes {xs[-1].shape}, {ys[-1].shape}, item 0 {xs[0].shape}, {ys[0].shape}; give items of one shape"
            )
    if not xs:
        return np.zeros((0,), np.float32), np.zeros((0,), np.int64)
    return np.stack(xs), np.stack(ys)


def load_user_dataset(ref: str, args: dict, where: str) -> dict:
    """Call a dataset callable `f(**args) -> (train, test)` and stack both sets into arrays; class names
    come from the train set's `classes` attribute when it has one."""
    from .plugins import call_user

    result = call_user(ref, where, **(args or {}))
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise ConfigError(f"{where}: {ref} must return (train, test), two torch Datasets; it returned a {type(result).__name__}")
    (x_train, y_train), (x_test, y_test) = (_stack(ds, where, part) for ds, part in zip(result, ("train", "test")))
    if len(x_train) == 0:
        raise ConfigError(f"{where}: the train set of {ref} is empty")
    if len(x_test) and (x_test.shape[1:] != x_train.shape[1:] or y_test.shape[1:] != y_train.shape[1:]):
        raise ConfigError(
            f"{where}: train and test items differ in shape ({x_train.shape[1:]} vs {x_test.shape[1:]}); give items of one shape"
        )
    if x_train.dtype.kind == "f" and not np.isfinite(x_train).all():
        raise ConfigError(f"{where}: the train set of {ref} has non-finite inputs (NaN or inf); clean the data")
    if len(x_test) == 0:
        x_test, y_test = np.zeros((0, *x_train.shape[1:]), x_train.dtype), np.zeros((0, *y_train.shape[1:]), y_train.dtype)
    classes: list[str] = []
    if y_train.ndim == 1 and y_train.dtype.kind in "iu":
        if y_train.min() < 0:
            raise ConfigError(f"{where}: class targets must be >= 0, the train set has {y_train.min()}")
        n = int(max(y_train.max(), y_test.max() if len(y_test) else 0)) + 1
        named = getattr(result[0], "classes", None)
        classes = [str(c) for c in named] if named is not None and len(named) >= n else [str(c) for c in range(n)]
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test, "classes": classes}


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
    x: torch.Tensor  # inputs: built-in images as float32 in [0, 1], (N, C, H, W); a user's as stored
    y: torch.Tensor  # targets: int64 class indices (N,), or the user's targets


def read_dataset(f: h5py.File, key: str, path) -> np.ndarray:
    try:
        return f[key][()]
    except KeyError as err:
        raise CorruptFileError(f"{path}: has no dataset '{key}'; delete it and rerun the stage that makes it") from err
    except OSError as err:  # truncated or damaged data blocks
        raise CorruptFileError(f"{path}: dataset '{key}' is damaged ({err}); delete the file and rerun its stage") from err


def _to_tensor(x: np.ndarray, raw: bool, device) -> torch.Tensor:
    if raw or x.dtype != np.uint8:
        return torch.from_numpy(np.ascontiguousarray(x)).to(device)
    return torch.from_numpy(x).to(device=device, dtype=torch.float32).div_(255.0)


def load_examples(
    data_path: str | Path, index_sets: list[np.ndarray], device="cpu", sources: list[str] | None = None
) -> list[Split]:
    """One Split per index set into the official training set (or, per `sources`, "train" or "test"; the
    file is read once). Built-in images are scaled by 1/255 as the paper (no mean subtraction)."""
    sources = sources or ["train"] * len(index_sets)
    with open_h5(data_path, "dataset file") as f:
        raw = bool(f.attrs.get("raw_inputs", False))
        arrays = {s: (read_dataset(f, f"x_{s}", data_path), read_dataset(f, f"y_{s}", data_path)) for s in set(sources)}
    return [
        Split(x=_to_tensor(arrays[s][0][indices], raw, device), y=torch.from_numpy(arrays[s][1][indices]).to(device))
        for indices, s in zip(index_sets, sources)
    ]


def data_file_info(data_path: str | Path) -> dict:
    """Sizes, input shape and class names of a data file (read without loading the arrays)."""
    with open_h5(data_path, "dataset file") as f:
        for key in ("x_train", "x_test", "y_train", "classes"):
            if key not in f:
                raise CorruptFileError(f"{data_path}: has no dataset '{key}'; delete it and rerun the data stage")
        return {
            "n_train": f["x_train"].shape[0],
            "n_test": f["x_test"].shape[0],
            "input_shape": tuple(f["x_train"].shape[1:]),
            "classes": list(f["classes"].asstr()[()]),
            "targets": f"{f['y_train'].dtype} {tuple(f['y_train'].shape[1:]) or 'scalars'}",
        }


def run_split(info: dict, run: dict, where: str) -> dict:
    """The run's training and validation examples: `val_size` held out of the training set by a seeded
    permutation (validation: split), or the whole test set (validation: test); `train_size` keeps the
    first examples of the rest. Checked against the data file's sizes, one line each."""
    n_train, n_test = info["n_train"], info["n_test"]
    if run.get("validation", "split") == "test":
        if n_test == 0:
            raise ConfigError(
                f"{where}.validation: test, but the dataset's test set is empty; return a test set or use validation: split"
            )
        train = np.arange(n_train)
        val = np.arange(n_test)
        if run["train_size"] is not None:
            if run["train_size"] > n_train:
                raise ConfigError(f"{where}.train_size: {run['train_size']} exceeds the {n_train} training examples")
            train = train[: run["train_size"]]
        return {"train_indices": train, "val_indices": val, "val_source": "test"}
    if run["val_size"] >= n_train:
        raise ConfigError(
            f"{where}.val_size: {run['val_size']} leaves no training data out of {n_train}; lower it, "
            "or set validation: test to validate on the dataset's test set"
        )
    if run["train_size"] is not None and run["train_size"] > n_train - run["val_size"]:
        raise ConfigError(
            f"{where}.train_size: {run['train_size']} exceeds the {n_train - run['val_size']} examples left after the split"
        )
    train, val = make_split(n_train, run["val_size"], run["train_size"], run["split_seed"])
    return {"train_indices": train, "val_indices": val, "val_source": "train"}
