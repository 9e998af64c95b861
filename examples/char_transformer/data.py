"""Next-character prediction on the English text of Debian's `fortunes` package.

Characters map to 96 tokens: printable ASCII (space to ~) to 0..94, newline and anything else to 95.
The text is cut into windows of `context + 1` characters: the input is the first `context`, the target
the same window shifted by one. Training windows come from the start of the text, held-out windows
from its end, so no character is in both."""

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

FORTUNES = Path("/usr/share/games/fortunes")
FILES = ("fortunes", "literature", "people", "science", "wisdom", "work")
VOCAB = 96


def encode(text: bytes) -> np.ndarray:
    codes = np.frombuffer(text, np.uint8).astype(np.int64) - 32
    return np.where((codes >= 0) & (codes < VOCAB - 1), codes, VOCAB - 1)


def decode(tokens) -> str:
    return "".join("\n" if t == VOCAB - 1 else chr(int(t) + 32) for t in tokens)


def _windows(codes: np.ndarray, context: int, count: int) -> TensorDataset:
    windows = torch.from_numpy(codes[: count * (context + 1)].reshape(count, context + 1).copy())
    return TensorDataset(windows[:, :-1].contiguous(), windows[:, 1:].contiguous())


def fortunes(context: int = 64, train_windows: int = 1000, test_windows: int = 250, folder: str = str(FORTUNES)):
    """(train, test): TensorDatasets of (context,) int64 inputs and targets."""
    paths = [Path(folder) / name for name in FILES]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]} missing: install Debian's fortunes package (apt-get install fortunes)")
    codes = encode(b"".join(p.read_bytes() for p in paths))
    need = (train_windows + test_windows) * (context + 1)
    if need > len(codes):
        raise ValueError(
            f"{train_windows + test_windows} windows of {context + 1} characters need {need} characters; the text has {len(codes)}"
        )
    return _windows(codes, context, train_windows), _windows(
        codes[len(codes) - test_windows * (context + 1) :], context, test_windows
    )
