"""One gradient job: LCA for a block of iterations [start, stop) of a trajectory."""

from __future__ import annotations

import json

import numpy as np
import torch

from .config import QUADRATURE_KEYS, chunk_range, fingerprint, run_fingerprint
from .errors import ConfigError, CorruptFileError, DivergenceError
from .grounding import TRAPEZOID
from .integrate import SPLITS, Endpoint, make_quadrature
from .io import atomic_h5, create_matrix
from .objective import FullSetObjective, resolve_speed
from .progress import Progress, log
from .spec import RunData, RunSpec
from .trajectory import iter_rows, read_trajectory_meta

CHUNK_FORMAT_VERSION = 2  # 2: per-layer LCA and gradient norms


def lca_settings_fingerprint(lca: dict) -> str:
    """The LCA settings that change a chunk's numbers (not the job size, speed or storage settings). The
    quadrature's settings count only when it is not the default Simpson, whose chunks keep their fingerprint."""
    keys = ("tolerance", "max_splits", "eval_chunk_size")
    if lca["quadrature"] != "simpson":
        keys += QUADRATURE_KEYS
    return fingerprint({k: lca[k] for k in keys})


def check_trajectory(meta: dict, run_name: str, run: dict, path) -> None:
    if meta["fingerprint"] != run_fingerprint(run):
        raise ConfigError(
            f"{path}: made with a different config than runs.{run_name} (fingerprint {meta['fingerprint']} vs "
            f"{run_fingerprint(run)}); rerun training: snakemake -R train --cores all"
        )
    if meta["shape"][0] != run["iterations"] + 1:
        raise CorruptFileError(
            f"{path}: holds {meta['shape'][0]} rows, expected {run['iterations'] + 1}; delete it and rerun train"
        )


def compute_chunk(run_name: str, run: dict, lca: dict, chunk: int, trajectory_path: str, data_path: str, out_path: str) -> None:
    meta = read_trajectory_meta(trajectory_path)
    check_trajectory(meta, run_name, run, trajectory_path)
    T = run["iterations"]
    start, stop = chunk_range(chunk, T, lca["iterations_per_job"])
    if start >= T:
        raise ConfigError(f"gradient job {chunk} of run {run_name} is past the last iteration {T - 1}")
    spec = RunSpec.of(run_name, run)
    device = spec.device()
    layout = meta["layout"]
    split = {"train_indices": meta["train_indices"], "val_indices": meta["val_indices"], "val_source": meta["val_source"]}
    data = RunData(spec, data_path, device, split)
    model = spec.build_model(meta["input_shape"], meta["num_classes"]).to(device)
    if spec.layout(model) != layout:
        raise CorruptFileError(
            f"{trajectory_path}: parameter layout differs from architecture {run['architecture']}; rerun train"
        )
    C, K, L = meta["num_classes"], layout.num_params, len(layout.layers)
    speed = resolve_speed(lca, model, device)
    objective = dict(loss=spec.loss, chunk_size=lca["eval_chunk_size"], weight_decay=spec.weight_decay, speed=speed)
    train_obj = FullSetObjective(model, layout, data.train, C, labels=data.class_labels(data.train), **objective)
    val_obj = FullSetObjective(model, layout, data.val, C, per_class=False, labels=data.class_labels(data.val), **objective)

    where = {"point": ""}  # names the point being evaluated, for the divergence message

    def evaluate(theta: torch.Tensor, splits=SPLITS) -> Endpoint:
        """The splits asked for at theta; every point, interior ones included, must be finite."""
        point = Endpoint(train=train_obj(theta) if "train" in splits else None, val=val_obj(theta) if "val" in splits else None)
        parts = [p for p in (point.train, point.val) if p is not None]
        if not torch.isfinite(torch.stack([v for p in parts for v in (p.loss, p.grad.sum())])).all():
            losses = ", ".join(f"{name} loss {float(p.loss)}" for name, p in zip(splits, parts))
            raise DivergenceError(
                f"run {run_name}: full-set loss or gradient is not finite {where['point']} ({losses}); "
                f"the training diverged there: lower the learning rate"
            )
        return point

    param_spans = [
        (slice(off, off + size), layout.layers.index(layer))
        for off, size, layer in zip(layout.offsets, layout.sizes, layout.layer_of_param)
    ]
    thetas = iter_rows(trajectory_path, start, stop + 1)
    B = stop - start
    log.info(
        f"run {run_name} chunk {chunk}: iterations {start}..{stop - 1} of {T}, K={K}, device={device}, "
        f"{len(train_obj.chunks)} train / {len(val_obj.chunks)} val evaluation chunks, "
        f"compute batch {train_obj.compute_batch or 'whole chunk'}, channels-last {train_obj.channels_last}"
    )
    progress = Progress(f"gradients {run_name} chunk {chunk}", B)

    with atomic_h5(out_path) as f:
        compression = lca["compression"]
        d_lca = create_matrix(f, "lca", B, K, compression)
        d_lca_val = create_matrix(f, "lca_val", B, K, compression)
        d_grad = create_matrix(f, "grad", B + 1, K, compression) if lca["store_gradients"] else None
        loss = np.empty(B + 1)
        loss_val = np.empty(B + 1)
        loss_class = np.empty((B + 1, C))
        adaptive = lca["quadrature"] != "simpson"
        scalar_keys = ("lca_first_order", "lca_first_order_val", "error", "error_val")
        scalar_keys += ("trapezoid_error", "trapezoid_error_val") if adaptive else ()
        scalars = {k: np.empty(B) for k in scalar_keys}
        num_splits = np.empty(B, dtype=np.int32)
        num_splits_val = np.empty(B, dtype=np.int32)
        class_layer = np.empty((B, C, L))
        layer_lca = {"lca_layer": np.empty((B, L)), "lca_val_layer": np.empty((B, L))}
        grad_norm_layer = np.empty((B + 1, L))
        grad_norm_class_layer = np.empty((B + 1, C, L))
        class_param = torch.zeros(C, K, dtype=torch.float64, device=device)

        def per_layer(values: torch.Tensor, squares: bool = False) -> torch.Tensor:
            """Sum the last axis (K) by layer (of squares: for norms), one parameter tensor at a time
            (an index_add over K costs as much as the rest of the bookkeeping of an iteration)."""
            out = torch.zeros(values.shape[:-1] + (L,), dtype=torch.float64, device=device)
            for span, layer in param_spans:
                part = values[..., span]
                out[..., layer] += torch.linalg.vector_norm(part, dim=-1).square() if squares else part.sum(-1)
            return out

        def record_point(i: int, p: Endpoint) -> None:
            loss[i], loss_val[i] = float(p.train.loss), float(p.val.loss)
            loss_class[i] = p.train.loss_class.cpu().numpy()
            # gradient strength per layer (and per class), for the synchronisation analysis
            grad_norm_layer[i] = per_layer(p.train.grad, squares=True).sqrt().cpu().numpy()
            grad_norm_class_layer[i] = per_layer(p.train.grad_class, squares=True).sqrt().cpu().numpy()
            if d_grad is not None:
                d_grad[i] = p.train.grad.float().cpu().numpy()

        quadrature = make_quadrature(lca)
        where["point"] = f"at theta_{start}"
        theta = next(thetas)
        previous = evaluate(theta)
        record_point(0, previous)
        for i in range(B):
            where["point"] = f"at theta_{start + i + 1}"
            theta_next = next(thetas)
            following = evaluate(theta_next)
            where["point"] = f"between theta_{start + i} and theta_{start + i + 1}"
            record_point(i + 1, following)
            seg = quadrature(evaluate, theta, theta_next, previous, following)
            d_lca[i] = seg.lca.float().cpu().numpy()
            d_lca_val[i] = seg.lca_val.float().cpu().numpy()
            class_layer[i] = per_layer(seg.lca_class).cpu().numpy()
            layer_lca["lca_layer"][i] = per_layer(seg.lca).cpu().numpy()
            layer_lca["lca_val_layer"][i] = per_layer(seg.lca_val).cpu().numpy()
            class_param += seg.lca_class
            for key in scalar_keys:
                scalars[key][i] = getattr(seg, key.removeprefix("lca_"))
            num_splits[i] = seg.num_splits
            num_splits_val[i] = seg.num_splits if seg.num_splits_val is None else seg.num_splits_val
            if not seg.converged(lca["tolerance"]):
                log.warning(
                    f"iteration {start + i}: |error| {abs(seg.error):.2e} (val {abs(seg.error_val):.2e}) still above "
                    f"tolerance {lca['tolerance']} with {_rule(seg.num_splits)}"
                    + (f", validation {_rule(seg.num_splits_val)}" if seg.num_splits_val is not None else "")
                    + " (max_splits)"
                )
            previous, theta = following, theta_next
            progress.update(i + 1, _progress_note(scalars["error"][: i + 1], num_splits[: i + 1]))

        for key, value in (
            ("loss", loss),
            ("loss_val", loss_val),
            ("loss_class", loss_class),
            ("num_splits", num_splits),
            ("lca_class_layer", class_layer),
            ("lca_layer", layer_lca["lca_layer"]),
            ("lca_val_layer", layer_lca["lca_val_layer"]),
            ("grad_norm_layer", grad_norm_layer),
            ("grad_norm_class_layer", grad_norm_class_layer),
        ):
            f.create_dataset(key, data=value)
        for key, value in scalars.items():
            f.create_dataset(key, data=value)
        if adaptive:
            f.create_dataset("num_splits_val", data=num_splits_val)
        f.create_dataset("lca_class_param", data=class_param.cpu().numpy())
        f.attrs.update(
            {
                "format_version": CHUNK_FORMAT_VERSION,
                "run_name": run_name,
                "trajectory_fingerprint": meta["fingerprint"],
                "lca_fingerprint": lca_settings_fingerprint(lca),
                "chunk": chunk,
                "start": start,
                "stop": stop,
                "train_passes": train_obj.passes,
                "val_passes": val_obj.passes,
                "lca_config": json.dumps(lca, sort_keys=True),
                "compute_batch": train_obj.compute_batch or 0,  # 0: whole chunks
                "channels_last": train_obj.channels_last,
            }
        )
    log.info(
        f"wrote {out_path}: {train_obj.passes} train passes for {B} iterations "
        f"({train_obj.passes / B:.2f} per iteration), {int((num_splits > 1).sum())} refined, "
        f"{int((num_splits == TRAPEZOID).sum())} by the trapezoid"
    )


def _rule(num_splits: int) -> str:
    return "the trapezoid" if num_splits == TRAPEZOID else f"{num_splits} Simpson panels"


def _progress_note(errors: np.ndarray, num_splits: np.ndarray) -> str:
    note = f"(max |error| {np.abs(errors).max():.1e}, refined {int((num_splits > 1).sum())}"
    trapezoid = int((num_splits == TRAPEZOID).sum())
    return note + (f", trapezoid {trapezoid})" if trapezoid else ")")
