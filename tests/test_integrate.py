"""Composite Simpson on losses whose answer is known in closed form."""

import math

import pytest
import torch

from lcaflow.integrate import SPLITS, TRAPEZOID, Endpoint, integrate_segment, make_quadrature
from lcaflow.objective import Point


def _grad(fn, theta):
    theta = theta.double().detach().requires_grad_(True)
    values = fn(theta)
    (grad,) = torch.autograd.grad(values.sum(), theta)
    return values.detach(), grad


def make_evaluator(loss_fn, n_classes=2, val_fn=None):
    """Endpoint of an analytic loss; 'class c' owns the coordinates i with i % n_classes == c. Its midpoint
    sample is the whole class: the sample's estimate of each class gradient is exact."""
    calls = []

    def evaluate(theta, splits=SPLITS):
        """Both splits are computed (they are cheap here); `calls` records which were asked for."""
        theta = theta.double().detach().requires_grad_(True)
        per_coord = loss_fn(theta)
        (grad,) = torch.autograd.grad(per_coord.sum(), theta)
        owner = torch.arange(theta.numel()) % n_classes
        grad_class = torch.stack([torch.where(owner == c, grad, 0.0) for c in range(n_classes)])
        loss_class = torch.stack([per_coord.detach()[owner == c].sum() for c in range(n_classes)])
        calls.append((theta.detach(), tuple(splits)))
        point = Point(loss=per_coord.detach().sum(), grad=grad, loss_class=loss_class, grad_class=grad_class, grad_class_sampled=grad_class)
        if splits == ("sample",):
            return Endpoint(train=Point(loss=point.loss, grad=grad, loss_class=loss_class, grad_class_sampled=grad_class), val=None)
        if val_fn is None:
            val = Point(loss=point.loss * 0.5, grad=grad * 0.5)
        else:
            val_values, val_grad = _grad(val_fn, theta)
            val = Point(loss=val_values.sum(), grad=val_grad)
        return Endpoint(train=point if "train" in splits else None, val=val if "val" in splits else None)

    return evaluate, calls


def segment(loss_fn, theta0, theta1, tol, max_splits, val_fn=None, dtype=torch.float64):
    evaluate, calls = make_evaluator(loss_fn, val_fn=val_fn)
    theta0, theta1 = theta0.to(dtype), theta1.to(dtype)
    start, end = evaluate(theta0), evaluate(theta1)
    calls.clear()
    return integrate_segment(evaluate, theta0, theta1, start, end, tol, max_splits), calls


def test_simpson_is_exact_per_component_for_a_quadratic():
    torch.manual_seed(0)
    K = 50
    M = torch.randn(K, K, dtype=torch.float64)
    A = M @ M.T / K
    b = torch.randn(K, dtype=torch.float64)
    loss_fn = lambda th: 0.5 * th * (A @ th) + b * th  # per-coordinate terms summing to 0.5 th'A th + b'th
    theta0, theta1 = torch.randn(K).double(), torch.randn(K).double()
    seg, calls = segment(loss_fn, theta0, theta1, tol=1e-12, max_splits=32)
    delta = theta1 - theta0
    # For a quadratic the gradient is linear along the segment: its mean is the gradient at the midpoint.
    closed_form = delta * (A @ (0.5 * (theta0 + theta1)) + b)
    assert seg.num_splits == 1 and len(calls) == 1
    assert torch.allclose(seg.lca, closed_form, rtol=1e-6, atol=1e-9)
    assert abs(seg.error) < 1e-9
    # first order uses the gradient at theta0 only and misses the curvature term 0.5 d'A d
    assert seg.first_order == pytest.approx(float(delta @ (A @ theta0 + b)), rel=1e-6)


def test_refinement_triggers_and_reduces_the_error_on_a_curved_loss():
    K = 20
    w = torch.linspace(1.0, 3.0, K, dtype=torch.float64)
    loss_fn = lambda th: torch.cos(w * th)
    theta0 = torch.zeros(K)
    theta1 = torch.full((K,), 1.0)
    plain, _ = segment(loss_fn, theta0, theta1, tol=1e-6, max_splits=1)
    refined, calls = segment(loss_fn, theta0, theta1, tol=1e-6, max_splits=32)
    assert abs(plain.error) > 1e-3, "the test loss must defeat plain Simpson"
    assert refined.num_splits > 1
    assert abs(refined.error) <= 1e-6 < abs(plain.error)
    # doubling reuses points: n panels need 2n - 1 interior evaluations in total
    assert refined.interior_points == len(calls) == 2 * refined.num_splits - 1
    exact = torch.cos(w * 1.0) - 1.0  # each component integrates to its own loss change
    assert torch.allclose(refined.lca, exact, atol=1e-6)


def test_a_step_that_misses_at_the_cap_is_reported_not_hidden():
    K = 5
    loss_fn = lambda th: torch.cos(4 * th)
    seg, _ = segment(loss_fn, torch.zeros(K), torch.full((K,), 3.0), tol=1e-12, max_splits=4)
    assert seg.num_splits == 4
    assert abs(seg.error) > 1e-12


def test_per_class_allocations_sum_to_the_total():
    K = 12
    loss_fn = lambda th: torch.sin(th) * th
    seg, _ = segment(loss_fn, torch.zeros(K), torch.linspace(0, 1.5, K), tol=1e-8, max_splits=32)
    assert torch.allclose(seg.lca_class.sum(0), seg.lca, atol=1e-12)
    assert torch.allclose(seg.lca_val, 0.5 * seg.lca, atol=1e-12)


def test_composite_weights_match_textbook_composite_simpson():
    # integrate a scalar function through a 1-parameter 'loss' and compare with scipy-free closed form
    K = 1
    loss_fn = lambda th: torch.exp(th)
    seg, _ = segment(loss_fn, torch.zeros(K), torch.ones(K), tol=1e-14, max_splits=4)
    n = seg.num_splits
    h = 1.0 / (2 * n)
    xs = [i * h for i in range(2 * n + 1)]
    weights = [1] + [4 if i % 2 else 2 for i in range(1, 2 * n)] + [1]
    textbook = sum(wt * math.exp(x) for wt, x in zip(weights, xs)) * h / 3
    assert float(seg.lca[0]) == pytest.approx(textbook, rel=1e-12)


def test_validation_error_alone_triggers_refinement():
    K = 10
    train_fn = lambda th: 0.5 * th**2  # plain Simpson is exact here
    val_fn = lambda th: torch.cos(3 * th)
    seg, _ = segment(train_fn, torch.zeros(K), torch.ones(K), tol=1e-6, max_splits=32, val_fn=val_fn)
    assert seg.num_splits > 1
    assert abs(seg.error_val) <= 1e-6 and abs(seg.error) < 1e-12
    assert torch.allclose(seg.lca_val, torch.cos(torch.full((K,), 3.0, dtype=torch.float64)) - 1, atol=1e-6)


def test_float32_trajectories_stay_within_float32_rounding():
    torch.manual_seed(1)
    K = 40
    b = torch.randn(K, dtype=torch.float64)
    loss_fn = lambda th: 0.5 * th**2 + b * th
    theta0, theta1 = torch.randn(K), torch.randn(K)  # float32, as stored in trajectory.h5
    seg, _ = segment(loss_fn, theta0, theta1, tol=1e-5, max_splits=32, dtype=torch.float32)
    t0, t1 = theta0.double(), theta1.double()
    assert seg.num_splits == 1 and abs(seg.error) < 1e-5
    assert torch.allclose(seg.lca, (t1 - t0) * (0.5 * (t0 + t1) + b), atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# Adaptive quadrature: the trapezoid from the end points where its (exactly known) error is small, Simpson elsewhere


def adaptive_segment(loss_fn, theta0, theta1, trapezoid_tolerance, tol=1e-6, max_splits=32, val_fn=None, sample=0.0):
    evaluate, calls = make_evaluator(loss_fn, val_fn=val_fn)
    theta0, theta1 = theta0.double(), theta1.double()
    start, end = evaluate(theta0), evaluate(theta1)
    calls.clear()
    lca = {"quadrature": "adaptive", "tolerance": tol, "max_splits": max_splits, "trapezoid_tolerance": trapezoid_tolerance}
    rule = make_quadrature(dict(lca, midpoint_sample=sample))
    return rule(evaluate, theta0, theta1, start, end), calls, (start, end)


def test_adaptive_takes_the_trapezoid_without_evaluating_where_it_is_exact():
    torch.manual_seed(2)
    K = 30
    b = torch.randn(K, dtype=torch.float64)
    loss_fn = lambda th: 0.5 * th**2 + b * th  # gradient linear along any segment: the trapezoid is exact
    theta0, theta1 = torch.randn(K), torch.randn(K)
    seg, calls, _ = adaptive_segment(loss_fn, theta0, theta1, trapezoid_tolerance=1e-9)
    t0, t1 = theta0.double(), theta1.double()
    assert seg.num_splits == TRAPEZOID and seg.interior_points == 0 and calls == []
    assert abs(seg.trapezoid_error) < 1e-12
    assert torch.allclose(seg.lca, (t1 - t0) * (0.5 * (t0 + t1) + b), atol=1e-12)


def test_adaptive_falls_back_to_the_same_simpson_where_the_trapezoid_misses():
    K = 20
    w = torch.linspace(1.0, 3.0, K, dtype=torch.float64)
    loss_fn = lambda th: torch.cos(w * th)
    theta0, theta1 = torch.zeros(K), torch.full((K,), 1.0)
    seg, calls, _ = adaptive_segment(loss_fn, theta0, theta1, trapezoid_tolerance=1e-3)
    simpson, _ = segment(loss_fn, theta0, theta1, tol=1e-6, max_splits=32)
    assert abs(seg.trapezoid_error) > 1e-3 and seg.num_splits == simpson.num_splits > 1
    assert len(calls) == seg.interior_points == simpson.interior_points
    for key in ("lca", "lca_val", "lca_class"):
        assert torch.equal(getattr(seg, key), getattr(simpson, key)), key
    assert seg.trapezoid_error == simpson.trapezoid_error


def test_accepted_trapezoid_rows_sum_to_their_real_loss_changes_without_sign_changes():
    K = 40
    w = torch.linspace(0.5, 1.5, K, dtype=torch.float64)
    loss_fn = lambda th: torch.cos(w * th) + 0.1 * th**2
    val_fn = lambda th: torch.sin(w * th)
    theta0, theta1 = torch.linspace(-0.3, 0.3, K), torch.linspace(-0.25, 0.4, K)
    seg, calls, (start, end) = adaptive_segment(loss_fn, theta0, theta1, trapezoid_tolerance=1e-2, val_fn=val_fn)
    assert seg.num_splits == TRAPEZOID and calls == []
    assert 1e-6 < abs(seg.trapezoid_error) <= 1e-2, "the test step must leave the trapezoid a visible error to remove"
    delta = theta1.double() - theta0.double()
    plain = delta * (start.train.grad + end.train.grad) / 2
    plain_val = delta * (start.val.grad + end.val.grad) / 2
    assert float(plain.sum() - (end.train.loss - start.train.loss)) == pytest.approx(seg.trapezoid_error, rel=1e-12)
    # every row now sums to its own real loss change: training, validation and each class
    assert abs(seg.error) < 1e-12 and abs(seg.error_val) < 1e-12
    assert torch.allclose(seg.lca_class.sum(1), end.train.loss_class - start.train.loss_class, atol=1e-12)
    assert torch.allclose(seg.lca_class.sum(0), seg.lca, atol=1e-12)
    # the error is taken from each entry in proportion to its magnitude: no sign changes, zeros stay zero
    assert torch.equal(torch.sign(seg.lca), torch.sign(plain)) and torch.equal(torch.sign(seg.lca_val), torch.sign(plain_val))
    ratio = (seg.lca_val - plain_val) / plain_val.abs()
    assert torch.allclose(ratio, ratio[0].expand_as(ratio), atol=1e-12)
    # and it is closer to the exact per-parameter integral than the plain trapezoid
    exact = torch.cos(w * theta1.double()) - torch.cos(w * theta0.double()) + 0.1 * (theta1.double() ** 2 - theta0.double() ** 2)
    assert (seg.lca - exact).abs().sum() < (plain - exact).abs().sum()


def test_an_error_larger_than_the_allocation_is_not_redistributed():
    K = 6
    loss_fn = lambda th: torch.cos(3 * th)
    # a step over almost a full period: the trapezoid's error exceeds the whole |allocation|, so removing it in
    # proportion to |LCA| would flip signs; within the (loose) tolerance, the midpoint is evaluated all the same
    theta0, theta1 = torch.zeros(K), torch.full((K,), 2 * math.pi / 3 * 0.97)
    seg, calls, (start, end) = adaptive_segment(loss_fn, theta0, theta1, trapezoid_tolerance=10.0)
    plain = (theta1 - theta0).double() * (start.train.grad + end.train.grad) / 2
    assert abs(seg.trapezoid_error) <= 10.0 and abs(seg.trapezoid_error) > plain.abs().sum()
    assert seg.num_splits >= 1 and len(calls) == seg.interior_points > 0


def test_only_the_validation_split_is_evaluated_where_only_it_needs_the_midpoint():
    K = 10
    train_fn = lambda th: 0.5 * th**2  # the trapezoid is exact for the training split
    val_fn = lambda th: torch.cos(3 * th)  # but misses on the validation split
    seg, calls, _ = adaptive_segment(train_fn, torch.zeros(K), torch.ones(K), trapezoid_tolerance=1e-3, val_fn=val_fn)
    assert seg.num_splits == TRAPEZOID and seg.num_splits_val > 1 and abs(seg.error_val) <= 1e-6
    assert calls and all(splits == ("val",) for _, splits in calls)
    assert torch.allclose(seg.lca_val, torch.cos(torch.full((K,), 3.0, dtype=torch.float64)) - 1, atol=1e-6)
    assert torch.allclose(seg.lca, torch.full((K,), 0.5, dtype=torch.float64), atol=1e-12)


def test_trapezoid_with_overlapping_classes_a_regulariser_and_a_frozen_parameter():
    """Classes share every parameter and weight decay belongs to no class: each class row sums to its own loss
    change and keeps its signs, the training row is the class rows plus the regulariser's exact trapezoid, and a
    parameter that did not move gets exactly 0."""
    torch.manual_seed(3)
    K, C, wd = 12, 3, 0.01
    a, b = torch.rand(C, K, dtype=torch.float64), 0.5 + torch.rand(C, K, dtype=torch.float64)

    def evaluate(theta, splits=SPLITS):
        theta = theta.double().detach().requires_grad_(True)
        per_class = (a * torch.cos(b * theta)).sum(1)
        grad_class = torch.stack([torch.autograd.grad(per_class[c], theta, retain_graph=True)[0] for c in range(C)])
        reg = 0.5 * wd * theta.detach().dot(theta.detach())
        train = Point(
            loss=per_class.detach().sum() + reg,
            grad=grad_class.sum(0) + wd * theta.detach(),
            loss_class=per_class.detach(),
            grad_class=grad_class,
        )
        return Endpoint(train=train, val=Point(loss=train.loss.clone(), grad=train.grad.clone()))

    theta0 = torch.linspace(-0.4, 0.4, K, dtype=torch.float64)
    theta1 = theta0 + torch.linspace(0.05, 0.12, K, dtype=torch.float64)
    theta1[4] = theta0[4]  # a frozen parameter
    start, end = evaluate(theta0), evaluate(theta1)
    rule = make_quadrature({"quadrature": "adaptive", "tolerance": 1e-6, "max_splits": 32, "trapezoid_tolerance": 1e-2, "midpoint_sample": 0})
    seg = rule(evaluate, theta0, theta1, start, end)
    assert seg.num_splits == TRAPEZOID and abs(seg.trapezoid_error) > 1e-7
    delta = theta1 - theta0
    plain_class = delta * (start.train.grad_class + end.train.grad_class) / 2
    assert torch.allclose(seg.lca_class.sum(1), end.train.loss_class - start.train.loss_class, atol=1e-13)
    assert torch.equal(torch.sign(seg.lca_class), torch.sign(plain_class))
    regulariser = delta * wd * (theta0 + theta1) / 2
    assert torch.allclose(seg.lca, seg.lca_class.sum(0) + regulariser, atol=1e-15)
    assert abs(seg.error) < 1e-13 and abs(seg.error_val) < 1e-13
    assert seg.lca[4] == 0 and torch.all(seg.lca_class[:, 4] == 0) and seg.lca_val[4] == 0


def test_both_splits_are_evaluated_where_the_training_split_needs_the_midpoint():
    K = 10
    train_fn = lambda th: torch.cos(3 * th)  # the trapezoid misses on the training split
    val_fn = lambda th: 0.5 * th**2  # but is exact on the validation split
    seg, calls, _ = adaptive_segment(train_fn, torch.zeros(K), torch.ones(K), trapezoid_tolerance=1e-3, val_fn=val_fn)
    assert seg.num_splits > 1 and seg.num_splits_val is None  # Simpson for both, refined together
    assert calls and all(splits == SPLITS for _, splits in calls)


def test_the_midpoint_sample_puts_the_trapezoid_error_where_simpson_puts_it():
    """With a sample that estimates every class's midpoint gradient exactly (here: the whole class), an accepted
    iteration is Simpson's one-panel rule, parameter by parameter, less Simpson's own small error (removed by
    |LCA|); every row sums to its real loss change. One sample-only evaluation, at Simpson's midpoint."""
    K = 40
    w = torch.linspace(0.5, 1.5, K, dtype=torch.float64)
    loss_fn = lambda th: torch.cos(w * th) + 0.1 * th**2
    theta0, theta1 = torch.linspace(-0.3, 0.3, K), torch.linspace(-0.25, 0.4, K)
    seg, calls, (start, end) = adaptive_segment(loss_fn, theta0, theta1, trapezoid_tolerance=1e-2, tol=1e-2, sample=256)
    one_panel, _ = segment(loss_fn, theta0, theta1, tol=1.0, max_splits=1)
    assert seg.num_splits == TRAPEZOID and [splits for _, splits in calls] == [("sample",)]
    assert torch.equal(calls[0][0], (theta0.double() + theta1.double()) / 2)
    assert abs(seg.trapezoid_residual) < 1e-3 * abs(seg.trapezoid_error)  # the sample's correction took the rest
    assert abs(seg.error) < 1e-12 and torch.allclose(seg.lca_class.sum(1), end.train.loss_class - start.train.loss_class, atol=1e-12)
    assert torch.allclose(seg.lca, one_panel.lca, rtol=1e-3, atol=0)
    exact = torch.cos(w * theta1.double()) - torch.cos(w * theta0.double()) + 0.1 * (theta1.double() ** 2 - theta0.double() ** 2)
    unsampled, _, _ = adaptive_segment(loss_fn, theta0, theta1, trapezoid_tolerance=1e-2, tol=1e-2)
    assert (seg.lca - exact).abs().max() < 0.01 * (unsampled.lca - exact).abs().max()


def test_the_midpoint_sample_is_not_trusted_with_a_curved_step_or_a_large_remaining_error():
    K = 20
    w = torch.linspace(1.0, 3.0, K, dtype=torch.float64)
    loss_fn = lambda th: torch.cos(w * th)
    # a long step: the trapezoid misses by more than trapezoid_tolerance, so Simpson runs without asking the sample
    seg, calls, _ = adaptive_segment(loss_fn, torch.zeros(K), torch.ones(K), trapezoid_tolerance=1e-2, tol=1e-3, sample=256)
    simpson, _ = segment(loss_fn, torch.zeros(K), torch.ones(K), tol=1e-3, max_splits=32)
    assert abs(seg.trapezoid_error) > 1e-2 and math.isnan(seg.trapezoid_residual) and seg.num_splits == simpson.num_splits > 1
    assert len(calls) == simpson.interior_points and ("sample",) not in [splits for _, splits in calls]
    assert torch.equal(seg.lca, simpson.lca)
    # a shorter one whose correction leaves more than lca.tolerance: the sample was asked, then Simpson ran
    theta1 = torch.full((K,), 0.3)
    seg, calls, _ = adaptive_segment(loss_fn, torch.zeros(K), theta1, trapezoid_tolerance=1.0, tol=1e-7, sample=256)
    simpson, _ = segment(loss_fn, torch.zeros(K), theta1, tol=1e-7, max_splits=32)
    assert abs(seg.trapezoid_error) <= 1.0 and abs(seg.trapezoid_residual) > 1e-7 and seg.num_splits == simpson.num_splits
    assert [splits for _, splits in calls][0] == ("sample",) and len(calls) == 1 + simpson.interior_points
    assert torch.equal(seg.lca, simpson.lca)
