"""Per-iteration LCA by composite Simpson quadrature of the gradient along the segment theta_t -> theta_t+1."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .objective import Point


@dataclass
class Endpoint:
    train: Point
    val: Point


@dataclass
class Segment:
    lca: torch.Tensor  # (K,) float64, training split
    lca_val: torch.Tensor  # (K,) float64, validation split
    lca_class: torch.Tensor  # (C, K) float64, per class of the training split (data loss only)
    first_order: float  # grad(theta_t) . delta, training split
    first_order_val: float
    num_splits: int  # Simpson panels used (1 = plain (1,4,1)/6 Simpson)
    error: float  # sum(lca) - (L(theta_t+1) - L(theta_t)), training split
    error_val: float
    interior_points: int  # full-set evaluations made inside the segment

    def converged(self, tolerance: float) -> bool:
        """Both splits within tolerance; a NaN error never counts as converged."""
        return abs(self.error) <= tolerance and abs(self.error_val) <= tolerance


def _payload(p: Endpoint) -> list[torch.Tensor]:
    return [p.train.grad, p.train.grad_class, p.val.grad]


def integrate_segment(
    evaluate: Callable[[torch.Tensor], Endpoint],
    theta0: torch.Tensor,
    theta1: torch.Tensor,
    start: Endpoint,
    end: Endpoint,
    tolerance: float,
    max_splits: int,
) -> Segment:
    """Composite Simpson with n panels (weights 1,4,2,4,...,4,1 over 6n), doubling n until the
    allocation matches the real loss change within `tolerance` on train and validation, or n would
    exceed `max_splits`. Doubling reuses every point: old interior points get weight 2, the n new
    midpoints weight 4, so only running sums are kept (memory independent of n). The sums are updated
    in place: the per-class payload is C x K float64, and temporaries of it cost as much as a small pass."""
    t0, t1 = theta0.double(), theta1.double()
    delta = (t1 - t0).to(start.train.grad.device)
    d_loss = float(end.train.loss - start.train.loss)
    d_loss_val = float(end.val.loss - start.val.loss)
    first_order = float(delta.dot(start.train.grad))
    first_order_val = float(delta.dot(start.val.grad))
    ends = [a + b for a, b in zip(_payload(start), _payload(end))]
    old_interior: list[torch.Tensor] | None = None
    n, evaluated = 1, 0
    while True:
        new_points: list[torch.Tensor] | None = None
        for j in range(n):
            alpha = (2 * j + 1) / (2 * n)
            payload = _payload(evaluate(((1 - alpha) * t0 + alpha * t1).to(theta0.dtype)))
            if new_points is None:
                new_points = payload  # fresh tensors of this point: safe to accumulate into
            else:
                for acc, value in zip(new_points, payload):
                    acc += value
            evaluated += 1
        allocation = []  # delta * mean gradient, per payload
        for e, m, o in zip(ends, new_points, old_interior or [None] * len(ends)):
            acc = e.clone()
            if o is not None:
                acc.add_(o, alpha=2.0)
            acc.add_(m, alpha=4.0).mul_(delta / (6 * n))
            allocation.append(acc)
        lca, lca_class, lca_val = allocation
        segment = Segment(
            lca=lca,
            lca_val=lca_val,
            lca_class=lca_class,
            first_order=first_order,
            first_order_val=first_order_val,
            num_splits=n,
            error=float(lca.sum()) - d_loss,
            error_val=float(lca_val.sum()) - d_loss_val,
            interior_points=evaluated,
        )
        if segment.converged(tolerance) or 2 * n > max_splits:
            return segment
        if old_interior is None:
            old_interior = new_points
        else:
            for o, m in zip(old_interior, new_points):
                o += m
        n *= 2
