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


class FullSetObjective:
    """The mean of a loss (cross-entropy unless `loss` says otherwise, see lcaflow.losses) over a whole
    split, evaluated in fixed class-sorted chunks.

    Chunks hold examples of one class only (by `labels`, the targets unless given; all zeros for a loss
    without classes, with num_classes 1), so the per-class losses and gradients fall out of the same pass. The chunking is fixed by (labels, chunk_size): batch-norm statistics, computed per
    chunk, therefore make L a deterministic function of theta. `speed` only changes how a chunk is
    computed: split into compute batches (not for batch-norm models, whose statistics need the whole
    chunk) and in channels-last layout."""

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
        order = torch.argsort(labels.cpu(), stable=True).to(split.y.device)
        self.x = split.x[order].contiguous()
        self.y = split.y[order].contiguous()
        self.chunks = self._class_chunks(labels.cpu()[order.cpu()].numpy(), chunk_size)
        self.passes = 0  # full-set passes done, for cost accounting
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
                (c, a, min(a + (self.compute_batch or stop - start), stop))
                for c, start, stop in self.chunks
                for a in range(start, stop, self.compute_batch or stop - start)
            ]
        else:  # no per-class parts and no batch statistics: batches may span classes (500-example class
            # batches of a 5,000-example validation split run at half the speed of 5,000-example ones)
            size = min(self.compute_batch or chunk_size, chunk_size)
            self.batches = [(0, a, min(a + size, self.n_examples)) for a in range(0, self.n_examples, size)]

    @staticmethod
    def _class_chunks(y_sorted: np.ndarray, chunk_size: int) -> list[tuple[int, int, int]]:
        """(class, start, stop) slices; a class with n examples gets ceil(n / chunk_size) near-equal chunks."""
        chunks = []
        classes, starts, counts = np.unique(y_sorted, return_index=True, return_counts=True)
        for c, start, count in zip(classes, starts, counts):
            bounds = np.linspace(start, start + count, -(-count // chunk_size) + 1).round().astype(int)
            chunks.extend((int(c), int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]))
        return chunks

    def __call__(self, theta: torch.Tensor) -> Point:
        device = self.x.device
        flat = theta.detach().to(device=device, dtype=torch.float32)
        # the module's own parameters as leaves (no functional_call): what a plain training loop runs
        with torch.no_grad():
            torch._foreach_copy_(self.params, list(param_views(flat, self.layout).values()))
        rows = self.num_classes if self.per_class else 1
        grad_acc = torch.zeros(rows, flat.numel(), dtype=torch.float64, device=device)
        loss_acc = torch.zeros(rows, dtype=torch.float64, device=device)
        row_views = [list(param_views(grad_acc[r], self.layout).values()) for r in range(rows)]
        for c, start, stop in self.batches:
            loss_sum = self.loss.total(self.model(self.x[start:stop]), self.y[start:stop])
            # the batch's share of the mean gradient (scaled before the backward: no pass over C x K afterwards)
            grads = torch.autograd.grad(loss_sum / self.n_examples, self.params)
            row = c if self.per_class else 0
            torch._foreach_add_(row_views[row], grads)  # float32 batch sums into float64 totals
            loss_acc[row] += loss_sum.detach().double() / self.n_examples
        self.passes += 1
        loss, grad = loss_acc.sum(), grad_acc.sum(0)
        if self.weight_decay:
            theta64 = flat.double()
            loss = loss + 0.5 * self.weight_decay * theta64.dot(theta64)
            grad = grad + self.weight_decay * theta64
        if self.per_class:
            return Point(loss=loss, grad=grad, loss_class=loss_acc, grad_class=grad_acc)
        return Point(loss=loss, grad=grad)
