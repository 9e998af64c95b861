"""Two datasets of a user: next-character prediction on a fortune file, and a few Fashion-MNIST images
read straight from the idx files."""

import gzip
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

FORTUNES = Path("/usr/share/games/fortunes/fortunes")
FASHION = Path("/usr/share/datasets/fashion-mnist")


def _windows(codes, context, count, start):
    x = torch.stack([codes[start + i * context : start + (i + 1) * context] for i in range(count)])
    y = torch.stack([codes[start + i * context + 1 : start + (i + 1) * context + 1] for i in range(count)])
    return TensorDataset(x, y)


def characters(context: int = 16, train: int = 96, test: int = 32, vocab: int = 96):
    """Printable ASCII mapped to 0..94, anything else to 95."""
    text = FORTUNES.read_bytes()
    codes = torch.from_numpy(np.frombuffer(text, np.uint8).astype(np.int64) - 32).clamp(0, vocab - 1)
    return _windows(codes, context, train, 0), _windows(codes, context, test, train * context + 1)


class FashionSubset(Dataset):
    """A plain map-style Dataset (not a TensorDataset): items are (image, label) pairs."""

    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return torch.from_numpy(self.images[i]).float().div(255).unsqueeze(0), int(self.labels[i])


def fashion(n_train: int = 300, n_test: int = 100):
    def read(name, offset):
        with gzip.open(FASHION / f"{name}.gz") as f:
            return np.frombuffer(f.read(), np.uint8, offset=offset)

    images = read("t10k-images-idx3-ubyte", 16).reshape(-1, 28, 28)
    labels = read("t10k-labels-idx1-ubyte", 8)
    return FashionSubset(images[:n_train], labels[:n_train]), FashionSubset(images[n_train : n_train + n_test], labels[n_train : n_train + n_test])
