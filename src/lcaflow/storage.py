"""How the T x K matrices are stored: their number format, which columns, and lca.h5's view of the chunks.

One copy of every matrix: the gradient jobs write the rows of their iterations into chunks/NNNN.h5, and
lca.h5 holds HDF5 virtual datasets that map those rows, by paths relative to lca.h5, into one T x K
matrix. A run folder copied whole reads the same; a missing chunk file is named, never read as fill values.

Number formats (`lca.storage`):
- float32: 4 bytes per entry, as computed.
- bfloat16: 2 bytes per entry, the upper half of the float32 (rounded to nearest even), stored as uint16
  with the attribute encoding=bfloat16. It keeps float32's exponent range, so no value flushes to zero;
  a value that would round to zero keeps its sign as the smallest bfloat16 of that sign.

Columns (`lca.store`): `full` stores every parameter; `sampled` a fixed random sample of parameters,
stratified by group (dataset `sample_index` names their columns in theta)."""

from __future__ import annotations

import functools
import math

import h5py
import numpy as np

from .chunkfile import check_sources
from .errors import CorruptFileError, NotBuiltError
from .io import create_matrix, open_h5
from .layout import Layout

STORAGE_BYTES = {"float32": 4, "bfloat16": 2}
STORED_DTYPE = {"float32": "float32", "bfloat16": "uint16"}  # bfloat16 bits are stored as uint16
MAX_TRACED = 4096  # the gradient jobs trace at most this many weights of the last layer's kernel (Fig. S8)


def encode_bfloat16(row):
    """A float32 torch tensor -> its bfloat16 bits as a numpy uint16 array (rounded to nearest even), with
    every non-zero value kept non-zero and of its sign."""
    import torch

    bits = row.to(torch.bfloat16).view(torch.int16)
    lost = (bits & 0x7FFF == 0) & (row != 0)
    if bool(lost.any()):
        smallest = torch.where(row < 0, -32767, 1).to(torch.int16)  # 0x8001 / 0x0001
        bits = torch.where(lost, smallest, bits)
    return bits.cpu().numpy().view(np.uint16)


def encode(row, storage: str) -> np.ndarray:
    """A float32 torch tensor in the stored number format (a numpy array)."""
    if storage == "bfloat16":
        return encode_bfloat16(row)
    return row.cpu().numpy()


def decode(values: np.ndarray, encoding: str) -> np.ndarray:
    """Stored values -> float32."""
    if encoding == "bfloat16":
        return (np.asarray(values, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
    return np.asarray(values, dtype=np.float32)


def sample_size(group_size: int, fraction: float) -> int:
    """Parameters a group of `group_size` keeps in the sample: the fraction, rounded up."""
    return min(group_size, math.ceil(fraction * group_size))


def sample_columns(layout: Layout, fraction: float, seed: int = 0) -> np.ndarray:
    """A fixed random sample of columns of theta, stratified by group with proportional allocation: each group
    keeps `fraction` of its parameters (rounded up), so every parameter is in the sample with about the same
    probability and statistics pooled over the sample need no weights. Sorted."""
    rng = np.random.default_rng(seed)
    layer_index = layout.layer_index()
    chosen = []
    for j in range(len(layout.layers)):
        members = np.flatnonzero(layer_index == j)
        chosen.append(rng.choice(members, sample_size(members.size, fraction), replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.empty(0, np.int64)


def stored_columns(layout: Layout, lca: dict) -> np.ndarray | None:
    """The columns a run stores: None for all of them (`store: full`)."""
    return sample_columns(layout, lca["sample_fraction"]) if lca["store"] == "sampled" else None


def create_stored_matrix(
    group: h5py.Group, name: str, n_rows: int, n_cols: int, storage: str = "float32", compression: str = "none"
):
    """An (iterations x columns) dataset in the stored number format, chunked for reading blocks of
    iterations with no padded rows (io.matrix_chunks)."""
    dset = create_matrix(group, name, n_rows, n_cols, STORED_DTYPE[storage], compression, whole=True)
    dset.attrs["encoding"] = storage
    return dset


def link_matrix(out: h5py.File, name: str, parts: list[tuple[str, int, int]], n_cols: int, encoding: str, shared_rows: bool):
    """In `out`, a virtual (rows x n_cols) dataset over the `name` datasets of the chunk files `parts`
    [(path relative to out's folder, start, stop)]. With shared_rows (per-point matrices) each chunk holds
    stop - start + 1 rows and the next chunk's first row repeats its last: every row is mapped once."""
    n_rows = parts[-1][2] + (1 if shared_rows else 0)
    dtype = STORED_DTYPE[encoding]
    layout = h5py.VirtualLayout(shape=(n_rows, n_cols), dtype=dtype)
    for k, (rel, start, stop) in enumerate(parts):
        rows = stop - start + (1 if shared_rows else 0)
        source = h5py.VirtualSource(rel, name, shape=(rows, n_cols))
        last = k == len(parts) - 1
        take = rows if (last or not shared_rows) else rows - 1
        layout[start : start + take] = source[:take]
    fill = np.uint16(0x7FC0) if encoding == "bfloat16" else np.float32(np.nan)  # NaN, should a source go missing
    # h5py's create_virtual_dataset stamps the creation time into the file; without it reruns are byte-identical
    dcpl = layout._get_dcpl(out.filename)
    dcpl.set_fill_value(np.array([fill]))
    dcpl.set_obj_track_times(False)
    space = h5py.h5s.create_simple(layout.shape)
    h5py.h5d.create(out.id, name.encode(), h5py.h5t.py_create(np.dtype(dtype), logical=1), space, dcpl=dcpl)
    dset = out[name]
    dset.attrs["encoding"] = encoding
    return dset


def open_lca(path) -> h5py.File:
    """Open lca.h5 for reading, its chunk files checked."""
    f = open_h5(path, "LCA file (assemble stage)")
    try:
        check_sources(f, path)
    except BaseException:
        f.close()
        raise
    return f


class Matrix:
    """A stored (rows x columns) matrix read as float32, whatever its number format; `columns` are the
    parameters (columns of theta) it holds, all of them unless the run stores a sample.

    Every read goes through a freshly opened dataset: HDF5 keeps the chunk files of a virtual dataset open
    as long as the dataset is, and past the process's open-file limit it would return fill values. A read
    that still meets one (NaN: no finite LCA is ever NaN) stops with a one-line error."""

    def __init__(self, f: h5py.File, name: str):
        self.f, self.name = f, name
        dset = f[name]
        self.encoding = str(dset.attrs.get("encoding", "float32"))
        self.virtual = dset.is_virtual
        self._shape = dset.shape
        self.sampled = "sample_index" in f

    @property
    def dset(self) -> h5py.Dataset:
        return self.f[self.name]

    @functools.cached_property
    def columns(self) -> np.ndarray:
        return self.f["sample_index"][()] if self.sampled else np.arange(self._shape[1])

    @property
    def shape(self) -> tuple[int, int]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    def __len__(self) -> int:
        return self._shape[0]

    def __getitem__(self, key) -> np.ndarray:
        values = decode(self.dset[key], self.encoding)
        if self.virtual and np.isnan(values).any():
            raise CorruptFileError(
                f"{self.f.filename}: '{self.name}' read fill values where a chunk file's rows should be: a chunk file could "
                f"not be opened (too many open files? raise `ulimit -n`) or was rewritten; rerun assemble"
            )
        return values

    def position(self, params: np.ndarray) -> np.ndarray:
        """The column of each parameter (columns of theta) in this matrix; -1 where it is not stored."""
        params = np.asarray(params)
        if not self.sampled:
            return np.where((params >= 0) & (params < self._shape[1]), params, -1)
        columns = self.columns
        where = np.minimum(np.searchsorted(columns, params), max(len(columns) - 1, 0))
        found = columns[where] == params if len(columns) else np.zeros(len(params), bool)
        return np.where(found, where, -1)


def matrix(f: h5py.File, name: str, path=None) -> Matrix:
    """The stored matrix `name` of lca.h5 (lca, lca_val, grad), with a one-line error where it was not stored."""
    if name not in f:
        option = {"lca_val": "lca.store_validation: true", "grad": "lca.store_gradients: true"}.get(name)
        if option:  # an option that was off, not a damaged file
            raise NotBuiltError(f"{path or f.filename}: the per-parameter matrix '{name}' was not stored; set {option} and rerun the gradient jobs")
        raise CorruptFileError(f"{path or f.filename}: the per-parameter matrix '{name}' is missing; rerun assemble")
    return Matrix(f, name)
