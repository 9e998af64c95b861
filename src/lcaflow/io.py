"""HDF5 writing that never leaves a finished-looking file behind, and run metadata."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
from pathlib import Path

import h5py
import numpy as np

from .errors import CorruptFileError


@contextlib.contextmanager
def atomic_h5(path: str | Path):
    """Write to `<path>.partial` and rename on success; a crash leaves only the .partial name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    f = h5py.File(tmp, "w", track_order=True)
    try:
        yield f
    except BaseException:
        f.close()
        tmp.unlink(missing_ok=True)
        raise
    f.close()
    os.replace(tmp, path)


COMPRESSION = {
    "none": {},
    "lzf": {"compression": "lzf", "shuffle": True},
    "gzip": {"compression": "gzip", "compression_opts": 1, "shuffle": True},  # level 1: higher levels gain <1%
}


ROWS_PER_CHUNK = 16  # rows of a T x K matrix per HDF5 chunk: reads of blocks of iterations touch few chunks
BLOCK_BYTES = 128 << 20  # rows of a T x K matrix read or copied at once: bounds the memory of every stage


def create_matrix(
    group: h5py.Group, name: str, n_rows: int, n_cols: int, dtype="float32", compression: str = "none", whole: bool = False
) -> h5py.Dataset:
    """An (iterations x parameters) dataset chunked for reading blocks of iterations (see matrix_chunks).
    Byte shuffle groups the exponents, which is where compression finds its gain."""
    return group.create_dataset(
        name,
        shape=(n_rows, n_cols),
        dtype=dtype,
        chunks=matrix_chunks(n_rows, n_cols, whole),
        **COMPRESSION[compression],
    )


def matrix_chunks(n_rows: int, n_cols: int, whole: bool = False) -> tuple[int, int]:
    """The chunk shape of create_matrix: 16 rows (fewer in a shorter matrix; with `whole`, the largest divisor
    of n_rows up to 16, so that no chunk holds padded rows) and an even share of the columns, at most 65,536
    each, so no chunk is mostly padding: 65,536-column chunks over K=84,060 would allocate 56% more than the data."""
    col_chunks = -(-n_cols // 65536)
    if whole:
        rows = max(d for d in range(1, min(n_rows, ROWS_PER_CHUNK) + 1) if n_rows % d == 0)
    else:
        rows = max(1, min(n_rows, ROWS_PER_CHUNK))
    return rows, max(1, -(-n_cols // col_chunks))


def iter_row_blocks(dset, max_bytes: int | None = None):
    """Yield (start, block) over the rows of a 2-D dataset, holding at most ~max_bytes (BLOCK_BYTES) in memory."""
    rows = max(1, (max_bytes or BLOCK_BYTES) // max(1, dset.shape[1] * dset.dtype.itemsize))
    for start in range(0, dset.shape[0], rows):
        yield start, dset[start : start + rows]


def matrix_bytes(n_rows: int, n_cols: int) -> int:
    """Bytes an uncompressed create_matrix dataset takes on disk: whole chunks, so the rows round up to a
    multiple of 16 (a 21-row trajectory takes 32 rows)."""
    rows, cols = matrix_chunks(n_rows, n_cols)
    return -(-n_rows // rows) * rows * -(-n_cols // cols) * cols * 4


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(type(value))


def write_text(path, text: str) -> None:
    """A text file written under a temporary name and renamed: an interrupted job never leaves a
    finished-looking file."""
    tmp = Path(f"{path}.partial")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(text)
    tmp.replace(path)


def write_json(path, data: dict, allow_nan: bool = False) -> None:
    """A JSON table written atomically, numpy values included; NaN is refused unless allowed (use `finite`)."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=_json_default, allow_nan=allow_nan) + "\n")


def finite(x: float) -> float | None:
    """JSON has no NaN: unmeasurable values become null."""
    return float(x) if x is not None and math.isfinite(x) else None


def versions() -> dict:
    import numpy
    import torch

    from . import __version__

    return {
        "lcaflow": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "h5py": h5py.__version__,
    }


def read_json_attr(f: h5py.File, key: str, path) -> dict:
    try:
        return json.loads(f.attrs[key])
    except (KeyError, ValueError) as err:
        raise CorruptFileError(f"{path}: attribute '{key}' missing or unreadable; delete the file and rerun its stage") from err


def require(f: h5py.File, keys, path, made_by: str) -> None:
    missing = [k for k in keys if k not in f]
    if missing:
        raise CorruptFileError(f"{path}: lacks {', '.join(missing)}; delete it and rerun the {made_by} stage")


def open_h5(path: str | Path, what: str) -> h5py.File:
    """Open an HDF5 file for reading, turning a missing or corrupt file into a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise CorruptFileError(f"{path}: missing; rerun the stage that makes the {what}")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise CorruptFileError(
            f"{path}: not a readable HDF5 file ({str(err).splitlines()[0]}); delete it and rerun the stage that makes the {what}"
        ) from err
