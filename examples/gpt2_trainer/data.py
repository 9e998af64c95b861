"""The char transformer's data (examples/char_transformer/data.py: the English text of Debian's `fortunes`,
96 character tokens, windows of `context` + 1 characters), read by its own function, and the same windows
as the rows a Hugging Face Trainer trains on.

`fortunes` is what the workflow evaluates L(theta) on: (window[:-1], window[1:]) pairs. `rows` turns them
back into whole windows for the Trainer, which shifts the labels inside the model."""

import importlib.util
from pathlib import Path

import torch

_spec = importlib.util.spec_from_file_location("char_transformer_data", Path(__file__).parents[1] / "char_transformer" / "data.py")
char_data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(char_data)
VOCAB, decode = char_data.VOCAB, char_data.decode


def fortunes(context: int = 64, train_windows: int = 400, test_windows: int = 100):
    """(train, test): TensorDatasets of (context,) int64 input and target tokens."""
    return char_data.fortunes(context=context, train_windows=train_windows, test_windows=test_windows)


def rows(dataset) -> list[dict]:
    """One Trainer row per (input, target) pair: the window of context + 1 tokens as `input_ids` and `labels`.
    The model predicts labels[1:] from input_ids[:-1], exactly the workflow's targets. labels[0] is never
    predicted; it is set to -100 so that the Trainer's token count (`num_items_in_batch`) is the number of
    predicted tokens whichever way transformers counts it, and the recorded loss is the mean token loss."""
    out = []
    for x, y in zip(*dataset.tensors):
        window = torch.cat([x, y[-1:]])
        labels = window.clone()
        labels[0] = -100
        out.append({"input_ids": window, "labels": labels})
    return out
