"""What a gradient job keeps of each point and segment: one small class per family of outputs.

A gradient job (lcaflow.gradients) evaluates the full-set loss and gradient at every theta_t of its block
of iterations and integrates each segment; every reducer sees each point (`point`) and each segment
(`segment`, with the training LCA row as float32, as stored) and writes its own datasets (`write`).
Everything an analysis needs for every parameter is reduced here, while the rows are in memory, so that
no analysis has to read a T x K matrix unless it follows individual parameters:

| reducer          | datasets (joined at assembly by)                                              |
|------------------|-------------------------------------------------------------------------------|
| Losses           | loss, loss_val, loss_class[, loss_val_class] (point)                          |
| GradientNorms    | grad_norm_layer, grad_norm_class_layer (point)                                |
| GradientSigns    | grad_sign_changes, grad_sign_ends (signs)                                     |
| Steps            | step_sign_changes, step_sign_ends (signs), layer_motion (iteration)           |
| GradientTraces   | trace_index (same), grad_trace, param_trace (point)                           |
| Quadrature       | lca_first_order(_val), error(_val), num_splits[, adaptive keys] (iteration)   |
| GroupSums        | lca_layer, lca_val_layer, lca_class_layer[, lca_val_class_layer], helping_layer, hurting_layer (iteration) |
| ParameterTotals  | lca_total, helped_count, hurt_count (sum)                                     |
| NeuronSums       | lca_neuron/<group> (iteration), lca_class_neuron/<group>[, lca_val_class_neuron/<group>] (sum) |
| RowStats         | row_std, row_kurtosis, tail_share (iteration)                                 |
| Matrices         | lca[, lca_val, grad] (virtual), sample_index (same), stored_row_sum (iteration) |
| ExampleCurveSums | (TokenGroupSums: token_*[_val], token_lca_total[_val] (sum)) curve_lca[_val], curve_splits[_val], curve_error[_val] (iteration), curve_loss[_val] (point), curve_index[_val] (same) |

A new reduction is one subclass with its JOINS; assembly joins every chunk's datasets by those kinds."""

from __future__ import annotations

from dataclasses import dataclass, field

import h5py
import numpy as np
import torch

from .integrate import ADAPTIVE_ONLY, ADAPTIVE_SCALARS
from .joins import ITERATION, POINT, SAME, SIGNS, SUM, VIRTUAL
from .layout import Layout, kernel_of, units_of
from .stats import TAIL_SIGMAS
from .storage import MAX_TRACED, create_stored_matrix, decode, encode


@dataclass
class Frame:
    """What every reducer of one gradient job knows: the layout, the block size and the storage settings."""

    layout: Layout
    iterations: int  # B, iterations of this job
    num_classes: int
    device: torch.device
    lca: dict  # the lca config section
    columns: np.ndarray | None = None  # stored columns (store: sampled), None for all
    spans: list = field(default_factory=list)
    val_groups: bool = False  # the validation split by example group too (runs with example groups): the *_val_class* datasets

    def __post_init__(self):
        lookup = {name: i for i, name in enumerate(self.layout.layers)}
        self.spans = [
            (slice(off, off + size), lookup[layer])
            for off, size, layer in zip(self.layout.offsets, self.layout.sizes, self.layout.layer_of_param)
        ]

    def per_layer(self, values: torch.Tensor, squares: bool = False) -> torch.Tensor:
        """Sum the last axis (K) by layer (of squares: for norms), one parameter tensor at a time
        (an index_add over K costs as much as the rest of the bookkeeping of an iteration)."""
        out = torch.zeros(values.shape[:-1] + (len(self.layout.layers),), dtype=torch.float64, device=values.device)
        for span, layer in self.spans:
            part = values[..., span]
            out[..., layer] += (
                torch.linalg.vector_norm(part.double(), dim=-1).square() if squares else part.sum(-1, dtype=torch.float64)
            )
        return out

    def count_per_layer(self, mask: torch.Tensor) -> torch.Tensor:
        return self.per_layer(mask.to(torch.float64)).round().to(torch.int64)


class Reducer:
    JOINS: dict[str, str] = {}  # dataset (or "group/" prefix) -> how assembly joins the chunks

    def __init__(self, frame: Frame):
        self.frame = frame
        B = frame.iterations
        self.B, self.C, self.L, self.K = B, frame.num_classes, len(frame.layout.layers), frame.layout.num_params

    def point(self, i: int, p, theta: torch.Tensor) -> None:
        """theta_(start + i), i = 0..B (float32, as stored in the trajectory): p.train and p.val are
        lcaflow.objective.Point."""

    def segment(self, i: int, seg, row: torch.Tensor) -> None:
        """Iteration start + i: seg is an lcaflow.integrate.Segment, row its training LCA as float32."""

    def write(self, f: h5py.File) -> None:
        raise NotImplementedError


def write_arrays(f: h5py.File, arrays: dict) -> None:
    for key, value in arrays.items():
        f.create_dataset(key, data=value.cpu().numpy() if isinstance(value, torch.Tensor) else value)


class Losses(Reducer):
    JOINS = {"loss": POINT, "loss_val": POINT, "loss_class": POINT, "loss_val_class": POINT}

    def __init__(self, frame):
        super().__init__(frame)
        self.loss, self.loss_val = np.empty(self.B + 1), np.empty(self.B + 1)
        self.loss_class = np.empty((self.B + 1, self.C))
        self.loss_val_class = np.empty((self.B + 1, self.C)) if frame.val_groups else None

    def point(self, i, p, theta):
        self.loss[i], self.loss_val[i] = float(p.train.loss), float(p.val.loss)
        self.loss_class[i] = p.train.loss_class.cpu().numpy()
        if self.loss_val_class is not None:
            self.loss_val_class[i] = p.val.loss_class.cpu().numpy()

    def write(self, f):
        write_arrays(f, {"loss": self.loss, "loss_val": self.loss_val, "loss_class": self.loss_class})
        if self.loss_val_class is not None:
            write_arrays(f, {"loss_val_class": self.loss_val_class})


class GradientNorms(Reducer):
    """Gradient strength per layer (and per class), for the synchronisation analysis."""

    JOINS = {"grad_norm_layer": POINT, "grad_norm_class_layer": POINT}

    def __init__(self, frame):
        super().__init__(frame)
        self.layer = np.empty((self.B + 1, self.L))
        self.class_layer = np.empty((self.B + 1, self.C, self.L))

    def point(self, i, p, theta):
        self.layer[i] = self.frame.per_layer(p.train.grad, squares=True).sqrt().cpu().numpy()
        self.class_layer[i] = self.frame.per_layer(p.train.grad_class, squares=True).sqrt().cpu().numpy()

    def write(self, f):
        write_arrays(f, {"grad_norm_layer": self.layer, "grad_norm_class_layer": self.class_layer})


class SignChanges:
    """Per parameter, how often the sign of a sequence of vectors flips between consecutive non-zero values,
    and the first and last non-zero sign, to join consecutive chunks (join_signs)."""

    def __init__(self, K: int, device):
        zeros = dict(dtype=torch.int8, device=device)
        self.first, self.last = torch.zeros(K, **zeros), torch.zeros(K, **zeros)
        self.changes = torch.zeros(K, dtype=torch.int32, device=device)

    def update(self, values: torch.Tensor) -> None:
        sign = torch.sign(values).to(torch.int8)
        nonzero = sign != 0
        self.changes += (nonzero & (self.last != 0) & (sign != self.last)).to(torch.int32)
        self.first = torch.where((self.first == 0) & nonzero, sign, self.first)
        self.last = torch.where(nonzero, sign, self.last)

    def arrays(self, name: str) -> dict:
        ends = 3 * (self.first + 1) + (self.last + 1)  # both signs (-1, 0, 1) in one byte
        return {f"{name}_sign_changes": self.changes.to(torch.int16), f"{name}_sign_ends": ends.to(torch.int8)}


class GradientSigns(Reducer):
    """Per parameter, how often the sign of its full-set gradient (float32, as stored) flips (oscillation)."""

    JOINS = {"grad_sign_changes": SIGNS, "grad_sign_ends": SIGNS}

    def __init__(self, frame):
        super().__init__(frame)
        self.signs = SignChanges(self.K, frame.device)

    def point(self, i, p, theta):
        self.signs.update(p.train.grad.float())

    def write(self, f):
        write_arrays(f, self.signs.arrays("grad"))


class Steps(Reducer):
    """The steps theta_t+1 - theta_t: how often each parameter's turns (oscillation), and each group's step
    length per iteration (synchronisation); so that no analysis needs the trajectory."""

    JOINS = {"step_sign_changes": SIGNS, "step_sign_ends": SIGNS, "layer_motion": ITERATION}

    def __init__(self, frame):
        super().__init__(frame)
        self.signs = SignChanges(self.K, frame.device)
        self.motion = np.empty((self.B, self.L))
        self.previous = None

    def point(self, i, p, theta):
        theta = theta.to(self.frame.device)
        if self.previous is not None:
            step = theta.double() - self.previous.double()
            self.signs.update(step)
            self.motion[i - 1] = self.frame.per_layer(step, squares=True).sqrt().cpu().numpy()
        self.previous = theta

    def write(self, f):
        write_arrays(f, {**self.signs.arrays("step"), "layer_motion": self.motion})


def trace_columns(frame: Frame) -> np.ndarray:
    """Weights of the last layer's kernel whose gradient is traced (Fig. S8): those stored, at most MAX_TRACED."""
    layout = frame.layout
    kernel = kernel_of(layout, layout.layers[-1])
    cols = np.arange(layout.offsets[kernel], layout.offsets[kernel] + layout.sizes[kernel])
    if frame.columns is not None:
        cols = np.intersect1d(cols, frame.columns)
    if cols.size > MAX_TRACED:
        cols = np.sort(np.random.default_rng(0).choice(cols, MAX_TRACED, replace=False))
    return cols


class GradientTraces(Reducer):
    """The gradient and the value of the traced weights at every theta_t (Fig. S8)."""

    JOINS = {"trace_index": SAME, "grad_trace": POINT, "param_trace": POINT}

    def __init__(self, frame):
        super().__init__(frame)
        self.index = trace_columns(frame)
        self.where = torch.as_tensor(self.index, device=frame.device)
        self.traces = np.empty((self.B + 1, self.index.size), dtype=np.float32)
        self.params = np.empty((self.B + 1, self.index.size), dtype=np.float32)

    def point(self, i, p, theta):
        self.traces[i] = p.train.grad.float()[self.where].cpu().numpy()
        self.params[i] = theta[self.where.cpu()].numpy()

    def write(self, f):
        write_arrays(f, {"trace_index": self.index, "grad_trace": self.traces, "param_trace": self.params})


SCALARS = ("lca_first_order", "lca_first_order_val", "error", "error_val")


class Quadrature(Reducer):
    """How each segment was integrated and how well it adds up."""

    JOINS = {key: ITERATION for key in SCALARS + ("num_splits",) + ADAPTIVE_ONLY}

    def __init__(self, frame):
        super().__init__(frame)
        self.adaptive = frame.lca["quadrature"] != "simpson"
        keys = SCALARS + (ADAPTIVE_SCALARS if self.adaptive else ())
        self.scalars = {k: np.empty(self.B) for k in keys}
        self.num_splits = np.empty(self.B, dtype=np.int32)
        self.num_splits_val = np.empty(self.B, dtype=np.int32)

    def segment(self, i, seg, row):
        for key in self.scalars:
            self.scalars[key][i] = getattr(seg, key.removeprefix("lca_"))
        self.num_splits[i] = seg.num_splits
        self.num_splits_val[i] = seg.num_splits if seg.num_splits_val is None else seg.num_splits_val

    def write(self, f):
        write_arrays(f, {**self.scalars, "num_splits": self.num_splits})
        if self.adaptive:
            write_arrays(f, {"num_splits_val": self.num_splits_val})


class GroupSums(Reducer):
    """Per iteration and group: LCA of train, validation and each class (and of each example group of the
    validation split, where the frame has them); parameters helping and hurting."""

    JOINS = {k: ITERATION for k in ("lca_layer", "lca_val_layer", "lca_class_layer", "lca_val_class_layer", "helping_layer", "hurting_layer")}

    def __init__(self, frame):
        super().__init__(frame)
        self.out = {
            "lca_layer": np.empty((self.B, self.L)),
            "lca_val_layer": np.empty((self.B, self.L)),
            "lca_class_layer": np.empty((self.B, self.C, self.L)),
            "helping_layer": np.empty((self.B, self.L), dtype=np.int64),
            "hurting_layer": np.empty((self.B, self.L), dtype=np.int64),
        }
        if frame.val_groups:
            self.out["lca_val_class_layer"] = np.empty((self.B, self.C, self.L))

    def segment(self, i, seg, row):
        per_layer = self.frame.per_layer
        self.out["lca_layer"][i] = per_layer(seg.lca).cpu().numpy()
        self.out["lca_val_layer"][i] = per_layer(seg.lca_val).cpu().numpy()
        self.out["lca_class_layer"][i] = per_layer(seg.lca_class).cpu().numpy()
        self.out["helping_layer"][i] = self.frame.count_per_layer(row < 0).cpu().numpy()
        self.out["hurting_layer"][i] = self.frame.count_per_layer(row > 0).cpu().numpy()
        if self.frame.val_groups:
            self.out["lca_val_class_layer"][i] = per_layer(seg.lca_val_class).cpu().numpy()

    def write(self, f):
        write_arrays(f, self.out)


class ParameterTotals(Reducer):
    """Per parameter, over the job's iterations: its LCA (of the float32 values) and how often it helped
    and hurt."""

    JOINS = {"lca_total": SUM, "helped_count": SUM, "hurt_count": SUM}

    def __init__(self, frame):
        super().__init__(frame)
        device = frame.device
        self.total = torch.zeros(self.K, dtype=torch.float64, device=device)
        self.helped = torch.zeros(self.K, dtype=torch.int32, device=device)
        self.hurt = torch.zeros(self.K, dtype=torch.int32, device=device)

    def segment(self, i, seg, row):
        self.total += row.double()
        self.helped += (row < 0).to(torch.int32)
        self.hurt += (row > 0).to(torch.int32)

    def write(self, f):
        # 12 bytes a parameter per job: the total in float64 (float32 would lose the totals of parameters
        # whose helping and hurting cancel between jobs), the counts in int16
        write_arrays(
            f,
            {
                "lca_total": self.total,
                "helped_count": self.helped.to(torch.int16),
                "hurt_count": self.hurt.to(torch.int16),
            },
        )


def neuron_groups(layout: Layout) -> dict[str, int]:
    """The groups whose tensors share an output-unit axis, with their number of units."""
    return {name: n for name in layout.layers for n, _ in [units_of(layout, name)] if n is not None}


class NeuronSums(Reducer):
    """Per output neuron (channel) of every group that has them: LCA per iteration (of the float32 values)
    and per class over the job (and per example group of the validation split, where the frame has them)."""

    JOINS = {"lca_neuron/": ITERATION, "lca_class_neuron/": SUM, "lca_val_class_neuron/": SUM}

    def __init__(self, frame):
        super().__init__(frame)
        layout = frame.layout
        self.groups = neuron_groups(layout)
        self.members = {
            name: [
                (slice(o, o + s), shape[0])
                for o, s, shape, owner in zip(layout.offsets, layout.sizes, layout.shapes, layout.layer_of_param)
                if owner == name
            ]
            for name in self.groups
        }
        self.per_iteration = {name: np.empty((self.B, n)) for name, n in self.groups.items()}
        self.per_class = {
            name: torch.zeros(self.C, n, dtype=torch.float64, device=frame.device) for name, n in self.groups.items()
        }
        self.per_val_class = {name: torch.zeros_like(v) for name, v in self.per_class.items()} if frame.val_groups else {}

    def sums(self, values: torch.Tensor, name: str) -> torch.Tensor:
        """(..., K) -> (..., units): summed over each unit's kernel row, bias and norm entries."""
        return sum(
            values[..., span].reshape(*values.shape[:-1], units, -1).sum(-1, dtype=torch.float64)
            for span, units in self.members[name]
        )

    def segment(self, i, seg, row):
        for name in self.groups:
            self.per_iteration[name][i] = self.sums(row, name).cpu().numpy()
            self.per_class[name] += self.sums(seg.lca_class, name)
            if name in self.per_val_class:
                self.per_val_class[name] += self.sums(seg.lca_val_class, name)

    def write(self, f):
        for name in self.groups:
            f.create_dataset(f"lca_neuron/{name}", data=self.per_iteration[name])
            f.create_dataset(f"lca_class_neuron/{name}", data=self.per_class[name].cpu().numpy())
        for name, values in self.per_val_class.items():
            f.create_dataset(f"lca_val_class_neuron/{name}", data=values.cpu().numpy())


class RowStats(Reducer):
    """Per iteration, over the non-zero LCA values of all parameters: standard deviation, Pearson kurtosis
    (NaN with fewer than 4), and the share of sum |LCA| beyond TAIL_SIGMAS of those standard deviations.
    LCA shrinks by orders of magnitude during training, so pooled moments mostly measure that drift; within
    one iteration they measure the shape (the paper averages over intervals)."""

    JOINS = {"row_std": ITERATION, "row_kurtosis": ITERATION, "tail_share": ITERATION}

    def __init__(self, frame):
        super().__init__(frame)
        self.out = {k: np.full(self.B, np.nan) for k in self.JOINS}

    def segment(self, i, seg, row):
        std, kurtosis, tail = row_stats(row)
        self.out["row_std"][i], self.out["row_kurtosis"][i], self.out["tail_share"][i] = std, kurtosis, tail

    def write(self, f):
        write_arrays(f, self.out)


def row_stats(row: torch.Tensor) -> tuple[float, float, float]:
    x = row.double()
    mask = x != 0
    n = int(mask.sum())
    if n < 4:
        return np.nan, np.nan, np.nan
    mean = x.sum() / n
    d = torch.where(mask, x - mean, 0.0)
    m2, m4 = float((d**2).sum() / n), float((d**4).sum() / n)
    if not m2 > 0:
        return np.nan, np.nan, np.nan
    std = m2**0.5
    mags = x.abs()
    total = float(mags.sum())
    return std, m4 / m2**2, float(mags[mags > TAIL_SIGMAS * std].sum()) / total if total else np.nan


class Matrices(Reducer):
    """The stored T x K matrices: the training LCA always, the validation LCA and the gradient when asked
    (lca.store_validation, lca.store_gradients); every column or the sample (lca.store), float32 or
    bfloat16 (lca.storage). Also each training row's sum as stored, over all parameters, which assembly
    compares with the float64 sum (the error the number format introduces)."""

    JOINS = {"lca": VIRTUAL, "lca_val": VIRTUAL, "grad": VIRTUAL, "sample_index": SAME, "stored_row_sum": ITERATION}

    def __init__(self, frame, f: h5py.File):
        super().__init__(frame)
        lca = frame.lca
        self.storage = lca["storage"]
        cols = frame.columns
        self.where = None if cols is None else torch.as_tensor(cols, device=frame.device)
        S = self.K if cols is None else cols.size
        make = lambda name, rows: create_stored_matrix(f, name, rows, S, self.storage, lca["compression"])  # noqa: E731
        self.lca = make("lca", self.B)
        self.lca_val = make("lca_val", self.B) if lca["store_validation"] else None
        self.grad = make("grad", self.B + 1) if lca["store_gradients"] else None
        self.row_sum = np.empty(self.B)

    def stored(self, values: torch.Tensor) -> np.ndarray:
        values = values.float()
        return encode(values if self.where is None else values[self.where], self.storage)

    def point(self, i, p, theta):
        if self.grad is not None:
            self.grad[i] = self.stored(p.train.grad)

    def segment(self, i, seg, row):
        encoded = encode(row, self.storage)
        self.row_sum[i] = decode(encoded, self.storage).sum(dtype=np.float64)
        self.lca[i] = encoded if self.where is None else encoded[self.frame.columns]
        if self.lca_val is not None:
            self.lca_val[i] = self.stored(seg.lca_val)

    def write(self, f):
        write_arrays(f, {"stored_row_sum": self.row_sum})
        if self.frame.columns is not None:
            write_arrays(f, {"sample_index": self.frame.columns})


class ExampleCurveSums(Reducer):
    """Per-example loss-change curves (lca.example_curves): for the sampled examples of each split
    (lcaflow.curves.ExampleCurves), the LCA of each one's loss per iteration and parameter group, their losses at
    every point, their Simpson panels and their indices in the dataset. Made only when asked for, like Matrices."""

    JOINS = {
        **{f"curve_lca{sfx}": ITERATION for sfx in ("", "_val")},
        **{f"curve_splits{sfx}": ITERATION for sfx in ("", "_val")},
        **{f"curve_error{sfx}": ITERATION for sfx in ("", "_val")},
        **{f"curve_loss{sfx}": POINT for sfx in ("", "_val")},
        **{f"curve_index{sfx}": SAME for sfx in ("", "_val")},
    }
    SUFFIX = {"train": "", "val": "_val"}
    PREFIX = "curve"

    def __init__(self, frame, curves: dict, tolerance: float, max_splits: int):
        super().__init__(frame)
        self.curves, self.tolerance, self.max_splits = curves, tolerance, max_splits
        self.lca = {s: np.empty((self.B, len(c.index), self.L)) for s, c in curves.items()}
        self.loss = {s: np.empty((self.B + 1, len(c.index))) for s, c in curves.items()}
        self.splits = {s: np.empty(self.B, dtype=np.int32) for s in curves}
        self.error = {s: np.empty((self.B, len(c.index))) for s, c in curves.items()}
        self.theta: torch.Tensor | None = None
        self.previous: torch.Tensor | None = None

    def point(self, i, p, theta):
        self.previous, self.theta = self.theta, theta

    def segment(self, i, seg, row):
        for split, sample in self.curves.items():
            lca, loss0, loss1, n, error = sample.segment(self.previous, self.theta, self.tolerance, self.max_splits)
            self.lca[split][i], self.loss[split][i], self.loss[split][i + 1] = self.per_group(split, lca), loss0, loss1
            self.splits[split][i], self.error[split][i] = n, error

    def per_group(self, split: str, lca: np.ndarray) -> np.ndarray:
        """A segment's (rows, G) LCA as stored."""
        return lca

    def write(self, f):
        for split, sample in self.curves.items():
            name = self.PREFIX + "_{}" + self.SUFFIX[split]
            arrays = {
                name.format("lca"): self.lca[split],
                name.format("loss"): self.loss[split],
                name.format("splits"): self.splits[split],
                name.format("error"): self.error[split],
                name.format("index"): sample.index,
            }
            write_arrays(f, arrays)


class TokenGroupSums(ExampleCurveSums):
    """Token groups (lcaflow.curves.TokenGroups, both splits): the LCA of each token group's loss per iteration
    and parameter group, the groups' losses, Simpson panels and removed errors."""

    JOINS = {
        **{f"token_{key}{sfx}": ITERATION for key in ("lca", "splits", "error") for sfx in ("", "_val")},
        **{f"token_loss{sfx}": POINT for sfx in ("", "_val")},
        **{f"token_index{sfx}": SAME for sfx in ("", "_val")},
        **{f"token_lca_total{sfx}": SUM for sfx in ("", "_val")},
    }
    PREFIX = "token"

    def __init__(self, frame, curves: dict, tolerance: float, max_splits: int):
        super().__init__(frame, curves, tolerance, max_splits)
        self.totals: dict = {}  # split -> (E, K) per-parameter totals (lca.token_group_parameters)

    def per_group(self, split, lca):
        """Per parameter (lcaflow.curves.TokenGroupParameters: (E, K)): added to the split's totals, summed by group."""
        if not self.curves[split].per_parameter:
            return lca
        values = torch.from_numpy(lca)
        self.totals[split] = values if split not in self.totals else self.totals[split].add_(values)
        return self.frame.per_layer(values).numpy()

    def write(self, f):
        super().write(f)
        write_arrays(f, {f"token_lca_total{self.SUFFIX[split]}": values for split, values in self.totals.items()})


REDUCERS = (Losses, GradientNorms, GradientSigns, Steps, GradientTraces, Quadrature, GroupSums, ParameterTotals, NeuronSums, RowStats)


def join_kind(name: str) -> str | None:
    """How assembly joins dataset `name` of the chunk files (None: not a reduction)."""
    for reducer in REDUCERS + (Matrices, ExampleCurveSums, TokenGroupSums):
        for key, kind in reducer.JOINS.items():
            if name == key or (key.endswith("/") and name.startswith(key)):
                return kind
    return None
