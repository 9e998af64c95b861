"""Per-iteration LCA: the gradient averaged along the segment theta_t -> theta_t+1, by composite Simpson
quadrature (the paper's method) or trapezoid-first adaptive quadrature (Simpson only where needed)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: the grounding report and the analyses read the names below
    import torch

    from .objective import Point

SPLITS = ("train", "val")
QUADRATURES = ("simpson", "adaptive")
QUADRATURE_NAMES = {"simpson": "Simpson", "adaptive": "adaptive"}
TRAPEZOID = 0  # num_splits of an iteration that adaptive quadrature allocated by the corrected trapezoid (no interior point)
# per-iteration datasets that only adaptive quadrature writes: the plain trapezoid's error of each split, which
# it removed where it allocated that split by the trapezoid (num_splits, num_splits_val TRAPEZOID), what was left
# of the training split's after the midpoint sample's correction (NaN without a sample), and the validation
# split's own panel count (it may need its midpoint where the training split does not)
ADAPTIVE_SCALARS = ("trapezoid_error", "trapezoid_error_val", "trapezoid_residual")
ADAPTIVE_ONLY = ADAPTIVE_SCALARS + ("num_splits_val",)


def evaluations(num_splits):
    """Full-set evaluations inside each iteration's segment: 0 for the trapezoid, 2n - 1 for n Simpson panels
    (doubling reuses every point). Works on ints and on numpy arrays."""
    return 2 * num_splits - 1 + (num_splits == TRAPEZOID)


@dataclass
class Endpoint:
    train: Point | None  # None where the evaluator was asked for the other split only
    val: Point | None


@dataclass
class Segment:
    lca: torch.Tensor  # (K,) float64, training split
    lca_val: torch.Tensor  # (K,) float64, validation split
    lca_class: torch.Tensor  # (C, K) float64, per class of the training split (data loss only)
    first_order: float  # grad(theta_t) . delta, training split
    first_order_val: float
    num_splits: int  # Simpson panels used (1 = plain (1,4,1)/6 Simpson); TRAPEZOID (0): corrected trapezoid
    error: float  # sum(lca) - (L(theta_t+1) - L(theta_t)), training split
    error_val: float
    interior_points: int  # full-set evaluations of both splits inside the segment (not the validation-only ones)
    trapezoid_error: float  # sum of the plain trapezoid allocation - real loss change (known for every iteration)
    trapezoid_error_val: float
    num_splits_val: int | None = None  # the validation split's own rule where it differs (adaptive quadrature)
    trapezoid_residual: float = float("nan")  # the training error left after the sample's correction (adaptive)
    lca_val_class: torch.Tensor | None = None  # (E, K) per example group of the validation split (runs with example groups)

    def converged(self, tolerance: float) -> bool:
        """Both splits within tolerance; a NaN error never counts as converged."""
        return abs(self.error) <= tolerance and abs(self.error_val) <= tolerance


def _payload(p: Endpoint, splits=SPLITS) -> list[torch.Tensor]:
    """What is summed along the segment: the training gradient and its class rows, the validation gradient and
    its example groups' rows where it has them (runs with example groups)."""
    val = [p.val.grad] + ([p.val.grad_class] if p.val.grad_class is not None else []) if "val" in splits else []
    return ([p.train.grad, p.train.grad_class] if "train" in splits else []) + val


def _val_classes(allocation: list) -> torch.Tensor | None:
    """The validation split's group rows of an allocation in _payload's order ending with the validation split's,
    or None where it has none."""
    return allocation[-1] if len(allocation) in (2, 4) and allocation[-1].dim() == 2 else None


@dataclass(frozen=True)
class _Ends:
    """What both rules know from the two end points alone."""

    delta: torch.Tensor  # theta_t+1 - theta_t, float64, exact
    d_loss: float
    d_loss_val: float
    first_order: float
    first_order_val: float
    trapezoid_error: float
    trapezoid_error_val: float


def _ends(theta0: torch.Tensor, theta1: torch.Tensor, start: Endpoint, end: Endpoint) -> _Ends:
    delta = (theta1.double() - theta0.double()).to(start.train.grad.device)
    d_loss = float(end.train.loss - start.train.loss)
    d_loss_val = float(end.val.loss - start.val.loss)
    return _Ends(
        delta=delta,
        d_loss=d_loss,
        d_loss_val=d_loss_val,
        first_order=float(delta.dot(start.train.grad)),
        first_order_val=float(delta.dot(start.val.grad)),
        trapezoid_error=float(delta.dot(start.train.grad + end.train.grad)) / 2 - d_loss,
        trapezoid_error_val=float(delta.dot(start.val.grad + end.val.grad)) / 2 - d_loss_val,
    )


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
    return _simpson(evaluate, theta0, theta1, start, end, _ends(theta0, theta1, start, end), tolerance, max_splits)


def _simpson(evaluate, theta0, theta1, start, end, ends: _Ends, tolerance: float, max_splits: int) -> Segment:
    panels = _composite_simpson(evaluate, theta0, theta1, start, end, ends, tolerance, max_splits, SPLITS)
    lca, lca_class, lca_val = panels.allocation[:3]
    segment = _segment(ends, lca, lca_val, lca_class, num_splits=panels.n, interior_points=panels.evaluated)
    segment.lca_val_class = _val_classes(panels.allocation)
    return segment


@dataclass
class _Panels:
    allocation: list[torch.Tensor]  # delta * mean gradient of each payload entry (_payload order)
    n: int
    evaluated: int


def _composite_simpson(evaluate, theta0, theta1, start, end, ends: _Ends, tolerance, max_splits, splits) -> _Panels:
    """Composite Simpson over the payloads of `splits`, refined until each of their errors is within tolerance."""
    t0, t1, delta = theta0.double(), theta1.double(), ends.delta
    end_sums = [a + b for a, b in zip(_payload(start, splits), _payload(end, splits))]
    changes = {"train": ends.d_loss, "val": ends.d_loss_val}
    totals = {"train": 0, "val": 2 if "train" in splits else 0}  # where each split's total gradient is in the payload list
    old_interior: list[torch.Tensor] | None = None
    n, evaluated = 1, 0
    while True:
        new_points: list[torch.Tensor] | None = None
        for j in range(n):
            payload = _payload(evaluate(_point_at(t0, t1, (2 * j + 1) / (2 * n), theta0.dtype), splits), splits)
            if new_points is None:
                new_points = payload  # fresh tensors of this point: safe to accumulate into
            else:
                for acc, value in zip(new_points, payload):
                    acc += value
            evaluated += 1
        allocation = []  # delta * mean gradient, per payload
        for e, m, o in zip(end_sums, new_points, old_interior or [None] * len(end_sums)):
            acc = e.clone()
            if o is not None:
                acc.add_(o, alpha=2.0)
            acc.add_(m, alpha=4.0).mul_(delta / (6 * n))
            allocation.append(acc)
        errors = [float(allocation[totals[split]].sum()) - changes[split] for split in splits]
        if all(abs(e) <= tolerance for e in errors) or 2 * n > max_splits:  # a NaN error never converges
            return _Panels(allocation, n, evaluated)
        if old_interior is None:
            old_interior = new_points
        else:
            for o, m in zip(old_interior, new_points):
                o += m
        n *= 2


def _point_at(t0: torch.Tensor, t1: torch.Tensor, alpha: float, dtype) -> torch.Tensor:
    """theta at fraction alpha of the segment, computed in float64 from the float64 end points."""
    return ((1 - alpha) * t0 + alpha * t1).to(dtype)


def _midpoint(theta0: torch.Tensor, theta1: torch.Tensor) -> torch.Tensor:
    """The segment's midpoint, exactly the one Simpson's first panel evaluates."""
    return _point_at(theta0.double(), theta1.double(), 0.5, theta0.dtype)


def _segment(ends: _Ends, lca, lca_val, lca_class, num_splits: int, interior_points: int) -> Segment:
    return Segment(
        lca=lca,
        lca_val=lca_val,
        lca_class=lca_class,
        first_order=ends.first_order,
        first_order_val=ends.first_order_val,
        num_splits=num_splits,
        error=float(lca.sum()) - ends.d_loss,
        error_val=float(lca_val.sum()) - ends.d_loss_val,
        interior_points=interior_points,
        trapezoid_error=ends.trapezoid_error,
        trapezoid_error_val=ends.trapezoid_error_val,
    )


def _remove_error(allocation: torch.Tensor, error: torch.Tensor) -> bool:
    """Subtract each row's known `error` from it in proportion to the magnitude of its entries, in place: the
    row then sums to the real loss change, an entry's share of the correction is its share of the row's total
    |LCA|, and no entry of the row changes sign. Done only if every row's |error| is below its total |LCA| (or
    both are 0: nothing moved); returns whether it was done."""
    import torch

    magnitude = allocation.abs()
    total = magnitude.sum(-1, keepdim=True)
    error = error.reshape(total.shape)
    if not bool(((error.abs() < total) | ((error == 0) & (total == 0))).all()):
        return False
    allocation.sub_(magnitude.mul_(torch.where(total > 0, error / total, 0.0)))
    return True


def _trapezoid_train(start: Endpoint, end: Endpoint, ends: _Ends) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The training split's LCA from the end-point gradients alone, delta * (g_t + g_t+1) / 2, with the rule's
    error removed: (lca, lca_class), or None where an error is too large to remove (see _remove_error).

    The real loss change of the step is known (the loss is evaluated at both ends), so the trapezoid's error is
    known exactly, for every class from the per-class losses. Each class row gives up its own error in proportion
    to |LCA|; the training row is the class rows plus the regulariser's part, whose gradient is linear in theta,
    so that the trapezoid is exact for it. Every row therefore sums to its real loss change. The class rows keep
    their signs; an entry of the training row, their sum, can change sign where classes pull it opposite ways.
    How well this places the error on single parameters is measured against Simpson (docs/quadrature.md)."""
    return _trapezoid_rows(start.train, end.train, ends.delta)


def _trapezoid_rows(start: Point, end: Point, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """One split's corrected trapezoid by class (or example group) rows: see _trapezoid_train."""
    half = delta / 2
    lca_class = (start.grad_class + end.grad_class).mul_(half)
    regulariser = (start.grad + end.grad).mul_(half).sub_(lca_class.sum(0))
    class_error = lca_class.sum(-1) - (end.loss_class - start.loss_class)
    if not _remove_error(lca_class, class_error):
        return None
    return regulariser.add_(lca_class.sum(0)), lca_class


def _sampled_trapezoid_train(start: Endpoint, end: Endpoint, middle: Point, ends: _Ends, rows: torch.Tensor | None) -> tuple[tuple | None, float]:
    """The training split's LCA from the end-point gradients and the sample's midpoint: ((lca, lca_class), or
    None where an error is too large to remove (see _remove_error); the error left after the sample's correction).

    Simpson's rule is the trapezoid plus (2/3) delta * (g_mid - (g_t + g_t+1) / 2) for every parameter. Each
    class's sample (lca.midpoint_sample of its examples, the same at every point) estimates that correction
    without bias, from the sample's gradients at both ends (which every full pass gives) and at the midpoint
    (a pass over the sample alone). Entry by entry the estimate is noisy (it would flip the sign of small
    entries), so it is summed over each row of each tensor (`rows`: Layout.row_index, a unit's incoming weights,
    one bias) and each row's total is spread over its entries in proportion to |LCA|: per-row, per-neuron and
    per-tensor totals follow Simpson's without bias. What the estimate leaves of each class's exactly known
    error is then removed in proportion to |LCA|, as `_trapezoid_train` does with the whole error, so every row
    sums to its real loss change; the training row is the class rows plus the regulariser's exact part."""
    import torch

    half = ends.delta / 2
    lca_class = (start.train.grad_class + end.train.grad_class).mul_(half)
    regulariser = (start.train.grad + end.train.grad).mul_(half).sub_(lca_class.sum(0))
    if rows is None:  # every entry its own row
        rows = torch.arange(lca_class.shape[1], device=lca_class.device)
    correction = (start.train.grad_class_sampled + end.train.grad_class_sampled).mul_(-0.5).add_(middle.grad_class_sampled)
    correction.mul_(ends.delta * (2 / 3))
    magnitude = lca_class.abs()
    n_rows = int(rows[-1]) + 1 if len(rows) else 0
    row_correction = correction.new_zeros(len(lca_class), n_rows).index_add_(1, rows, correction)
    row_magnitude = correction.new_zeros(len(lca_class), n_rows).index_add_(1, rows, magnitude)
    share = torch.where(row_magnitude > 0, row_correction / row_magnitude, 0.0)
    lca_class.add_(magnitude.mul_(share[:, rows]))
    class_error = lca_class.sum(-1) - (end.train.loss_class - start.train.loss_class)
    residual = float(class_error.sum())
    if not _remove_error(lca_class, class_error):
        return None, residual
    return (regulariser.add_(lca_class.sum(0)), lca_class), residual


def _trapezoid_val(start: Endpoint, end: Endpoint, ends: _Ends) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """The validation split's corrected trapezoid, (lca_val, its example groups' rows or None), or None (see
    _remove_error): one row, or by example group as the training split's is by class (runs with example groups)."""
    if start.val.grad_class is not None:
        return _trapezoid_rows(start.val, end.val, ends.delta)
    lca_val = (start.val.grad + end.val.grad).mul_(ends.delta / 2)
    return (lca_val, None) if _remove_error(lca_val, lca_val.sum() - ends.d_loss_val) else None


Quadrature = Callable[..., Segment]  # (evaluate, theta_t, theta_t+1, end point t, end point t+1) -> Segment


def make_quadrature(lca: dict, rows: torch.Tensor | None = None) -> Quadrature:
    """The rule of `lca.quadrature`: `simpson` (the paper's) or `adaptive`, which takes the corrected trapezoid for
    each split whose plain trapezoid error is within `lca.trapezoid_tolerance`. With `lca.midpoint_sample` > 0 the
    training split is then corrected by its sample (see _sampled_trapezoid_train; `rows` is the layout's
    row_index), unless what the sample leaves of the error exceeds `lca.tolerance` (a sample too small or unlucky
    for this step). Where the training split's is not, both splits are computed exactly
    as `simpson` does; where only the validation split's is not, that split alone is computed by Simpson and
    refined."""
    tolerance, max_splits = lca["tolerance"], lca["max_splits"]

    if lca["quadrature"] == "simpson":
        return lambda evaluate, theta0, theta1, start, end: integrate_segment(
            evaluate, theta0, theta1, start, end, tolerance, max_splits
        )
    accept, sampled = lca["trapezoid_tolerance"], lca.get("midpoint_sample", 0) > 0  # absent where 0 (settings.LCA)

    def train_without_midpoint(evaluate, theta0, theta1, start, end, ends: _Ends) -> tuple[tuple | None, float]:
        """The training split's (lca, lca_class) without its full midpoint, or None where it needs it; and the
        error left after the sample's correction (NaN without a sample)."""
        if not sampled:
            return (_trapezoid_train(start, end, ends) if abs(ends.trapezoid_error) <= accept else None), float("nan")
        if not abs(ends.trapezoid_error) <= accept:
            return None, float("nan")
        middle = evaluate(_midpoint(theta0, theta1), ("sample",)).train
        train, residual = _sampled_trapezoid_train(start, end, middle, ends, rows)
        return (train if abs(residual) <= tolerance else None), residual

    def adaptive(evaluate, theta0, theta1, start, end) -> Segment:
        ends = _ends(theta0, theta1, start, end)
        train, residual = train_without_midpoint(evaluate, theta0, theta1, start, end, ends)
        if train is None:  # the training split needs its midpoint: both splits as Simpson does
            segment = _simpson(evaluate, theta0, theta1, start, end, ends, tolerance, max_splits)
            segment.trapezoid_residual = residual
            return segment
        val = _trapezoid_val(start, end, ends) if abs(ends.trapezoid_error_val) <= accept else None
        num_splits_val = TRAPEZOID
        if val is None:  # only the validation split needs its midpoint: that split alone (~1/10 of the cost)
            panels = _composite_simpson(evaluate, theta0, theta1, start, end, ends, tolerance, max_splits, ("val",))
            val, num_splits_val = (panels.allocation[0], _val_classes(panels.allocation)), panels.n
        segment = _segment(ends, train[0], val[0], train[1], num_splits=TRAPEZOID, interior_points=0)
        segment.num_splits_val, segment.trapezoid_residual, segment.lca_val_class = num_splits_val, residual, val[1]
        return segment

    return adaptive
