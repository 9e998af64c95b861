"""The whole-set loss L(theta) and its gradient, deterministic in theta, with per-class parts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from .data import Split
from .models import Layout, param_views, set_lca_mode


@dataclass
class Point:
    """Loss and gradient of one split at one theta, all float64."""

    loss: torch.Tensor  # () total, regulariser included
    grad: torch.Tensor  # (K,) total, regulariser included
    loss_class: torch.Tensor | None = None  # (C,) data loss of each class's examples / N; sums to the data loss
    grad_class: torch.Tensor | None = None  # (C, K)


class FullSetObjective:
    """Mean cross-entropy over a whole split, evaluated in fixed class-sorted chunks.

    Chunks hold examples of one class only, so the per-class losses and gradients fall out of the
    same pass. The chunking is fixed by (labels, chunk_size): batch-norm statistics, computed per
    chunk, therefore make L a deterministic function of theta."""

    def __init__(
        self,
        model: torch.nn.Module,
        layout: Layout,
        split: Split,
        num_classes: int,
        chunk_size: int,
        weight_decay: float = 0.0,
        per_class: bool = True,
    ):
        self.model = set_lca_mode(model)
        self.layout = layout
        self.num_classes = num_classes
        self.n_examples = len(split.y)
        self.weight_decay = weight_decay
        self.per_class = per_class
        order = torch.argsort(split.y.cpu(), stable=True).to(split.y.device)
        self.x = split.x[order].contiguous()
        self.y = split.y[order].contiguous()
        self.chunks = self._class_chunks(self.y.cpu().numpy(), chunk_size)
        self.passes = 0  # full-set passes done, for cost accounting

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
        flat = theta.detach().to(device=device, dtype=torch.float32).clone().requires_grad_(True)
        params = param_views(flat, self.layout)
        rows = self.num_classes if self.per_class else 1
        grad_acc = torch.zeros(rows, flat.numel(), dtype=torch.float64, device=device)
        loss_acc = torch.zeros(rows, dtype=torch.float64, device=device)
        for c, start, stop in self.chunks:
            logits = functional_call(self.model, params, (self.x[start:stop],))
            loss_sum = F.cross_entropy(logits, self.y[start:stop], reduction="sum")
            (g,) = torch.autograd.grad(loss_sum, flat)
            row = c if self.per_class else 0
            grad_acc[row] += g
            loss_acc[row] += loss_sum.detach()
        self.passes += 1
        grad_acc /= self.n_examples
        loss_acc /= self.n_examples
        loss, grad = loss_acc.sum(), grad_acc.sum(0)
        if self.weight_decay:
            theta64 = flat.detach().double()
            loss = loss + 0.5 * self.weight_decay * theta64.dot(theta64)
            grad = grad + self.weight_decay * theta64
        if self.per_class:
            return Point(loss=loss, grad=grad, loss_class=loss_acc, grad_class=grad_acc)
        return Point(loss=loss, grad=grad)
