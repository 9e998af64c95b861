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
from .settings import run_fingerprint, run_fingerprints

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
    if meta["fingerprint"] not in run_fingerprints(run):
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

        recorder = lcaflow.TrajectoryRecorder("trajectory.h5", model, optimizer=optimizer)   # records theta_0
        for x, y in batches:
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(); loss.backward(); optimizer.step()
            recorder.step(loss)                                        # records theta_t and the loss
        recorder.close()                                               # or use it as a context manager

    or, without touching the loop's steps, through the optimizer (docs/integrations.md):

        recorder = lcaflow.TrajectoryRecorder("trajectory.h5", model).attach(optimizer)
        ...; recorder.add_loss(loss); ...                               # each micro-batch's loss

    Every parameter with requires_grad is recorded, in `named_parameters` order, as float32 (under
    mixed precision: the float32 master weights the optimizer updates). The file is written as
    `<path>.partial` and renamed on `close()`; an exception inside a `with` block, or a close() short of
    `iterations` steps (when given), leaves only the .partial file. With `optimizer`, its settings are
    stored (`run.config` shows them). With `every=k`, theta is kept every k-th step (and after the last):
    each pair of kept thetas is a segment of k steps, as between checkpoints, its loss the mean of its steps'
    (k times smaller a file; the LCA of segments, docs/integrations.md). Under data parallelism (torch.distributed) make it on every rank:
    rank 0 writes, and each step's loss is the mean over the ranks. Then point `runs.<run>.trajectory`
    at the file: the workflow computes the LCA of the recorded steps."""

    def __init__(self, path: str | Path, model, iterations: int | None = None, optimizer=None, every: int = 1):
        from .models import flat_params, layout_of
        from .recording import PendingLosses, Probe, describe_optimizer, rank_and_size, refuse_sharded, unwrap

        model = unwrap(model)
        refuse_sharded(model, "lcaflow.TrajectoryRecorder")
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".partial")
        self.model, self.iterations = model, iterations
        self.optimizer = describe_optimizer(optimizer) if optimizer is not None else None
        self.layout = layout_of(model)
        self.writes = rank_and_size()[0] == 0  # data parallel: every rank holds the same theta, rank 0 writes it
        self._flat = lambda: flat_params(model, self.layout).float().cpu().numpy()
        self._pending, self._hook = PendingLosses(), None
        self._buffer: list[np.ndarray] = []
        self._losses: list[float] = []
        self.steps = 0
        if not isinstance(every, int) or every < 1:
            raise LCAError(f"{self.path}: every={every!r}; keep theta every k steps with a whole k >= 1")
        self.every, self._kept, self._window = every, [0], []  # the step of each kept theta; losses since the last
        if self.writes:
            _say_weight(self.path, self.layout.num_params, every, iterations)
        self._open = True
        self._file = self._create() if self.writes else None
        self._append(self._flat(), "theta_0")
        self._probe = Probe(model) if self.writes else None  # the first inputs and the outputs at theta_0

    def _create(self) -> h5py.File:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)  # an older recording must not outlive a failed new one
        f = h5py.File(self.tmp, "w")
        K = self.layout.num_params
        self._params = f.create_dataset("params", shape=(0, K), maxshape=(None, K), dtype="float32", chunks=(16, -(-K // -(-K // 65536))))
        return f

    def _append(self, row: np.ndarray, which: str) -> None:
        if not np.isfinite(row).all():
            self._flush()
            raise DivergenceError(
                f"{self.tmp}: {which} has non-finite parameters; the training diverged: lower the learning rate"
            )
        if self.writes:
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
        if self._hook is not None:
            raise LCAError(
                f"{self.path}: the recorder is attached to the optimizer and records every step itself; "
                "give the loss with recorder.add_loss(loss) instead of recorder.step(loss)"
            )
        self._record(loss)

    def _record(self, loss) -> None:
        from .recording import as_float, mean_over_ranks

        if not self._open:
            raise LCAError(f"{self.path}: the recorder is closed")
        self.steps += 1
        self._window.append(mean_over_ranks(as_float(loss)))
        if self.steps % self.every == 0:
            self._keep()

    def _keep(self) -> None:
        """Keep theta now: the end of a segment (a step when every=1), its loss the mean of its steps'."""
        self._losses.append(float(np.mean(self._window)))
        self._window = []
        self._kept.append(self.steps)
        self._append(self._flat() if self.writes else np.zeros(1, np.float32), f"theta_{self.steps}")

    def attach(self, optimizer, scaler=None) -> TrajectoryRecorder:
        """Record theta_t after every real update of `optimizer` (Optimizer.register_step_post_hook): once per
        optimizer step under gradient accumulation, never for a step a torch.amp.GradScaler skips (it does not
        call optimizer.step). The step's minibatch loss is the mean of the losses given to `add_loss` since
        the previous step; pass the loop's `scaler` so that a skipped step's losses are dropped. Also
        stores the optimizer's settings. Returns the recorder."""
        if self._hook is not None:
            raise LCAError(f"{self.path}: the recorder is attached to an optimizer already")
        from .recording import describe_optimizer

        self.optimizer = self.optimizer or describe_optimizer(optimizer)
        self._pending.scaler = scaler
        self._hook = optimizer.register_step_post_hook(lambda *_: self._record(self._pending.take()))
        return self

    def add_loss(self, loss, share: bool = False) -> None:
        """The loss of a micro-batch (a tensor or number) of the coming optimizer step (with `attach`); the
        step's loss is their mean, or with `share=True` the sum of the shares (a micro-batch's sum over its
        examples divided by the count of the whole step's, as the Hugging Face Trainer's num_items_in_batch)."""
        self._pending.add(loss, share)

    def close(self) -> Path:
        """Finish the file and give it its final name; returns the path."""
        if not self._open:
            return self.path
        if self.iterations is not None and self.steps != self.iterations:
            self.abort()
            raise LCAError(f"{self.tmp}: recorded {self.steps} steps of the {self.iterations} announced; the file stays .partial")
        if self.steps == 0:
            self.abort()
            raise LCAError(f"{self.tmp}: no step recorded (call recorder.step() after each optimizer step)")
        if self._window:  # the last, shorter segment
            self._keep()
        self._detach()
        self._open = False
        if self.writes:
            self._finish()
        return self.path

    def _finish(self) -> None:
        self._flush()
        f = self._file
        f.create_dataset("minibatch_loss", data=np.array(self._losses))
        self.layout.to_h5(f.create_group("layout"))
        if self._probe.outputs is not None:
            f.create_dataset("probe/inputs", data=self._probe.inputs)
            f.create_dataset("probe/outputs", data=self._probe.outputs)
        f.attrs.update(
            {
                "recorded_by": RECORDED_BY,
                "frozen_sha256": frozen_fingerprint(self.model),
                "versions": json.dumps(versions(), sort_keys=True),
                **({"optimizer": json.dumps(self.optimizer, sort_keys=True)} if self.optimizer else {}),
                **({"steps": json.dumps(self._kept)} if self.every > 1 else {}),
            }
        )
        f.close()
        self._file = None
        os.replace(self.tmp, self.path)

    def _detach(self) -> None:
        if self._probe is not None:
            self._probe.remove()
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def abort(self) -> None:
        """Stop recording, leaving the .partial file for inspection."""
        self._detach()
        if self._open:
            self._open = False
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


def _say_weight(path, n_params: int, every: int, iterations: int | None) -> None:
    """One line at the start of a recording: what it will weigh on disk (float32 rows)."""
    import sys

    row = 4 * n_params
    if iterations is not None:
        rows = 1 + -(-iterations // every)
        size = f"{rows} rows, {_size(rows * row)} for {iterations} steps"
    else:
        size = f"{_size(row)} per kept theta, {_size(row * (1 + 1000 // every))} per 1000 steps"
    print(f"lcaflow: recording {path}: {n_params:,} parameters, theta kept every {every} step{'s' if every > 1 else ''}: {size}", file=sys.stderr)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} TB"


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
                # the model's first inputs and its outputs at theta_0 (recording.Probe), None when not probed
                "probe": {k: f[f"probe/{k}"][()] for k in ("inputs", "outputs")} if "probe" in f else None,
                "theta0": f["params"][0],
                # the step of each kept theta of a recording with every=k, None when every step is kept
                "steps": json.loads(f.attrs["steps"]) if "steps" in f.attrs else None,
            }
        except (KeyError, ValueError, OSError) as err:
            raise CorruptFileError(f"{where}: {path} is damaged ({err}); record it again") from err
