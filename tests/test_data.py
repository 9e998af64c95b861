"""Dataset loaders on the real Fashion-MNIST and on small MNIST / CIFAR-10 files in the official formats."""

import gzip
import pickle
import struct

import numpy as np
import pytest

from lcaflow.data import load_official, make_split
from lcaflow.errors import DataError


def write_idx(folder, n_train=30, n_test=10, gz=True):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        blobs = {
            f"{prefix}-images-idx3-ubyte": struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes(),
            f"{prefix}-labels-idx1-ubyte": struct.pack(">II", 2049, n) + labels.tobytes(),
        }
        for name, blob in blobs.items():
            if gz:
                with gzip.open(folder / f"{name}.gz", "wb") as fh:
                    fh.write(blob)
            else:
                (folder / name).write_bytes(blob)
    return images, labels


def test_fashion_mnist_from_a_configured_folder(tmp_path):
    write_idx(tmp_path / "fm", n_train=30)
    arrays = load_official("fashion_mnist", tmp_path / "cache", tmp_path / "fm", download=False)
    assert arrays["x_train"].shape == (30, 1, 28, 28) and arrays["x_train"].dtype == np.uint8
    assert arrays["classes"][0] == "T-shirt/top"


def test_mnist_loader_reads_idx_files(tmp_path):
    images, labels = write_idx(tmp_path / "root" / "MNIST" / "raw", n_train=30, n_test=12, gz=False)
    arrays = load_official("mnist", tmp_path / "root", tmp_path / "none", download=False)
    assert arrays["x_test"].shape == (12, 1, 28, 28)
    assert np.array_equal(arrays["x_test"][:, 0], images) and np.array_equal(arrays["y_test"], labels)


def test_cifar10_loader_reads_python_batches(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    folder = tmp_path / "root" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": list(rng.integers(0, 10, 4))}
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, fh)
    # torchvision verifies the official files' md5 sums; these small files only share the format
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)
    arrays = load_official("cifar10", tmp_path / "root", tmp_path / "none", download=False)
    assert arrays["x_train"].shape == (20, 3, 32, 32) and arrays["x_test"].shape == (4, 3, 32, 32)
    assert arrays["classes"][3] == "c3"


@pytest.mark.parametrize("name", ["fashion_mnist", "mnist", "cifar10"])
def test_missing_dataset_says_how_to_provide_it(tmp_path, name):
    with pytest.raises(DataError) as err:
        load_official(name, tmp_path / "empty", tmp_path / "nothing-here", download=False)
    text = str(err.value)
    assert "\n" not in text and name in text and "download" in text


def test_real_fashion_mnist_and_the_paper_split(fashion_data_file):
    import h5py

    with h5py.File(fashion_data_file) as f:
        assert f["x_train"].shape == (60000, 1, 28, 28) and f["x_test"].shape == (10000, 1, 28, 28)
        y = f["y_train"][()]
    train, val = make_split(60000, 5000, None, split_seed=0)
    assert len(train) == 55000 and len(val) == 5000 and not np.intersect1d(train, val).size
    assert np.array_equal(make_split(60000, 5000, None, 0)[1], val)  # fixed seed, fixed split
    assert set(np.unique(y[val])) == set(range(10))
