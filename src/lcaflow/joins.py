"""How assembly joins the reductions of consecutive gradient chunks into those of the whole run.

Every dataset a reducer writes (lcaflow.reducers, its JOINS table) has one of these kinds; `Joined` folds the
chunks in one at a time, so that assembly holds the run's arrays and one chunk's, never every chunk's."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

POINT = "point"  # one row per theta_t; neighbouring chunks share their boundary point
ITERATION = "iteration"  # one row per iteration
SUM = "sum"  # summed over chunks
SAME = "same"  # identical in every chunk
SIGNS = "signs"  # sign-change counts joined across chunk boundaries
VIRTUAL = "virtual"  # a stored matrix: mapped, never copied


def smallest_int(values: np.ndarray) -> np.ndarray:
    """Counts in int16 where they fit, else int32 (K-long arrays: the bytes count)."""
    return values.astype(np.int16 if values.max(initial=0) < 2**15 else np.int32)


class Joined:
    """The reductions of consecutive chunks folded, one chunk at a time, into those of the whole run (by their
    JOINS kinds): assembly holds the run's per-parameter arrays and one chunk's, never every chunk's."""

    def __init__(self, join_kind: Callable[[str], str | None]):
        self.join_kind = join_kind  # dataset name -> its kind (lcaflow.reducers.join_kind)
        self.pieces: dict[str, list[np.ndarray]] = {}  # ITERATION and POINT rows, chunk by chunk
        self.arrays: dict[str, np.ndarray] = {}  # SUM totals, SAME values, SIGNS counts
        self.last_sign: dict[str, np.ndarray] = {}  # per SIGNS sequence: the last non-zero sign so far
        self.names: set[str] | None = None  # the first chunk's datasets: every chunk holds the same

    def add(self, chunk: dict) -> None:
        if self.names is None:
            self.names = set(chunk)
        elif set(chunk) != self.names:
            differ = sorted(set(chunk) ^ self.names)
            raise ValueError(f"its datasets differ from the first chunk's ({', '.join(differ[:3])}): made by another version of lcaflow")
        for name, values in chunk.items():
            kind = self.join_kind(name)
            if kind in (ITERATION, POINT):
                pieces = self.pieces.setdefault(name, [])
                if kind == POINT and pieces:  # neighbouring chunks share their boundary point: keep it once
                    pieces[-1] = pieces[-1][:-1]
                pieces.append(values)
            elif kind == SUM:
                values = values.astype(np.float64 if values.dtype.kind == "f" else np.int64)
                self.arrays[name] = self.arrays[name] + values if name in self.arrays else values
            elif kind == SAME:
                if name in self.arrays and not np.array_equal(self.arrays[name], values):
                    raise ValueError(f"the chunks disagree on {name}")
                self.arrays[name] = values
            elif kind == SIGNS and name.endswith("_sign_changes"):
                self._signs(name.removesuffix("_sign_changes"), chunk)

    def _signs(self, prefix: str, chunk: dict) -> None:
        """Sign changes within the chunk, plus one where its first non-zero sign differs from the run's last so
        far (a per-point sequence's shared boundary point ends one chunk and starts the next: not counted twice)."""
        key, ends = f"{prefix}_sign_changes", chunk[f"{prefix}_sign_ends"]
        first, last = ends // 3 - 1, ends % 3 - 1
        changes = chunk[key].astype(np.int64)
        if key in self.arrays:
            before = self.last_sign[prefix]
            changes += self.arrays[key] + ((before != 0) & (first != 0) & (before != first))
            last = np.where(last != 0, last, before)
        self.arrays[key], self.last_sign[prefix] = changes, last

    def result(self) -> dict:
        out = {name: np.concatenate(pieces) for name, pieces in self.pieces.items()}
        for name, values in self.arrays.items():
            counts = self.join_kind(name) in (SUM, SIGNS) and values.dtype.kind == "i"
            out[name] = smallest_int(values) if counts else values
        return out
