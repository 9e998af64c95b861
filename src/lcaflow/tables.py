"""The workflow's TSV tables: written by the analyses, read back by the figures, the cross-run statistics,
the claims and the reader."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import CorruptFileError

# Columns of names, kept as text even when every name looks like a number (nn.Sequential's "0", "4")
NAME_COLUMNS = ("layer", "group", "tensor", "signal", "top_classes", "class", "group_a", "group_b", "top_layer", "carrying_layer", "breakthroughs")


def read_tsv(path) -> dict[str, np.ndarray]:
    """Columns by name; numeric columns as float arrays, others (and the name columns) as string arrays."""
    try:
        with open(path) as fh:
            header = fh.readline().rstrip("\n").split("\t")
            cells = [line.rstrip("\n").split("\t") for line in fh if line.strip()]
    except OSError as err:
        raise CorruptFileError(f"{path}: unreadable ({err}); rerun the stage that makes it") from err
    if any(len(row) != len(header) for row in cells):
        raise CorruptFileError(f"{path}: ragged rows (truncated?); delete it and rerun the stage that makes it")
    columns = {}
    for j, name in enumerate(header):
        raw = [row[j] for row in cells]
        if name in NAME_COLUMNS:
            columns[name] = np.array(raw, dtype=str)
            continue
        try:
            columns[name] = np.array([float(v) for v in raw], dtype=np.float64)
        except ValueError:
            columns[name] = np.array(raw, dtype=str)
    return columns


def write_tsv(path: Path, columns: dict) -> None:
    """A tab-separated table with a header row, written under a temporary name and renamed, so an
    interrupted job never leaves a finished-looking table."""
    names = list(columns)
    n = len(next(iter(columns.values())))
    tmp = Path(f"{path}.partial")
    with open(tmp, "w") as fh:
        fh.write("\t".join(names) + "\n")
        for i in range(n):
            cells = [columns[name][i] for name in names]
            fh.write("\t".join(c if isinstance(c, str) else f"{c:.10g}" for c in cells) + "\n")
    os.replace(tmp, path)
