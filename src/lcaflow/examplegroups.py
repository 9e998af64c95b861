"""Example groups (runs.<run>.example_groups): which examples' losses the per-group LCA splits apart.

- `classes`: each class's examples (the default where the loss has classes: today's per-class LCA);
- `none`: one group, "all examples" (the default otherwise);
- `"<file.py>:<callable>"`: `f(inputs, targets)`, called with a split's stacked inputs and targets, returns
  one label (int or string) per example; the groups are the distinct labels, sorted.

The full-set objective sorts its evaluation chunks by group, so that every group's loss and gradient fall
out of the same pass (no extra gradient evaluation). Every bad labelling is one line, before training."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConfigError
from .plugins import call_user

CLASSES, NONE = "classes", "none"
MAX_GROUPS = 64  # group rows cost C x K float64 each in the objective: 64 keep it bounded
SPLIT_NAMES = {"train": "training split", "val": "validation split"}


def grouping(value: str | None, has_classes: bool, where: str) -> str:
    """The grouping a run's `example_groups` asks for: `classes`, `none` or an import path (None: the loss's default)."""
    if value is None:
        return CLASSES if has_classes else NONE
    if value == CLASSES and not has_classes:
        raise ConfigError(
            f"{where}: classes needs a loss with classes (cross_entropy on class indices); use none or <file.py>:<callable>"
        )
    return value


@dataclass(frozen=True)
class ExampleGroups:
    """The groups of a user's callable: their names and each example's group index, per split."""

    names: list[str]
    labels: dict  # split ("train", "val") -> (N,) int64 group index into `names`; (N, S) for token groups

    @property
    def per_token(self) -> bool:
        return self.labels["train"].ndim == 2


def label_examples(ref: str, where: str, parts: dict, tokens: bool = False) -> ExampleGroups:
    """Call the user's grouping on each split (`parts`: split name -> lcaflow.data.Split) and check its labels:
    one per example, or with `tokens` (a loss over tokens) one per predicted token, shaped like the targets."""
    raw = {split: _labels(ref, where, part, split, tokens) for split, part in parts.items()}
    if any(v.dtype.kind == "U" for v in raw.values()):  # ints in one split, strings in another: all strings
        raw = {split: v.astype(str) for split, v in raw.items()}
    names = np.unique(np.concatenate([v.reshape(-1) for v in raw.values()]))  # sorted: numbers numerically, strings alphabetically
    if len(names) > MAX_GROUPS:
        raise ConfigError(f"{where}: {ref} gives {len(names)} groups; at most {MAX_GROUPS}: merge labels")
    for split, values in raw.items():
        missing = np.setdiff1d(names, values)
        if missing.size:
            raise ConfigError(
                f"{where}: group {missing[0]!s} has no example in the {SPLIT_NAMES[split]}"
                f"{f' (nor {missing.size - 1} more)' if missing.size > 1 else ''}; every group needs examples in both splits"
            )
    return ExampleGroups([str(n) for n in names], {split: np.searchsorted(names, v).astype(np.int64) for split, v in raw.items()})


def _labels(ref: str, where: str, part, split: str, tokens: bool) -> np.ndarray:
    """One split's labels as an array of ints or strings, (N,) or per token (N, S), checked."""
    x, y = part.x.cpu(), part.y.cpu()
    values = call_user(ref, where, x, y)
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    values = np.asarray(values)
    n = len(y)
    token_shaped = y.dim() == 2 and values.shape == tuple(y.shape)
    if token_shaped and not tokens:
        raise ConfigError(
            f"{where}: {ref} returned labels per token {values.shape} but the loss has no tokens (token_cross_entropy); "
            f"return one label (int or string) per example, shape ({n},)"
        )
    if values.shape != (n,) and not token_shaped:
        raise ConfigError(
            f"{where}: {ref} returned labels of shape {values.shape} for the {n} examples of the {SPLIT_NAMES[split]}; "
            f"return one label (int or string) per example, shape ({n},)"
            + (f", or one per token, shape {tuple(y.shape)}" if tokens else "")
        )
    if values.dtype.kind == "b":
        return values.astype(np.int64)
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    if values.dtype.kind in "US" or (values.dtype.kind == "O" and all(isinstance(v, str) for v in values.reshape(-1))):
        return values.astype(str)
    raise ConfigError(f"{where}: {ref} returned labels of type {values.dtype} for the {SPLIT_NAMES[split]}; return ints or strings")
