"""The whole-set loss L(theta) and its gradient, deterministic in theta, with per-class parts."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from .data import Split
from .layout import Layout
from .losses import BUILTIN_LOSSES, Loss
from .models import param_views, set_lca_mode

# Examples per forward/backward of a conv net on CPU: a few hundred 28x28 or 32x32 images keep the
# activations in cache. Measured on 2 Xeon cores, LeNet per 1000 examples: 0.66 s in 10,000-example
# batches, 0.28 s in 250-example ones, 0.19 s channels-last (ResNet-20: 3.2, 2.3, 1.4 s). Fully
# connected nets are matmul-bound and as fast in whole chunks.
CPU_CONV_COMPUTE_BATCH = 256


@dataclass(frozen=True)
class SpeedSettings:
    """How a full-set pass is computed; never what it computes (the tests hold both to float rounding)."""

    compute_batch: int | None = None  # examples per forward/backward inside a chunk; None = the whole chunk
    channels_last: bool = False  # NHWC activations and conv weights


def uses_batch_statistics(model: torch.nn.Module) -> bool:
    """Batch norm in training mode: its statistics group is the evaluation chunk, so a chunk cannot be split."""
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training for m in model.modules())


def has_convolutions(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def resolve_speed(lca: dict, model: torch.nn.Module, device: torch.device) -> SpeedSettings:
    """The config's compute_batch / channels_last with `auto` decided by model and device (as measured)."""
    conv = has_convolutions(model)
    batch = lca["compute_batch"]
    if batch == "auto":
        batch = CPU_CONV_COMPUTE_BATCH if conv and device.type == "cpu" else None
    channels_last = lca["channels_last"]
    if channels_last == "auto":
        channels_last = conv and device.type == "cpu"  # not yet measured on GPUs: off there
    return SpeedSettings(compute_batch=batch, channels_last=bool(channels_last and conv))


@dataclass
class Point:
    """Loss and gradient of one split at one theta, all float64."""

    loss: torch.Tensor  # () total, regulariser included
    grad: torch.Tensor  # (K,) total, regulariser included
    loss_class: torch.Tensor | None = None  # (C,) data loss of each class's examples / N; sums to the data loss
    grad_class: torch.Tensor | None = None  # (C, K)
    # adaptive quadrature's sample: each class's gradient estimated from its sampled examples alone (C, K); on a
    # point evaluated on the sample only, grad_class_sampled is all there is and loss / grad are its estimates
    grad_class_sampled: torch.Tensor | None = None


class FullSetObjective:
    """The mean of a loss (cross-entropy unless `loss` says otherwise, see lcaflow.losses) over a whole
    split, evaluated in fixed class-sorted chunks.

    Chunks hold examples of one class only (by `labels`, the targets unless given; all zeros for a loss
    without classes, with num_classes 1), so the per-class losses and gradients fall out of the same pass. The chunking is fixed by (labels, chunk_size): batch-norm statistics, computed per
    chunk, therefore make L a deterministic function of theta. `speed` only changes how a chunk is
    computed: split into compute batches (not for batch-norm models, whose statistics need the whole
    chunk) and in channels-last layout.

    `sample` (examples per class, per-class objectives only) sets aside a seeded sample of each class (all of a
    smaller class) as that class's first chunk: every pass then also gives each class's gradient estimated from its sample (`grad_class_sampled`),
    and `objective(theta, sample_only=True)` evaluates the sample alone, at that fraction of a pass's cost."""

    def __init__(
        self,
        model: torch.nn.Module,
        layout: Layout,
        split: Split,
        num_classes: int,
        chunk_size: int,
        weight_decay: float = 0.0,
        per_class: bool = True,
        speed: SpeedSettings = SpeedSettings(),
        loss: Loss = BUILTIN_LOSSES["cross_entropy"],
        labels: torch.Tensor | None = None,
        sample: int = 0,
    ):
        # a private copy: its parameters are overwritten with theta at every call, and laid out channels-last
        self.model = set_lca_mode(copy.deepcopy(model))
        self.layout = layout
        self.num_classes = num_classes
        self.n_examples = len(split.y)
        self.weight_decay = weight_decay
        self.per_class = per_class
        self.loss = loss
        if labels is None:  # class targets group the chunks; any other targets make one group
            labels = split.y if split.y.dim() == 1 and not split.y.is_floating_point() else torch.zeros(len(split.y), dtype=torch.int64)
        order = torch.argsort(labels.cpu(), stable=True)
        sorted_labels = labels.cpu()[order].numpy()
        self.sample_sizes = None  # examples of each class in the sample
        if sample and per_class:
            order, self.sample_sizes = _sample_first(order, sorted_labels, sample, num_classes)
            self.class_sizes = np.bincount(sorted_labels, minlength=num_classes)
        self.x = split.x[order.to(split.y.device)].contiguous()
        self.y = split.y[order.to(split.y.device)].contiguous()
        self.chunks = self._class_chunks(sorted_labels, chunk_size, self.sample_sizes)
        self.passes = 0  # full-set passes done, for cost accounting
        self.sample_passes = 0  # passes over the sample alone
        self.channels_last = speed.channels_last and self.x.dim() == 4
        if self.channels_last:
            # `.to` restrides even one-input-channel conv weights, whose NCHW and NHWC strides coincide;
            # mkldnn and cuDNN pick the layout from the weight as well as the input
            self.model.to(memory_format=torch.channels_last)
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        named = dict(self.model.named_parameters())
        self.params = [named[name] for name in layout.names]
        batch_statistics = uses_batch_statistics(self.model)
        self.compute_batch = speed.compute_batch if speed.compute_batch is not None and not batch_statistics else None
        if per_class or batch_statistics:
            self.batches = [
                (c, a, min(a + (self.compute_batch or stop - start), stop), sampled)
                for c, start, stop, sampled in self.chunks
                for a in range(start, stop, self.compute_batch or stop - start)
            ]
        else:  # no per-class parts and no batch statistics: batches may span classes (500-example class
            # batches of a 5,000-example validation split run at half the speed of 5,000-example ones)
            size = min(self.compute_batch or chunk_size, chunk_size)
            self.batches = [(0, a, min(a + size, self.n_examples), False) for a in range(0, self.n_examples, size)]

    @staticmethod
    def _class_chunks(y_sorted: np.ndarray, chunk_size: int, sample_sizes=None) -> list[tuple[int, int, int, bool]]:
        """(class, start, stop, sampled) slices; a class with n examples gets ceil(n / chunk_size) near-equal
        chunks, after its sample's (the first sample_sizes[c] examples of the class) where there is one."""
        chunks = []
        classes, starts, counts = np.unique(y_sorted, return_index=True, return_counts=True)
        for c, start, count in zip(classes, starts, counts):
            parts = [(start, count, False)]
            if sample_sizes is not None:
                m = int(sample_sizes[c])
                parts = [(start, m, True), (start + m, count - m, False)]
            for a0, n, sampled in parts:
                bounds = np.linspace(a0, a0 + n, -(-n // chunk_size) + 1).round().astype(int)
                chunks.extend((int(c), int(a), int(b), sampled) for a, b in zip(bounds[:-1], bounds[1:]))
        return chunks

    @property
    def sample_fraction(self) -> float:
        """The share of the split's examples in the sample (the cost of a sample-only pass), 0 without one."""
        return 0.0 if self.sample_sizes is None else float(self.sample_sizes.sum()) / self.n_examples

    def __call__(self, theta: torch.Tensor, sample_only: bool = False) -> Point:
        device = self.x.device
        flat = theta.detach().to(device=device, dtype=torch.float32)
        # the module's own parameters as leaves (no functional_call): what a plain training loop runs
        with torch.no_grad():
            torch._foreach_copy_(self.params, list(param_views(flat, self.layout).values()))
        rows = self.num_classes if self.per_class else 1
        everything = _Sums(rows, flat.numel(), self.layout, self.n_examples, device)
        sampled_part = None if self.sample_sizes is None else _Sums(rows, flat.numel(), self.layout, self.n_examples, device)
        for c, start, stop, sampled in self.batches:
            if sample_only and not sampled:
                continue
            loss_sum = self.loss.total(self.model(self.x[start:stop]), self.y[start:stop])
            # the batch's share of the mean gradient (scaled before the backward: no pass over C x K afterwards)
            grads = torch.autograd.grad(loss_sum / self.n_examples, self.params)
            row = c if self.per_class else 0
            everything.add(row, grads, loss_sum)
            if sampled and not sample_only:
                sampled_part.add(row, grads, loss_sum)
        if sample_only:
            self.sample_passes += 1
            return self._sample_point(everything, flat)
        self.passes += 1
        grad_acc, loss_acc = everything.grad, everything.loss
        loss, grad = loss_acc.sum(), grad_acc.sum(0)
        if self.weight_decay:
            theta64 = flat.double()
            loss = loss + 0.5 * self.weight_decay * theta64.dot(theta64)
            grad = grad + self.weight_decay * theta64
        if self.per_class:
            sampled = None if sampled_part is None else self._scaled(sampled_part).grad
            return Point(loss=loss, grad=grad, loss_class=loss_acc, grad_class=grad_acc, grad_class_sampled=sampled)
        return Point(loss=loss, grad=grad)

    def _scaled(self, part: _Sums) -> _Sums:
        """A sample's sums scaled up, class by class, to estimate the whole class's: times n_c / m_c."""
        scale = torch.from_numpy(self.class_sizes / np.maximum(self.sample_sizes, 1)).to(part.grad.device)
        part.grad.mul_(scale[:, None])
        part.loss.mul_(scale)
        return part

    def _sample_point(self, part: _Sums, flat: torch.Tensor) -> Point:
        """A point evaluated on the sample alone: the classes' gradients it estimates, and their sums (the data
        loss only: the regulariser's part is exact and needs no sample)."""
        part = self._scaled(part)
        return Point(loss=part.loss.sum(), grad=part.grad.sum(0), loss_class=part.loss, grad_class_sampled=part.grad)


class _Sums:
    """Loss and gradient sums of one pass, a row per class (float32 batch sums into float64 totals)."""

    def __init__(self, rows: int, K: int, layout: Layout, n_examples: int, device):
        self.n_examples = n_examples
        self.grad = torch.zeros(rows, K, dtype=torch.float64, device=device)
        self.loss = torch.zeros(rows, dtype=torch.float64, device=device)
        self._views = [list(param_views(self.grad[r], layout).values()) for r in range(rows)]

    def add(self, row: int, grads, loss_sum: torch.Tensor) -> None:
        torch._foreach_add_(self._views[row], grads)
        self.loss[row] += loss_sum.detach().double() / self.n_examples


def _sample_first(order: torch.Tensor, sorted_labels: np.ndarray, per_class: int, num_classes: int) -> tuple[torch.Tensor, np.ndarray]:
    """`order` (class-sorted) with a seeded sample of min(per_class, n_c) examples of each class first within its
    class, in their original order; and the sample's size per class. The same examples at every call."""
    rng = np.random.default_rng(0)
    new_order, sizes = [], np.zeros(num_classes, dtype=np.int64)
    classes, starts, counts = np.unique(sorted_labels, return_index=True, return_counts=True)
    for c, start, count in zip(classes, starts, counts):
        m = min(int(count), per_class)
        chosen = np.zeros(count, dtype=bool)
        chosen[rng.choice(count, m, replace=False)] = True
        members = order[start : start + count]
        new_order += [members[torch.from_numpy(chosen)], members[torch.from_numpy(~chosen)]]
        sizes[c] = m
    return torch.cat(new_order), sizes
