"""The full-set objective: per-class parts, chunking invariance, agreement with a direct computation."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lcaflow.data import Split
from lcaflow.models import build_model, flat_params, layout_of, set_lca_mode
from lcaflow.objective import CPU_CONV_COMPUTE_BATCH, FullSetObjective, SpeedSettings, resolve_speed


def _problem(n=230, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    model = build_model("mnist_fc", (1, 28, 28), 10, seed=1)
    return model, Split(x=x, y=y)


def test_per_class_losses_and_gradients_sum_to_the_total_and_match_autograd():
    model, split = _problem()
    layout = layout_of(model)
    objective = FullSetObjective(model, layout, split, 10, chunk_size=17)
    theta = flat_params(model, layout)
    point = objective(theta)
    assert torch.allclose(point.loss_class.sum(), point.loss)
    assert torch.allclose(point.grad_class.sum(0), point.grad)
    model64 = build_model("mnist_fc", (1, 28, 28), 10, seed=1).double()
    loss = F.cross_entropy(model64(split.x.double()), split.y)
    loss.backward()
    direct = torch.cat([p.grad.reshape(-1) for p in model64.parameters()])
    assert abs(float(point.loss) - loss.item()) < 1e-6
    assert torch.allclose(point.grad, direct, atol=1e-7)
    for c in range(10):  # class c's part is the loss of its examples divided by the whole N
        mask = split.y == c
        part = F.cross_entropy(model64(split.x[mask].double()), split.y[mask], reduction="sum") / len(split.y)
        assert abs(float(point.loss_class[c]) - part.item()) < 1e-6


def test_chunk_size_does_not_change_the_loss_of_a_network_without_batch_norm():
    model, split = _problem()
    layout = layout_of(model)
    theta = flat_params(model, layout)
    a = FullSetObjective(model, layout, split, 10, chunk_size=7)(theta)
    b = FullSetObjective(model, layout, split, 10, chunk_size=10_000)(theta)
    assert abs(float(a.loss - b.loss)) < 1e-7
    # float32 sums inside a chunk, float64 across chunks: agreement to float32 precision of the largest entry
    assert float((a.grad - b.grad).abs().max()) < 1e-6 * float(b.grad.abs().max())


def test_class_chunks_are_pure_and_cover_every_example_once():
    y = np.sort(np.random.default_rng(0).integers(0, 10, 1000))
    for sample_sizes in (None, np.full(10, 7)):  # with a midpoint sample, each class's first 7 are its own chunk
        chunks = FullSetObjective._class_chunks(y, chunk_size=33, sample_sizes=sample_sizes)
        covered = np.concatenate([np.arange(a, b) for _, a, b, _ in chunks])
        assert np.array_equal(covered, np.arange(1000))
        assert all((y[a:b] == c).all() and b - a <= 33 for c, a, b, _ in chunks)
        assert sum(b - a for _, a, b, sampled in chunks if sampled) == (0 if sample_sizes is None else 70)


def test_weight_decay_is_part_of_the_analysed_loss():
    model, split = _problem(n=50)
    layout = layout_of(model)
    theta = flat_params(model, layout)
    plain = FullSetObjective(model, layout, split, 10, 64)(theta)
    decayed = FullSetObjective(model, layout, split, 10, 64, weight_decay=0.01)(theta)
    t64 = theta.double()
    assert abs(float(decayed.loss - plain.loss) - 0.005 * float(t64 @ t64)) < 1e-9
    assert torch.allclose(decayed.grad - plain.grad, 0.01 * t64, atol=1e-10)


def _random_problem(architecture: str, n: int):
    """Random images of the architecture's input size (CIFAR-shaped for ResNet-20), random labels."""
    g = torch.Generator().manual_seed(0)
    shape = (3, 32, 32) if architecture == "resnet20" else (1, 28, 28)
    split = Split(x=torch.rand(n, *shape, generator=g), y=torch.randint(0, 10, (n,), generator=g))
    model = build_model(architecture, shape, 10, seed=1)
    layout = layout_of(model)
    return model, layout, split, flat_params(model, layout)


def _plain_loop_gradient(model, split, dtype):
    """Per-class gradients the textbook way: the module itself, one class at a time, loss / N, backward."""
    model = copy.deepcopy(model).to(dtype)
    set_lca_mode(model)
    grads = []
    for c in range(10):
        model.zero_grad(set_to_none=True)
        mask = split.y == c
        (F.cross_entropy(model(split.x[mask].to(dtype)), split.y[mask], reduction="sum") / len(split.y)).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).double())
    return torch.stack(grads)


@pytest.mark.parametrize("architecture", ["mnist_fc", "lenet", "resnet20"])
def test_speed_settings_give_the_plain_loop_gradient(architecture):
    """Compute batches and channels-last change only float32 rounding: every variant is as close to the
    float64 answer as the plain module loop is (a few 1e-6 of the largest entry), and batch norm's
    statistics stay per evaluation chunk (its compute batch is the chunk, so the result is bitwise the same)."""
    model, layout, split, theta = _random_problem(architecture, 120)
    chunk = 10_000  # one chunk per class: what the plain loop does
    plain = FullSetObjective(model, layout, split, 10, chunk)(theta)
    fast = FullSetObjective(model, layout, split, 10, chunk, speed=SpeedSettings(compute_batch=5, channels_last=True))
    fast_point = fast(theta)
    exact = _plain_loop_gradient(model, split, torch.float64)
    scale = float(exact.abs().max())
    loop_error = float((_plain_loop_gradient(model, split, torch.float32) - exact).abs().max())
    for point in (plain, fast_point):
        assert float((point.grad_class - exact).abs().max()) <= max(4 * loop_error, 1e-6 * scale)
        assert float((point.grad - exact.sum(0)).abs().max()) <= max(4 * loop_error, 1e-6 * scale)
    if architecture == "resnet20":
        assert fast.compute_batch is None  # batch norm: never split a chunk
        only_batched = FullSetObjective(model, layout, split, 10, chunk, speed=SpeedSettings(compute_batch=5))(theta)
        assert torch.equal(only_batched.grad_class, plain.grad_class)
    else:
        assert fast.compute_batch == 5 and len(fast.batches) > len(fast.chunks)


def test_auto_speed_settings_follow_the_measurements():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    auto = {"compute_batch": "auto", "channels_last": "auto"}
    lenet = build_model("lenet", (1, 28, 28), 10, seed=0)
    fc = build_model("mnist_fc", (1, 28, 28), 10, seed=0)
    assert resolve_speed(auto, lenet, cpu) == SpeedSettings(CPU_CONV_COMPUTE_BATCH, True)
    assert resolve_speed(auto, fc, cpu) == SpeedSettings(None, False)
    assert resolve_speed(auto, lenet, gpu) == SpeedSettings(None, False)
    assert resolve_speed({"compute_batch": 64, "channels_last": True}, fc, cpu) == SpeedSettings(64, False)


@pytest.mark.parametrize("architecture", ["mnist_fc", "resnet20"])
def test_validation_objective_without_class_parts_gives_the_same_loss(architecture):
    """Without per-class parts, batches may span classes, except under batch norm, whose statistics are
    per class-sorted chunk: there the batches must stay those of the per-class evaluation."""
    model, layout, split, theta = _random_problem(architecture, 90)
    with_classes = FullSetObjective(model, layout, split, 10, 16)
    without = FullSetObjective(model, layout, split, 10, 16, per_class=False)
    a, b = with_classes(theta), without(theta)
    if architecture == "resnet20":
        assert without.batches == with_classes.batches
        assert abs(float(a.loss - b.loss)) < 1e-12  # the same float32 batches; float64 sums in another order
        assert float((a.grad - b.grad).abs().max()) < 1e-12
    else:
        assert len(without.batches) == 6 < len(with_classes.batches)  # 90 examples in batches of 16
        assert abs(float(a.loss - b.loss)) < 1e-7
        assert float((a.grad - b.grad).abs().max()) < 1e-6 * float(a.grad.abs().max())


def test_a_midpoint_sample_leaves_the_pass_unchanged_and_estimates_each_class_from_its_own_examples():
    """Adaptive quadrature's sample: the full pass is the same function (its chunks are only cut at the sample);
    each class's estimate is its sampled examples' gradient times n_c / m_c, the same from a sample-only pass."""
    model, split = _problem(n=300)
    layout = layout_of(model)
    theta = flat_params(model, layout)
    plain = FullSetObjective(model, layout, split, 10, chunk_size=40)(theta)
    objective = FullSetObjective(model, layout, split, 10, chunk_size=40, sample=6)
    full = objective(theta)
    for ours, theirs in ((full.grad, plain.grad), (full.grad_class, plain.grad_class), (full.loss_class, plain.loss_class)):
        assert float((ours - theirs).abs().max()) < 1e-6 * float(theirs.abs().max())  # float32 sums, other chunks
    alone = objective(theta, sample_only=True)
    assert torch.equal(alone.grad_class_sampled, full.grad_class_sampled)
    assert (objective.passes, objective.sample_passes) == (1, 1)
    assert objective.sample_fraction == 60 / 300  # 6 of every class
    model64 = copy.deepcopy(set_lca_mode(model)).double()
    x, y = objective.x, objective.y  # class-sorted, each class's sample first
    for c in range(10):
        start = int(np.flatnonzero(y.numpy() == c)[0])
        m, n_c = int(objective.sample_sizes[c]), int((y == c).sum())
        model64.zero_grad()
        (F.cross_entropy(model64(x[start : start + m].double()), y[start : start + m], reduction="sum") * n_c / (m * len(y))).backward()
        direct = torch.cat([p.grad.reshape(-1) for p in model64.parameters()])
        assert torch.allclose(full.grad_class_sampled[c], direct, atol=1e-7)
    whole = FullSetObjective(model, layout, split, 10, chunk_size=40, sample=1000)(theta)  # the sample is every example
    assert torch.allclose(whole.grad_class_sampled, whole.grad_class, atol=1e-9)
