"""Seeded training that records every parameter vector theta_0..theta_T, resumable after kill -9."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from .config import optimizer_settings, run_fingerprint
from .data import NUM_CLASSES, load_examples, make_split, open_h5
from .errors import CorruptFileError, DivergenceError, LCAError
from .io import atomic_h5, create_matrix, require, versions
from .models import build_model, flat_params, layout_of
from .progress import Progress, log


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        from .errors import ConfigError

        raise ConfigError(f"device {name!r} requested but CUDA is not available here; set device: auto or cpu")
    return torch.device(name)


def make_optimizer(model, layout, run: dict) -> torch.optim.Optimizer:
    """The run's optimizer; with per-layer settings (run["layers"]), one parameter group per layer."""
    opt = optimizer_settings(run)
    overrides = run.get("layers") or {}
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
    else:  # one group, as plain PyTorch (and as checkpoints written before per-layer settings existed)
        params = [p for p in model.parameters() if p.requires_grad]
    if opt["name"] == "sgd":
        return torch.optim.SGD(
            params, lr=opt["lr"], momentum=opt["momentum"], nesterov=opt["nesterov"], weight_decay=opt["weight_decay"]
        )
    return torch.optim.Adam(params, lr=opt["lr"], betas=tuple(opt["betas"]), eps=opt["eps"], weight_decay=opt["weight_decay"])


def layer_learning_rate(run: dict, layer: str, t: int) -> float:
    """Learning rate of a layer at iteration t: the optimizer's, times lr_factor, 0 once frozen."""
    setting = (run.get("layers") or {}).get(layer)
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


def split_indices(run: dict) -> tuple[np.ndarray, np.ndarray]:
    from .config import OFFICIAL_TRAIN_SIZE

    return make_split(OFFICIAL_TRAIN_SIZE[run["dataset"]], run["val_size"], run["train_size"], run["split_seed"])


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
        rows_path = self.dir / "params.f32"
        self.state = self._load() if rows_path.exists() and rows_path.stat().st_size == n_rows * n_params * 4 else None
        if self.state is None:
            self.state_path.unlink(missing_ok=True)
        mode = "r+" if self.state is not None else "w+"
        self.rows = np.memmap(rows_path, dtype=np.float32, mode=mode, shape=(n_rows, n_params))

    def _load(self) -> dict | None:
        if not self.state_path.exists():
            return None
        try:
            state = torch.load(self.state_path, weights_only=False)
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
            "minibatch_loss": minibatch_loss.copy(),
        }
        torch.save(state, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.state_path)

    def remove(self) -> None:
        del self.rows
        for name in ("state.pt", "state.tmp", "params.f32", "lock"):
            (self.dir / name).unlink(missing_ok=True)
        self._lock.close()
        try:
            self.dir.rmdir()
        except OSError:
            pass


def train(
    run_name: str, run: dict, data_path: str, out_path: str, checkpoint_dir: str, checkpoint_every: int | None = None
) -> None:
    device = resolve_device(run["device"])
    run_fp = run_fingerprint(run)
    every = checkpoint_every or run.get("checkpoint_every") or 100
    train_idx, val_idx = split_indices(run)
    (data,) = load_examples(data_path, [train_idx], device)
    with open_h5(data_path, "dataset file") as f:
        require(f, ["x_train", "classes"], data_path, "data")
        input_shape = f["x_train"].shape[1:]
        class_names = list(f["classes"].asstr()[()])
    num_classes = NUM_CLASSES[run["dataset"]]
    model = build_model(run["architecture"], input_shape, num_classes, run["seed"]).to(device)
    layout = layout_of(model)
    optimizer = make_optimizer(model, layout, run)
    T, K = run["iterations"], layout.num_params
    log.info(
        f"run {run_name}: {run['architecture']} on {run['dataset']} ({len(train_idx)} train examples), K={K}, T={T}, device={device}"
    )

    ckpt = Checkpoint(Path(checkpoint_dir), run_fp, T + 1, K)
    minibatch_loss = np.full(T, np.nan)
    state = ckpt.state
    start = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        minibatch_loss = state["minibatch_loss"]
        start = state["iteration"]
        log.info(f"resuming run {run_name} from checkpoint at iteration {start}")
    else:
        ckpt.rows[0] = flat_params(model, layout).cpu().numpy()

    schedule = BatchSchedule(len(train_idx), run["batch_size"], run["seed"])
    progress = Progress(f"train {run_name}", T)
    model.train()
    for t in range(start, T):
        torch.manual_seed(run["seed"] * 1_000_003 + t)  # dropout masks depend on (seed, t) only
        batch = torch.from_numpy(schedule(t)).to(device)
        loss = F.cross_entropy(model(data.x[batch]), data.y[batch])
        if not torch.isfinite(loss):
            ckpt.save(t, model, optimizer, minibatch_loss)  # keep theta_0..theta_t for inspection
            raise DivergenceError(
                f"run {run_name}: minibatch loss is {loss.item()} at iteration {t}; lower the learning rate "
                f"(optimizer.lr={run['optimizer']['lr']}); the partial trajectory is kept in {checkpoint_dir}"
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

    ckpt.rows.flush()
    with atomic_h5(out_path) as f:
        rows_per_block = max(1, (64 << 20) // (4 * K))
        params = create_matrix(f, "params", T + 1, K)
        for a in range(0, T + 1, rows_per_block):
            params[a : a + rows_per_block] = ckpt.rows[a : a + rows_per_block]
        f.create_dataset("minibatch_loss", data=minibatch_loss)
        f.create_dataset("classes", data=np.array(class_names, dtype=object), dtype=h5py.string_dtype())
        layout.to_h5(f.create_group("layout"))
        split = f.create_group("split")
        split.create_dataset("train_indices", data=train_idx)
        split.create_dataset("val_indices", data=val_idx)
        f.attrs["run_name"] = run_name
        f.attrs["run_config"] = json.dumps(run, sort_keys=True)
        f.attrs["fingerprint"] = run_fp
        f.attrs["seed"] = run["seed"]
        f.attrs["dataset"] = run["dataset"]
        f.attrs["num_classes"] = num_classes
        f.attrs["input_shape"] = list(input_shape)
        f.attrs["versions"] = json.dumps(versions(), sort_keys=True)
    ckpt.remove()
    log.info(f"wrote {out_path}: params ({T + 1}, {K}), final minibatch loss {minibatch_loss[-1]:.4f}")


def read_trajectory_meta(path) -> dict:
    """Attributes, layout and split of a trajectory file, with clear errors if it is not one."""
    from .io import read_json_attr
    from .models import Layout

    with open_h5(path, "trajectory (train stage)") as f:
        require(f, ["params", "minibatch_loss", "layout", "classes", "split/train_indices", "split/val_indices"], path, "train")
        try:
            return {
                "run": read_json_attr(f, "run_config", path),
                "fingerprint": str(f.attrs["fingerprint"]),
                "shape": f["params"].shape,
                "layout": Layout.from_h5(f["layout"]),
                "train_indices": f["split/train_indices"][()],
                "val_indices": f["split/val_indices"][()],
                "num_classes": int(f.attrs["num_classes"]),
                "input_shape": tuple(f.attrs["input_shape"]),
            }
        except (KeyError, ValueError, OSError) as err:
            raise CorruptFileError(f"{path}: metadata incomplete or damaged ({err}); delete it and rerun train") from err
