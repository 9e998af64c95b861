"""Seeded training that records every parameter vector theta_0..theta_T, resumable after kill -9."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import torch

from .checkpoints import CheckpointRows, checkpoint_files, is_checkpoints
from .errors import ConfigError, DivergenceError, LCAError
from .io import atomic_h5, open_h5
from .layout import same_parameters
from .models import flat_params
from .numerics import set_numerics
from .paths import CHECKPOINT_ROWS
from .progress import Progress, log
from .recording import check_probe
from .settings import run_fingerprint
from .spec import RunData, RunSpec, probe
from .trajectory import frozen_fingerprint, read_recorded, write_run_trajectory


def optimizer_settings(run: dict) -> dict:
    """Optimizer settings with defaults for its own keys only."""
    opt = dict(run["optimizer"])
    if opt["name"] == "sgd":
        opt.setdefault("momentum", 0.0)
        opt.setdefault("nesterov", False)
    else:
        opt.setdefault("betas", [0.9, 0.999])
        opt.setdefault("eps", 1e-8)
    return opt


def make_optimizer(model, layout, run: dict) -> torch.optim.Optimizer:
    """The run's optimizer; with per-layer settings (run["layers"]), one parameter group per layer."""
    opt = optimizer_settings(run)
    overrides = run["layers"] or {}
    if overrides:
        params = dict(model.named_parameters())
        params = [
            {
                "params": [params[n] for n, owner in zip(layout.names, layout.layer_of_param) if owner == layer],
                "layer": layer,
                **({"momentum": overrides[layer]["momentum"]} if "momentum" in overrides.get(layer, {}) else {}),
            }
            for layer in layout.layers
        ]
    else:  # one group, as plain PyTorch
        params = [p for p in model.parameters() if p.requires_grad]
    if opt["name"] == "sgd":
        return torch.optim.SGD(
            params, lr=opt["lr"], momentum=opt["momentum"], nesterov=opt["nesterov"], weight_decay=opt["weight_decay"]
        )
    return torch.optim.Adam(params, lr=opt["lr"], betas=tuple(opt["betas"]), eps=opt["eps"], weight_decay=opt["weight_decay"])


def layer_learning_rate(run: dict, layer: str, t: int) -> float:
    """Learning rate of a layer at iteration t: the optimizer's, times lr_factor, 0 once frozen."""
    setting = (run["layers"] or {}).get(layer)
    if setting is None:
        return run["optimizer"]["lr"]
    if setting["freeze"] or (setting["freeze_at"] is not None and t >= setting["freeze_at"]):
        return 0.0  # the step is lr * update: exactly 0, so the layer's rows stay bitwise constant
    return run["optimizer"]["lr"] * setting["lr_factor"]


class BatchSchedule:
    """Minibatch t is a function of (seed, t) alone, so a resumed run draws the same batches.

    Each epoch is a fresh seeded permutation; a final partial batch is dropped."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.per_epoch = n // batch_size
        self._epoch, self._perm = -1, None

    def __call__(self, t: int) -> np.ndarray:
        epoch, pos = divmod(t, self.per_epoch)
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return self._perm[pos * self.batch_size : (pos + 1) * self.batch_size]


class RowFile:
    """A raw (n_rows, n_params) float32 file written a row at a time and read in blocks of rows. Plain
    reads and writes, not a memory map: the pages of a map stay in the process's resident memory, which
    then grows with T (measured: 1.2 GB more at T = 300 for 2 M parameters); these do not."""

    def __init__(self, path: Path, n_rows: int, n_params: int, create: bool):
        self.n_rows, self.row_bytes, self.n_params = n_rows, 4 * n_params, n_params
        self.fh = open(path, "w+b" if create else "r+b")
        if create:
            self.fh.truncate(n_rows * self.row_bytes)

    def __setitem__(self, i: int, row: np.ndarray) -> None:
        data = memoryview(np.ascontiguousarray(row, dtype=np.float32)).cast("B")
        done = 0
        while done < len(data):  # one call writes at most ~2 GB
            done += os.pwrite(self.fh.fileno(), data[done:], i * self.row_bytes + done)

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop, _ = rows.indices(self.n_rows)
        out = np.empty((stop - start) * self.n_params, dtype=np.float32)
        view, done = memoryview(out).cast("B"), 0
        while done < len(view):
            n = os.preadv(self.fh.fileno(), [view[done:]], start * self.row_bytes + done)
            if n == 0:
                raise LCAError(f"{self.fh.name}: ends before row {stop - 1}; delete the checkpoint folder and rerun train")
            done += n
        return out.reshape(stop - start, self.n_params)

    def flush(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        self.fh.close()


class Checkpoint:
    """Crash-safe training state in a directory.

    `params.f32` is a raw (T+1, K) row file written every iteration; `state.pt` (model, optimizer,
    losses, iteration c) is replaced atomically after the rows up to c are flushed, so rows <= c
    are always trustworthy and resuming from c reproduces the uninterrupted run exactly. A state
    that cannot be used is deleted before any row is written, so it can never be resumed later on
    top of rows from another config. An exclusive lock keeps a second trainer (e.g. an orphan of a
    killed Snakemake) out."""

    def __init__(self, directory: Path, run_fingerprint: str, n_rows: int, n_params: int):
        import fcntl

        self.dir = Path(directory)
        self.fingerprint = run_fingerprint
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.dir / "lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise LCAError(f"{self.dir}: another training process holds this checkpoint; stop it, then rerun") from err
        except OSError as err:  # some network file systems do not lock: work on, unprotected
            log.warning(f"{self.dir}: cannot lock the checkpoint ({err}); make sure no other trainer uses it")
        self.state_path = self.dir / "state.pt"
        rows_path = self.dir / CHECKPOINT_ROWS
        self.state = self._load() if rows_path.exists() and rows_path.stat().st_size == n_rows * n_params * 4 else None
        if self.state is None:
            self.state_path.unlink(missing_ok=True)
        self.rows = RowFile(rows_path, n_rows, n_params, create=self.state is None)

    def _load(self) -> dict | None:
        if not self.state_path.exists():
            return None
        try:
            state = torch.load(self.state_path, weights_only=True)  # tensors and numbers only: no pickle runs
        except Exception as err:  # a damaged checkpoint only costs the progress since the start
            log.warning(f"checkpoint {self.state_path} unreadable ({err}); training from the start")
            return None
        if state.get("fingerprint") != self.fingerprint:
            log.warning(f"checkpoint {self.state_path} belongs to another config; training from the start")
            return None
        return state

    def save(self, iteration: int, model, optimizer, minibatch_loss: np.ndarray) -> None:
        self.rows.flush()
        tmp = self.state_path.with_suffix(".tmp")
        state = {
            "fingerprint": self.fingerprint,
            "iteration": iteration,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "minibatch_loss": torch.from_numpy(minibatch_loss.copy()),
        }
        torch.save(state, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.state_path)

    def remove(self) -> None:
        self.rows.close()
        for name in ("state.pt", "state.tmp", CHECKPOINT_ROWS, "lock"):
            (self.dir / name).unlink(missing_ok=True)
        self._lock.close()
        try:
            self.dir.rmdir()
        except OSError:
            pass


def train(run_name: str, run: dict, data_path: str, out_path: str, checkpoint_dir: str, checkpoint_every: int | None = None) -> None:
    """Train the run from theta_0 (or resume its checkpoint), recording every theta_t, then write its trajectory.
    `checkpoint_every` comes apart from the run's settings in the workflow (it changes no number: job
    resources, lcaflow.settings); None takes the run's own."""
    checkpoint_every = checkpoint_every or run["checkpoint_every"]
    spec = RunSpec.of(run_name, run)
    device = spec.device()
    set_numerics(device, spec.tf32)  # before the first computation on it
    data = RunData(spec, data_path, device)
    model = spec.build_model(data.input_shape, data.num_classes).to(device)
    layout = spec.layout(model)
    _check_layer_settings(spec, layout)
    probe(spec, model, data)
    groups = data.example_groups()  # a bad grouping is one line before training
    optimizer = make_optimizer(model, layout, run)
    T, K = run["iterations"], layout.num_params
    n_train = len(data.train.y)
    if run["batch_size"] > n_train:
        raise ConfigError(f"config: runs.{run_name}.batch_size: {run['batch_size']} exceeds the {n_train} training examples")
    log.info(f"run {run_name}: {spec.architecture} on {spec.dataset} ({n_train} train examples), K={K}, T={T}, device={device}")
    ckpt = Checkpoint(Path(checkpoint_dir), run_fingerprint(run), T + 1, K)
    start, minibatch_loss = _start(ckpt, model, optimizer, layout, T, run_name)
    _steps(spec, model, optimizer, layout, data, ckpt, minibatch_loss, range(start, T), checkpoint_every)
    ckpt.rows.flush()
    with atomic_h5(out_path) as f:
        write_run_trajectory(
            f, ckpt.rows, T + 1, minibatch_loss, layout, data.classes, data.split, _run_attrs(run_name, run, data), groups=groups
        )
    ckpt.remove()
    log.info(f"wrote {out_path}: params ({T + 1}, {K}), final minibatch loss {minibatch_loss[-1]:.4f}")


def _start(ckpt: Checkpoint, model, optimizer, layout, T: int, run_name: str) -> tuple[int, np.ndarray]:
    """Where training starts: the checkpoint's iteration and state, or 0 with theta_0 recorded."""
    state = ckpt.state
    if state is None:
        ckpt.rows[0] = flat_params(model, layout).cpu().numpy()
        return 0, np.full(T, np.nan)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    log.info(f"resuming run {run_name} from checkpoint at iteration {state['iteration']}")
    return state["iteration"], np.asarray(state["minibatch_loss"], dtype=np.float64)


def _steps(spec: RunSpec, model, optimizer, layout, data: RunData, ckpt: Checkpoint, minibatch_loss, iterations, every: int) -> None:
    """The optimizer steps of `iterations`, each theta_t+1 recorded, checkpointed every `every` steps."""
    run, T = spec.run, len(minibatch_loss)
    device = data.train.x.device
    schedule = BatchSchedule(len(data.train.y), run["batch_size"], run["seed"])
    progress = Progress(f"train {spec.name}", T)
    model.train()
    for t in iterations:
        torch.manual_seed(run["seed"] * 1_000_003 + t)  # dropout masks depend on (seed, t) only
        batch = torch.from_numpy(schedule(t)).to(device)
        loss = spec.loss.mean(model(data.train.x[batch]), data.train.y[batch])
        if not torch.isfinite(loss):
            ckpt.save(t, model, optimizer, minibatch_loss)  # keep theta_0..theta_t for inspection
            raise DivergenceError(
                f"run {spec.name}: minibatch loss is {loss.item()} at iteration {t}; lower the learning rate "
                f"(optimizer.lr={run['optimizer']['lr']}); the partial trajectory is kept in {ckpt.dir}"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for group in optimizer.param_groups:
            if "layer" in group:
                group["lr"] = layer_learning_rate(run, group["layer"], t)
        optimizer.step()
        minibatch_loss[t] = loss.item()
        ckpt.rows[t + 1] = flat_params(model, layout).cpu().numpy()
        if (t + 1) % every == 0 and t + 1 < T:
            ckpt.save(t + 1, model, optimizer, minibatch_loss)
        progress.update(t + 1, f"loss {minibatch_loss[t]:.4f}")


def _run_attrs(run_name: str, run: dict, data: RunData, described: dict | None = None) -> dict:
    """The trajectory file's attributes; `described`: the run as its files record it (RunSpec.described)."""
    return {
        "run_name": run_name,
        "run_config": json.dumps(run if described is None else described, sort_keys=True),
        "fingerprint": run_fingerprint(run),
        "seed": run["seed"],
        "dataset": run["dataset"],
        "num_classes": data.num_classes,
        "per_class": data.per_class,
        "input_shape": list(data.input_shape),
    }


def _check_layer_settings(spec: RunSpec, layout) -> None:
    for layer in spec.run["layers"] or {}:
        if layer not in layout.layers:
            raise ConfigError(
                f"{spec.where('layers')}.{layer}: no such layer (group); the run's groups: {', '.join(layout.layers)}"
            )


def adopt_trajectory(run_name: str, run: dict, source: str, data_path: str, out_path: str) -> None:
    """The train stage of a run recorded by the user's own loop (runs.<run>.trajectory): check the
    recording against the run's model and data, then write the run's trajectory file (rows copied,
    with the run's groups, split and classes) that the later stages read as if the train rule made it."""
    if is_checkpoints(run["trajectory"]):
        return adopt_checkpoints(run_name, run, data_path, out_path)
    spec = RunSpec.of(run_name, run)
    where = spec.where("trajectory")
    recorded = read_recorded(source, where)
    data = RunData(spec, data_path, "cpu")
    model = spec.build_model(data.input_shape, data.num_classes)
    layout = spec.layout(model)
    if not same_parameters(recorded["layout"], layout):
        ours = {n: s for n, s in zip(layout.names, layout.shapes)}
        theirs = {n: s for n, s in zip(recorded["layout"].names, recorded["layout"].shapes)}
        diff = next((n for n in [*ours, *theirs] if ours.get(n) != theirs.get(n)), "the order of parameters")
        raise ConfigError(
            f"{where}: {source} was recorded from another model than {spec.architecture} "
            f"({diff}: recorded {theirs.get(diff, 'absent')}, model {ours.get(diff, 'absent')}); record this model or fix architecture_args"
        )
    if recorded["frozen_sha256"] and recorded["frozen_sha256"] != frozen_fingerprint(model):
        raise ConfigError(
            f"{where}: the model's frozen parameters (requires_grad False) differ from the recording's; "
            f"{spec.architecture} must rebuild them exactly (load the same weights; the workflow seeds torch with runs.{run_name}.seed)"
        )
    probe(spec, model, data)
    if recorded["probe"] is not None:  # the same function as was trained, not only the same names and shapes
        check_probe(copy.deepcopy(model), recorded["theta0"], layout, recorded["probe"], where, spec.architecture)
    groups = data.example_groups()
    n_rows, K = recorded["shape"]
    if n_rows - 1 != run["iterations"]:
        raise ConfigError(
            f"{where}: {source} holds {n_rows - 1} steps but iterations is {run['iterations']}; remove iterations or record again"
        )
    with open_h5(source, "recorded trajectory") as f, atomic_h5(out_path) as out:
        write_run_trajectory(
            out,
            f["params"],
            n_rows,
            recorded["minibatch_loss"],
            layout,
            data.classes,
            data.split,
            {
                **_run_attrs(run_name, run, data, spec.described(recorded["optimizer"])),
                "recorded_from": str(source),
                **({"steps": json.dumps(recorded["steps"])} if recorded["steps"] else {}),
            },
            check_finite=f"{where}: {source}",
            groups=groups,
        )
    log.info(f"wrote {out_path}: {n_rows - 1} recorded steps of {source}, K={K}")


def adopt_checkpoints(run_name: str, run: dict, data_path: str, out_path: str) -> None:
    """The train stage of a run given as checkpoint files (runs.<run>.trajectory a glob or a list): each
    checkpoint, sorted by its step (or in the listed order, runs.<run>.steps), a row of the run's trajectory file; each consecutive pair a segment.
    The steps are recorded (attrs["steps"]); the minibatch losses are unknown (NaN)."""
    spec = RunSpec.of(run_name, run)
    where = spec.where("trajectory")
    files = checkpoint_files(run["trajectory"], where, run.get("steps"))
    data = RunData(spec, data_path, "cpu")
    model = spec.build_model(data.input_shape, data.num_classes)
    layout = spec.layout(model)
    probe(spec, model, data)
    rows = CheckpointRows(files, layout, model, where)
    attrs = {
        **_run_attrs(run_name, run, data, spec.described()),
        "recorded_from": json.dumps([path for _, path in files]),
        "steps": json.dumps([step for step, _ in files]),
    }
    with atomic_h5(out_path) as out:
        write_run_trajectory(out, rows, len(files), np.full(len(files) - 1, np.nan), layout, data.classes, data.split, attrs)
    log.info(f"wrote {out_path}: {len(files)} checkpoints (steps {files[0][0]}..{files[-1][0]}), K={layout.num_params}")

