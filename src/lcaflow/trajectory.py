"""The trajectory file: theta_0..theta_T of a training run with its minibatch losses and layout.

Written by the train stage, by `TrajectoryRecorder` inside a user's own training loop, and read by
the gradient jobs and analyses. A file only gets its final name once complete: a crash leaves a
`<name>.partial` beside it, never a file that looks finished."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from .errors import ConfigError, CorruptFileError, DivergenceError, LCAError, looked_in
from .io import BLOCK_BYTES, create_matrix, open_h5, read_json_attr, require, versions
from .layout import Layout
from .settings import run_fingerprint

REQUIRED = ("params", "minibatch_loss", "layout", "classes", "split/train_indices", "split/val_indices")
RECORDED_BY = "lcaflow.TrajectoryRecorder"


def copy_rows(dest: h5py.Dataset, rows, n_rows: int, n_cols: int, check_finite: str | None = None) -> None:
    """Copy rows[0:n_rows] (a training RowFile or an HDF5 dataset) into `dest` in blocks of about 128 MB;
    with `check_finite` (a path, for the message), refuse non-finite parameters."""
    per_block = max(1, BLOCK_BYTES // (4 * n_cols))
    for a in range(0, n_rows, per_block):
        block = rows[a : a + per_block]
        if check_finite and not np.isfinite(block).all():
            bad = a + int(np.flatnonzero(~np.isfinite(block).all(1))[0])
            raise DivergenceError(
                f"{check_finite}: theta_{bad} has non-finite parameters; the training diverged there: record a run that does not"
            )
        dest[a : a + per_block] = block


def write_run_trajectory(
    out, rows, n_rows: int, minibatch_loss, layout: Layout, classes, split: dict, attrs: dict, check_finite=None, groups=None
):
    """Fill an open (atomic) HDF5 file `out` with a run's trajectory: rows, losses, layout, classes,
    the split (train_indices, val_indices, val_source), the run attributes and the example groups where they
    are not the classes (`groups`: lcaflow.examplegroups.ExampleGroups, or None)."""
    params = create_matrix(out, "params", n_rows, layout.num_params)
    copy_rows(params, rows, n_rows, layout.num_params, check_finite)
    out.create_dataset("minibatch_loss", data=np.asarray(minibatch_loss, dtype=np.float64))
    out.create_dataset("classes", data=np.array(classes, dtype=object), dtype=h5py.string_dtype())
    layout.to_h5(out.create_group("layout"))
    group = out.create_group("split")
    group.create_dataset("train_indices", data=split["train_indices"])
    group.create_dataset("val_indices", data=split["val_indices"])
    if groups is not None:
        grouped = out.create_group("example_groups")
        grouped.create_dataset("names", data=np.array(groups.names, dtype=object), dtype=h5py.string_dtype())
        for name, labels in groups.labels.items():
            grouped.create_dataset(name, data=labels.astype(np.int8))  # at most 64 groups
    out.attrs.update({**attrs, "val_source": split["val_source"], "versions": json.dumps(versions(), sort_keys=True)})


def read_trajectory_meta(path) -> dict:
    """Attributes, layout and split of a run's trajectory file, with clear errors if it is not one."""
    with open_h5(path, "trajectory (train stage)") as f:
        require(f, REQUIRED, path, "train")
        try:
            return {
                "run": read_json_attr(f, "run_config", path),
                "fingerprint": str(f.attrs["fingerprint"]),
                "shape": f["params"].shape,
                "layout": Layout.from_h5(f["layout"]),
                "train_indices": f["split/train_indices"][()],
                "val_indices": f["split/val_indices"][()],
                "val_source": str(f.attrs.get("val_source", "train")),
                "num_classes": int(f.attrs["num_classes"]),
                "per_class": bool(f.attrs.get("per_class", True)),
                "input_shape": tuple(f.attrs["input_shape"]),
                "example_groups": _example_groups(f),
            }
        except (KeyError, ValueError, OSError) as err:
            raise CorruptFileError(f"{path}: metadata incomplete or damaged ({err}); delete it and rerun train") from err


def _example_groups(f) -> dict | None:
    """The example groups the trajectory records (names, train and val labels), None where they are the classes."""
    if "example_groups" not in f:
        return None
    g = f["example_groups"]
    return {"names": [str(n) for n in g["names"].asstr()[()]], "train": g["train"][()].astype(np.int64), "val": g["val"][()].astype(np.int64)}


def check_trajectory(meta: dict, run_name: str, run: dict, path) -> None:
    """The trajectory file was made for this run's config (its numbers' fingerprint) and is complete."""
    if meta["fingerprint"] != run_fingerprint(run):
        raise ConfigError(
            f"{path}: made with a different config than runs.{run_name} (fingerprint {meta['fingerprint']} vs "
            f"{run_fingerprint(run)}); rerun training: snakemake -R train --cores all"
        )
    if meta["shape"][0] != run["iterations"] + 1:
        raise CorruptFileError(
            f"{path}: holds {meta['shape'][0]} rows, expected {run['iterations'] + 1}; delete it and rerun train"
        )


def iter_rows(path, start: int, stop: int, block: int = 16):
    """Rows start..stop-1 as tensors, read 16 at a time (the file's chunk height), so a job holds a block
    of rows whatever its number of iterations."""
    import torch

    with open_h5(path, "trajectory (train stage)") as f:
        for a in range(start, stop, block):
            b = min(a + block, stop)
            try:
                rows = torch.from_numpy(f["params"][a:b])
            except OSError as err:
                raise CorruptFileError(f"{path}: params rows {a}..{b - 1} unreadable ({err}); delete it and rerun train") from err
            yield from rows


class TrajectoryRecorder:
    """Records the trajectory of your own PyTorch training loop for the LCA workflow.

        recorder = lcaflow.TrajectoryRecorder("trajectory.h5", model)   # records theta_0
        for x, y in batches:
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(); loss.backward(); optimizer.step()
            recorder.step(loss)                                        # records theta_t and the loss
        recorder.close()                                               # or use it as a context manager

    Every parameter with requires_grad is recorded, in `named_parameters` order, as float32. The file
    is written as `<path>.partial` and renamed on `close()`; an exception inside a `with` block, or a
    close() short of `iterations` steps (when given), leaves only the .partial file. Then point
    `runs.<run>.trajectory` at the file: the workflow computes the LCA of the recorded steps."""

    def __init__(self, path: str | Path, model, iterations: int | None = None):
        from .models import flat_params, layout_of

        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".partial")
        self.model, self.iterations = model, iterations
        self.layout = layout_of(model)
        self._flat = lambda: flat_params(model, self.layout).float().cpu().numpy()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)  # an older recording must not outlive a failed new one
        self._file = h5py.File(self.tmp, "w")
        K = self.layout.num_params
        self._params = self._file.create_dataset(
            "params", shape=(0, K), maxshape=(None, K), dtype="float32", chunks=(16, -(-K // -(-K // 65536)))
        )
        self._buffer: list[np.ndarray] = []
        self._losses: list[float] = []
        self.steps = 0
        self._append(self._flat(), "theta_0")

    def _append(self, row: np.ndarray, which: str) -> None:
        if not np.isfinite(row).all():
            self._flush()
            raise DivergenceError(
                f"{self.tmp}: {which} has non-finite parameters; the training diverged: lower the learning rate"
            )
        self._buffer.append(row)
        if len(self._buffer) == 16:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            n = self._params.shape[0]
            self._params.resize(n + len(self._buffer), axis=0)
            self._params[n:] = np.stack(self._buffer)
            self._buffer = []

    def step(self, loss=None) -> None:
        """Call after each optimizer step: records theta_t and the minibatch loss of step t (a float or tensor)."""
        if self._file is None:
            raise LCAError(f"{self.path}: the recorder is closed")
        self.steps += 1
        value = loss.detach().item() if hasattr(loss, "detach") else loss
        self._losses.append(float(value) if value is not None else float("nan"))
        self._append(self._flat(), f"theta_{self.steps}")

    def close(self) -> Path:
        """Finish the file and give it its final name; returns the path."""
        if self._file is None:
            return self.path
        if self.iterations is not None and self.steps != self.iterations:
            self.abort()
            raise LCAError(f"{self.tmp}: recorded {self.steps} steps of the {self.iterations} announced; the file stays .partial")
        if self.steps == 0:
            self.abort()
            raise LCAError(f"{self.tmp}: no step recorded (call recorder.step() after each optimizer step)")
        self._flush()
        f = self._file
        f.create_dataset("minibatch_loss", data=np.array(self._losses))
        self.layout.to_h5(f.create_group("layout"))
        f.attrs.update(
            {
                "recorded_by": RECORDED_BY,
                "frozen_sha256": frozen_fingerprint(self.model),
                "versions": json.dumps(versions(), sort_keys=True),
            }
        )
        f.close()
        self._file = None
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Stop recording, leaving the .partial file for inspection."""
        if self._file is not None:
            self._flush()
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if kind is None:
            self.close()
        else:
            self.abort()
        return False


def frozen_fingerprint(model) -> str:
    """sha256 of the parameters that do not train (requires_grad False): they are not in theta, so the
    workflow's model must rebuild them exactly for L(theta) to be the recorded model's loss."""
    import hashlib

    digest = hashlib.sha256()
    for name, param in model.named_parameters():
        if not param.requires_grad:
            digest.update(name.encode())
            digest.update(param.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def read_recorded(path, where: str) -> dict:
    """A recorder's file: its layout, rows count and losses (checked to be complete)."""
    path = Path(path)
    if not path.is_file():
        partial = path.with_name(path.name + ".partial")
        hint = f" ({partial.name} exists: that recording did not finish)" if partial.exists() else ""
        raise LCAError(f"{where}: {path} not found{looked_in(path)}{hint}; record it with lcaflow.TrajectoryRecorder")
    with open_h5(path, "recorded trajectory") as f:
        missing = [k for k in ("params", "minibatch_loss", "layout") if k not in f]
        if missing:
            raise CorruptFileError(f"{where}: {path} lacks {', '.join(missing)}; record it again with lcaflow.TrajectoryRecorder")
        try:
            return {
                "layout": Layout.from_h5(f["layout"]),
                "shape": f["params"].shape,
                "minibatch_loss": f["minibatch_loss"][()],
                "frozen_sha256": str(f.attrs.get("frozen_sha256", "")),
                # what the recording says of its optimizer (a JSON attribute "optimizer"), None when it says nothing
                "optimizer": json.loads(f.attrs["optimizer"]) if "optimizer" in f.attrs else None,
            }
        except (KeyError, ValueError, OSError) as err:
            raise CorruptFileError(f"{where}: {path} is damaged ({err}); record it again") from err
