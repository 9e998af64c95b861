"""One gradient job: LCA for a block of iterations [start, stop) of a trajectory."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import chunkfile
from .chunkfile import chunk_range
from .errors import ConfigError, CorruptFileError, DivergenceError
from .integrate import SPLITS, TRAPEZOID, Endpoint, make_quadrature
from .io import atomic_h5
from .numerics import set_numerics
from .objective import FullSetObjective, resolve_speed
from .progress import Progress, log
from .reducers import REDUCERS, ExampleCurveSums, Frame, Matrices, Quadrature, TokenGroupSums
from .spec import RunData, RunSpec
from .storage import stored_columns
from .trajectory import check_trajectory, iter_rows, read_trajectory_meta


@dataclass
class Job:
    """One gradient job, set up: the block of iterations, the model's objectives on both splits."""

    run_name: str
    lca: dict
    start: int
    stop: int
    frame: Frame
    train: FullSetObjective
    val: FullSetObjective
    trajectory_path: str
    meta: dict
    curves: dict  # split -> lcaflow.curves.ExampleCurves (lca.example_curves; empty when 0)
    tokens: dict | None = None  # split -> lcaflow.curves.TokenGroups of a run with token groups (empty without)

    @classmethod
    def setup(cls, run_name: str, run: dict, lca: dict, chunk: int, trajectory_path: str, data_path: str) -> Job:
        meta = read_trajectory_meta(trajectory_path)
        check_trajectory(meta, run_name, run, trajectory_path)
        T = run["iterations"]
        start, stop = chunk_range(chunk, T, lca["iterations_per_job"])
        if start >= T:
            raise ConfigError(f"gradient job {chunk} of run {run_name} is past the last iteration {T - 1}")
        spec = RunSpec.of(run_name, run)
        device = spec.device()
        set_numerics(device, spec.tf32)  # before the first computation on it
        layout = meta["layout"]
        split = {"train_indices": meta["train_indices"], "val_indices": meta["val_indices"], "val_source": meta["val_source"]}
        data = RunData(spec, data_path, device, split)
        model = spec.build_model(meta["input_shape"], meta["num_classes"]).to(device)
        if spec.layout(model) != layout:
            raise CorruptFileError(
                f"{trajectory_path}: parameter layout differs from architecture {run['architecture']}; rerun train"
            )
        C, labels, val_groups = _example_groups(meta, data)
        speed = resolve_speed(lca, model, device)
        objective = dict(loss=spec.loss, chunk_size=lca["eval_chunk_size"], weight_decay=spec.weight_decay, speed=speed)
        sample = lca.get("midpoint_sample", 0) if lca["quadrature"] == "adaptive" else 0  # absent where 0 (settings.LCA)
        train = FullSetObjective(model, layout, data.train, C, labels=labels["train"], sample=sample, **objective)
        val = FullSetObjective(model, layout, data.val, C, per_class=val_groups, labels=labels["val"], **objective)
        frame = Frame(layout, stop - start, C, device, lca, stored_columns(layout, lca), val_groups=val_groups)
        curves = _example_curves(spec, model, layout, data, meta, lca.get("example_curves", 0))
        tokens = _token_groups(spec, model, layout, data, meta, lca["eval_chunk_size"], lca.get("token_group_parameters", False))
        return cls(run_name, lca, start, stop, frame, train, val, trajectory_path, meta, curves, tokens)

    def evaluator(self):
        """evaluate(theta, splits) -> Endpoint of the splits asked for (("sample",): the training split's midpoint
        sample alone, as its `train`); every point, interior ones included, must be finite. `evaluate.where` names
        the point, for the divergence message."""

        def evaluate(theta: torch.Tensor, splits=SPLITS) -> Endpoint:
            if splits == ("sample",):
                point = Endpoint(train=self.train(theta, sample_only=True), val=None)
                splits = ("train sample",)
            else:
                point = Endpoint(
                    train=self.train(theta) if "train" in splits else None, val=self.val(theta) if "val" in splits else None
                )
            parts = [p for p in (point.train, point.val) if p is not None]
            if not torch.isfinite(torch.stack([v for p in parts for v in (p.loss, p.grad.sum())])).all():
                losses = ", ".join(f"{name} loss {float(p.loss)}" for name, p in zip(splits, parts))
                raise DivergenceError(
                    f"run {self.run_name}: full-set loss or gradient is not finite {evaluate.where} ({losses}); "
                    f"the training diverged there: lower the learning rate"
                )
            return point

        evaluate.where = ""
        return evaluate

    def attrs(self, chunk: int) -> dict:
        return {
            **chunkfile.attributes(self.run_name, self.meta["fingerprint"], self.lca, chunk, self.start, self.stop),
            "train_passes": self.train.passes,
            "val_passes": self.val.passes,
            "train_sample_passes": self.train.sample_passes,  # passes over the midpoint sample alone
            "midpoint_sample_fraction": self.train.sample_fraction,  # its share of the training split (0: none)
            "compute_batch": self.train.compute_batch or 0,  # 0: whole chunks
            "channels_last": self.train.channels_last,
        }


def _example_groups(meta: dict, data: RunData) -> tuple[int, dict, bool]:
    """The number of example groups (the objective's per-group rows), each split's group labels, and whether
    the validation split is split by group too: the trajectory's example groups where it records them (both
    splits by group), else the classes (one group for a loss without; the training split only)."""
    groups = meta["example_groups"]
    if groups is None or groups["train"].ndim == 2:  # token groups: lcaflow.curves.TokenGroups, not the objective's rows
        return meta["num_classes"], {"train": data.class_labels(data.train), "val": data.class_labels(data.val)}, False
    device = data.train.y.device
    return len(groups["names"]), {s: torch.from_numpy(groups[s]).to(device) for s in ("train", "val")}, True


def _example_curves(spec: RunSpec, model, layout, data: RunData, meta: dict, m: int) -> dict:
    """The sampled examples of each split whose loss-change curves the job computes (none where m is 0)."""
    if not m:
        return {}
    from .curves import ExampleCurves, curve_sample

    where = f"config: lca.example_curves (run {spec.name})"
    curves = {}
    for split, part, indices in (("train", data.train, meta["train_indices"]), ("val", data.val, meta["val_indices"])):
        positions = curve_sample(len(part.y), m, spec.run["seed"], split, where)
        chosen = torch.from_numpy(positions).to(part.y.device)
        curves[split] = ExampleCurves(model, layout, part.x[chosen], part.y[chosen], spec.loss, indices[positions], where)
    return curves


def _token_groups(spec: RunSpec, model, layout, data: RunData, meta: dict, chunk: int, per_parameter: bool) -> dict:
    """The token groups of each split, where the trajectory records labels per token (per parameter, by reverse
    mode, with lca.token_group_parameters); else none."""
    groups = meta["example_groups"]
    if groups is None or groups["train"].ndim != 2:
        return {}
    from .curves import TokenGroupParameters, TokenGroups

    route = TokenGroupParameters if per_parameter else TokenGroups
    made = {}
    for split, part in (("train", data.train), ("val", data.val)):
        labels = torch.from_numpy(groups[split]).to(part.y.device)
        made[split] = route(model, layout, part.x, part.y, spec.loss, labels, groups["names"], chunk, spec.where("example_groups"))
    return made


def integrate_block(job: Job, reducers: list, progress: Progress) -> None:
    """The quadrature loop: every point and segment of the block, handed to every reducer."""
    evaluate = job.evaluator()
    quadrature = make_quadrature(job.lca, rows=torch.from_numpy(job.frame.layout.row_index()).to(job.frame.device))
    thetas = iter_rows(job.trajectory_path, job.start, job.stop + 1)
    evaluate.where = f"at theta_{job.start}"
    theta = next(thetas)
    previous = evaluate(theta)
    for split, sample in job.curves.items():
        sample.check_finite(theta, evaluate.where, job.run_name, split)
    for r in reducers:
        r.point(0, previous, theta)
    errors, splits = np.empty(job.frame.iterations), np.empty(job.frame.iterations, dtype=np.int32)
    for i in range(job.frame.iterations):
        t = job.start + i
        evaluate.where = f"at theta_{t + 1}"
        theta_next = next(thetas)
        following = evaluate(theta_next)
        evaluate.where = f"between theta_{t} and theta_{t + 1}"
        seg = quadrature(evaluate, theta, theta_next, previous, following)
        row = seg.lca.float()
        for r in reducers:
            r.point(i + 1, following, theta_next)
            r.segment(i, seg, row)
        if not seg.converged(job.lca["tolerance"]):
            log.warning(
                f"iteration {t}: |error| {abs(seg.error):.2e} (val {abs(seg.error_val):.2e}) still above "
                f"tolerance {job.lca['tolerance']} with {_rule(seg.num_splits)}"
                + (f", validation {_rule(seg.num_splits_val)}" if seg.num_splits_val is not None else "")
                + " (max_splits)"
            )
        previous, theta = following, theta_next
        errors[i], splits[i] = seg.error, seg.num_splits
        progress.update(i + 1, _progress_note(errors[: i + 1], splits[: i + 1]))


def compute_chunk(run_name: str, run: dict, lca: dict, chunk: int, trajectory_path: str, data_path: str, out_path: str) -> None:
    job = Job.setup(run_name, run, lca, chunk, trajectory_path, data_path)
    frame = job.frame
    log.info(
        f"run {run_name} chunk {chunk}: iterations {job.start}..{job.stop - 1} of {run['iterations']}, "
        f"K={frame.layout.num_params}, device={frame.device}, storage {lca['storage']} {lca['store']}"
        + (f" ({frame.columns.size} columns)" if frame.columns is not None else "")
        + f", {len(job.train.chunks)} train / {len(job.val.chunks)} val evaluation chunks, "
        f"compute batch {job.train.compute_batch or 'whole chunk'}, channels-last {job.train.channels_last}"
    )
    progress = Progress(f"gradients {run_name} chunk {chunk}", frame.iterations)
    with atomic_h5(out_path) as f:
        reducers = [cls(frame) for cls in REDUCERS] + [Matrices(frame, f)]
        if job.curves:
            reducers.append(ExampleCurveSums(frame, job.curves, job.lca["tolerance"], job.lca["max_splits"]))
        if job.tokens:
            reducers.append(TokenGroupSums(frame, job.tokens, job.lca["tolerance"], job.lca["max_splits"]))
        integrate_block(job, reducers, progress)
        for r in reducers:
            r.write(f)
        f.attrs.update(job.attrs(chunk))
    splits = reducers[REDUCERS.index(Quadrature)].num_splits
    passes = job.train.passes + job.train.sample_passes * job.train.sample_fraction
    log.info(
        f"wrote {out_path}: {passes:.1f} train passes for {frame.iterations} iterations "
        f"({passes / frame.iterations:.2f} per iteration), {int((splits > 1).sum())} refined, "
        f"{int((splits == TRAPEZOID).sum())} by the trapezoid"
    )


def _rule(num_splits: int) -> str:
    return "the trapezoid" if num_splits == TRAPEZOID else f"{num_splits} Simpson panels"


def _progress_note(errors: np.ndarray, num_splits: np.ndarray) -> str:
    note = f"(max |error| {np.abs(errors).max():.1e}, refined {int((num_splits > 1).sum())}"
    trapezoid = int((num_splits == TRAPEZOID).sum())
    return note + (f", trapezoid {trapezoid})" if trapezoid else ")")
