"""Example groups (runs.<run>.example_groups): a user's grouping callable, written outside the package,
goes through the real workflow by config alone; every group's LCA adds up to its own loss change and the
groups to the total. Every bad grouping is one line, before training."""

import json

import h5py
import numpy as np
import pytest
import torch
from conftest import REPO, snakemake, tiny_lca, tiny_run, write_tiny_config

import lcaflow
from lcaflow.config import validate_config
from lcaflow.data import Split, load_examples
from lcaflow.errors import ConfigError, LCAError
from lcaflow.examplegroups import MAX_GROUPS, label_examples
from lcaflow.models import build_model, layout_of, param_views
from lcaflow.objective import FullSetObjective

# A user's file: examples grouped by how much ink they have (terciles of the mean pixel, per split), which
# cuts across the classes.
GROUPS_PY = '''
import numpy as np

def by_ink(inputs, targets):
    ink = inputs.flatten(1).mean(1).numpy()
    cuts = np.quantile(ink, [1 / 3, 2 / 3])
    return np.array(["light", "medium", "heavy"])[np.searchsorted(cuts, ink)]
'''


@pytest.fixture(scope="module")
def grouped_run(tmp_path_factory, fashion_data_file):
    """The tiny run with `example_groups: groups.py:by_ink` and 8 example curves, made by snakemake up to its
    example-group analyses and figures."""
    work = tmp_path_factory.mktemp("grouped")
    (work / "groups.py").write_text(GROUPS_PY)
    config = write_tiny_config(work, run={"example_groups": "groups.py:by_ink", "iterations": 10}, lca={"example_curves": 8})
    (work / "results" / "data").mkdir(parents=True)
    (work / "results" / "data" / "fashion_mnist.h5").symlink_to(fashion_data_file)  # the data stage: done already
    figures = [str(work / f"results/runs/tiny_sgd/figures/{name}.png") for name in ("who_helped_whom", "interference", "example_clusters")]
    result = snakemake(work, *figures, "--cores", "2", "--configfile", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    return work / "results" / "runs" / "tiny_sgd"


def test_each_group_is_grounded_and_the_groups_sum_to_the_total(grouped_run):
    grounding = json.loads((grouped_run / "grounding.json").read_text())["example_groups"]
    assert grounding["groups"] == 3 and set(grounding["loss_change"]) == {"heavy", "light", "medium"}
    assert abs(grounding["worst_cumulative_error_pct"]) < 0.5  # each group's LCA ~ its own loss change
    with lcaflow.open_run(grouped_run) as run:
        assert run.example_groups == ["heavy", "light", "medium"] and run.classes is None
        lca, loss = run.by_example_group(), run.example_group_loss()
        assert lca.shape == (10, 3) and loss.shape == (11, 3)
        assert np.allclose(loss.sum(1), run.loss, rtol=1e-12, atol=0)  # no weight decay: the groups make the loss
        assert np.allclose(lca.sum(1), run.per_iteration(), rtol=1e-9, atol=1e-12)  # ... and its LCA
        for g, name in enumerate(run.example_groups):
            change = loss[-1, g] - loss[0, g]
            assert abs(lca[:, g].sum() - change) <= 0.005 * abs(change) + 1e-6, name
            assert grounding["loss_change"][name] == pytest.approx(change, rel=1e-12)
        assert np.ptp(lca.sum(0)) > 0  # the groups' losses changed by different amounts
        with pytest.raises(LCAError, match="not by class; use by_example_group"):
            run.by_class()
        _check_group_losses_independently(grouped_run, run, loss)
        _check_the_validation_split(grouped_run, run, grounding["val"])


def _check_the_validation_split(folder, run, grounding):
    """The validation split by example group as the training split: grounded per group, adding up to the
    validation LCA, per neuron, and its groups' losses recomputed by plain torch."""
    lca, loss = run.by_example_group("val"), run.example_group_loss("val")
    assert lca.shape == (10, 3) and loss.shape == (11, 3)
    assert np.allclose(loss.sum(1), run.loss_val, rtol=1e-12, atol=0)
    assert np.allclose(lca.sum(1), run.per_iteration("val"), rtol=1e-9, atol=1e-12)
    assert grounding["groups"] == 3 and abs(grounding["worst_cumulative_error_pct"]) < 1.0
    assert np.allclose([grounding["loss_change"][g] for g in run.example_groups], loss[-1] - loss[0], rtol=1e-12)
    with h5py.File(folder / "lca.h5") as f:  # per neuron: every parameter of mnist_fc belongs to a neuron
        neurons = sum(f[f"lca_val_class_neuron/{name}"][()].sum(1) for name in f["lca_val_class_neuron"])
    assert np.allclose(neurons, lca.sum(0), rtol=1e-9, atol=1e-12)
    _check_group_losses_independently(folder, run, loss, "val")


def _losses_at_the_ends(folder, run, indices) -> list:
    """Each example's loss at theta_0 and theta_T, from the trajectory and the data file by plain torch."""
    with h5py.File(folder / "trajectory.h5") as f:
        ends = [torch.from_numpy(f["params"][t]) for t in (0, run.iterations)]
    (split,) = load_examples(folder.parents[1] / "data" / "fashion_mnist.h5", [indices])
    model = build_model("mnist_fc", (1, 28, 28), 10, 0)
    layout, named = layout_of(model), dict(model.named_parameters())
    losses = []
    for theta in ends:
        with torch.no_grad():
            for name, value in param_views(theta, layout).items():
                named[name].copy_(value)
            losses.append(torch.nn.functional.cross_entropy(model(split.x), split.y, reduction="none").double().numpy())
    return losses


def _check_group_losses_independently(folder, run, loss, split="train"):
    with h5py.File(folder / "trajectory.h5") as f:
        indices, labels = f[f"split/{split}_indices"][()], f[f"example_groups/{split}"][()]
    for row, each in zip((loss[0], loss[-1]), _losses_at_the_ends(folder, run, indices)):
        mine = [each[labels == g].sum() / len(each) for g in range(3)]
        assert np.allclose(mine, row, rtol=1e-5), (mine, row)


def test_example_curves_are_grounded_per_example_and_match_the_losses_at_the_ends(grouped_run):
    report = json.loads((grouped_run / "grounding.json").read_text())["example_curves"]
    with lcaflow.open_run(grouped_run) as run:
        tolerance = run.grounding["tolerance"]
        for split in ("train", "val"):
            curves, losses, examples = run.example_curves(split), run.curve_losses(split), run.curve_examples(split)
            assert curves.shape == (10, 8, len(run.groups)) and losses.shape == (11, 8) and examples.shape == (8,)
            # every example's LCA, summed over groups, is its own loss change at every iteration
            assert np.abs(curves.sum(2) - np.diff(losses, axis=0)).max() <= tolerance
            assert report[split]["iterations_over_tolerance"] == 0 and report[split]["worst_example"] in examples
            assert 0 < report[split]["quadrature_error_removed_max_abs"] < np.abs(np.diff(losses, axis=0)).max()
            assert np.ptp(curves.sum(0), axis=0).max() > 0  # the examples' losses changed differently
        with h5py.File(grouped_run / "trajectory.h5") as f:  # the examples are named by their dataset index
            assert set(run.curve_examples("train")) <= set(f["split/train_indices"][()])
            assert set(run.curve_examples("val")) <= set(f["split/val_indices"][()])
        first, last = _losses_at_the_ends(grouped_run, run, run.curve_examples("train"))
        assert np.allclose(run.curve_losses()[0], first, rtol=1e-5) and np.allclose(run.curve_losses()[-1], last, rtol=1e-5)


def test_who_helped_whom_interference_and_clusters(grouped_run):
    from lcaflow.tables import read_tsv

    stats = grouped_run / "stats"
    with lcaflow.open_run(grouped_run) as run:
        whom = read_tsv(stats / "who_helped_whom.tsv")
        totals = {g: whom["lca"][whom["group"] == g].sum() for g in run.example_groups}
        assert np.allclose([totals[g] for g in run.example_groups], run.by_example_group().sum(0))
        time = read_tsv(stats / "who_helped_whom_time.tsv")
        assert np.isclose(time["lca"].sum(), whom["lca"].sum()) and set(time["layer"]) == set(run.groups)
        rows = read_tsv(stats / "interference.tsv")
        changes = run.by_example_group()
        expected = 1 - np.abs(changes.sum(1)) / np.abs(changes).sum(1)
        assert np.allclose(rows["groups_cancelled"], expected) and ((rows["examples_cancelled"] >= 0) & (rows["examples_cancelled"] <= 1)).all()
        pairs = read_tsv(stats / "interference_pairs.tsv")
        assert len(pairs["group_a"]) == 3 and set(pairs["top_layer"]) <= set(run.groups)
        opposed = (changes[:, 0] * changes[:, 1] < 0).sum()  # heavy vs light, counted by hand
        row = (pairs["group_a"] == "heavy") & (pairs["group_b"] == "light")
        assert pairs["iterations_opposed"][row][0] == opposed
        members, clusters = read_tsv(stats / "cluster_members.tsv"), read_tsv(stats / "clusters.tsv")
        assert set(members["example"].astype(int)) == set(run.curve_examples()) and clusters["size"].sum() == 8
        assert np.allclose(np.sort(members["final_change"]), np.sort(run.example_curves().sum(axis=(0, 2))))
    for name in ("who_helped_whom", "interference", "example_clusters"):
        assert (grouped_run / "figures" / f"{name}.png").stat().st_size > 20000, name


# ---- the objective: one pass gives every group; `none` costs no more than the classes ----------------


def test_one_group_costs_no_more_than_the_classes(fashion_data_file):
    (split,) = load_examples(fashion_data_file, [np.arange(300)])
    model = build_model("mnist_fc", (1, 28, 28), 10, 0)
    layout = layout_of(model)
    theta = torch.cat([p.detach().flatten() for p in model.parameters()])
    classes = FullSetObjective(model, layout, split, 10, chunk_size=64, labels=split.y)
    one = FullSetObjective(model, layout, split, 1, chunk_size=64, labels=torch.zeros(300, dtype=torch.int64))
    a, b = classes(theta), one(theta)
    assert len(one.batches) <= len(classes.batches) and b.grad_class.shape == (1, theta.numel())
    assert float(b.loss) == pytest.approx(float(a.loss), rel=1e-6) and torch.allclose(b.grad, a.grad, rtol=1e-5, atol=1e-8)


def test_the_validation_splits_groups_by_either_rule(fashion_data_file):
    """Adaptive quadrature's corrected trapezoid and its Simpson fallback give the validation split's example
    groups as they give the training split's classes: rows that add up to each group's own loss change."""
    from lcaflow.integrate import TRAPEZOID, Endpoint, make_quadrature

    train, val = load_examples(fashion_data_file, [np.arange(200), np.arange(200, 300)])
    model = build_model("mnist_fc", (1, 28, 28), 10, 0)
    layout = layout_of(model)
    groups = torch.arange(100) % 3
    objectives = (FullSetObjective(model, layout, train, 10, chunk_size=64), FullSetObjective(model, layout, val, 3, chunk_size=64, labels=groups))
    evaluate = lambda theta, splits=("train", "val"): Endpoint(*(o(theta) if s in splits else None for o, s in zip(objectives, ("train", "val"))))  # noqa: E731
    theta0 = torch.cat([p.detach().flatten() for p in model.parameters()])
    theta1 = theta0 - 0.1 * objectives[0](theta0).grad.float()
    start, end = evaluate(theta0), evaluate(theta1)
    for accept in (1.0, 0.0):  # the trapezoid for both splits; Simpson for both
        lca = {"quadrature": "adaptive", "trapezoid_tolerance": accept, "tolerance": 1e-4, "max_splits": 4}
        seg = make_quadrature(lca)(evaluate, theta0, theta1, start, end)
        assert (seg.num_splits == TRAPEZOID) == (accept == 1.0) and seg.lca_val_class.shape == (3, theta0.numel())
        assert torch.allclose(seg.lca_val_class.sum(0), seg.lca_val, atol=1e-12)
        change = (end.val.loss_class - start.val.loss_class).numpy()
        error = seg.lca_val_class.sum(1).numpy() - change  # removed by the trapezoid; Simpson's reported
        assert np.abs(error).max() <= (1e-12 if accept else 0.01 * np.abs(change).min())
        assert error.sum() == pytest.approx(seg.error_val, abs=1e-12)  # the groups' errors are the split's


# ---- bad input: one line each ------------------------------------------------------------------------


def _parts(n_train=200, n_val=80):
    g = torch.Generator().manual_seed(0)
    return {
        "train": Split(x=torch.rand(n_train, 1, 4, 4, generator=g), y=torch.arange(n_train) % 3),
        "val": Split(x=torch.rand(n_val, 1, 4, 4, generator=g), y=torch.arange(n_val) % 3),
    }


def _grouping(tmp_path, body: str) -> str:
    (tmp_path / "g.py").write_text("import numpy as np\nimport torch\n\ndef f(inputs, targets):\n" + body)
    return str(tmp_path / "g.py") + ":f"


@pytest.mark.parametrize(
    "body,message",
    [
        ("    raise ValueError('no ink')\n", "raised ValueError: no ink; fix it"),
        ("    return targets[:-1]\n", "returned labels of shape (199,) for the 200 examples of the training split"),
        ("    return np.arange(len(targets)) % 70\n", f"gives 70 groups; at most {MAX_GROUPS}"),
        ("    return (targets > 0).long() if len(targets) == 200 else torch.zeros(len(targets), dtype=torch.long)\n",
         "group 1 has no example in the validation split"),
        ("    return targets.float()\n", "returned labels of type float32 for the training split; return ints or strings"),
        ("    return targets[:, None].expand(-1, 2)\n", "shape (200, 2)"),
    ],
)
def test_a_bad_grouping_is_one_line(tmp_path, body, message):
    ref = _grouping(tmp_path, body)
    with pytest.raises(ConfigError) as err:
        label_examples(ref, "config: runs.r.example_groups", _parts())
    assert message in str(err.value) and "\n" not in str(err.value) and "runs.r.example_groups" in str(err.value)


def test_many_groups_up_to_the_limit_and_string_labels(tmp_path):
    ref = _grouping(tmp_path, "    return np.array(['b', 'a', 'c'])[targets.numpy()]\n")
    groups = label_examples(ref, "w", _parts())
    assert groups.names == ["a", "b", "c"] and groups.labels["train"][:3].tolist() == [1, 0, 2]


def test_a_grouping_that_cannot_be_imported_or_does_not_fit_the_loss_is_refused_by_the_config(tmp_path):
    (tmp_path / "broken.py").write_text("import not_a_module\n")
    run = {"dataset": "fashion_mnist", "architecture": "mnist_fc", "optimizer": {"name": "sgd", "lr": 0.1}, "batch_size": 10, "iterations": 2}
    for groups, message in (
        (f"{tmp_path}/broken.py:f", "runs.r.example_groups: importing"),
        (f"{tmp_path}/missing.py:f", "runs.r.example_groups: file"),
    ):
        with pytest.raises(ConfigError, match=message):
            validate_config({"runs": {"r": {**run, "example_groups": groups}}})
    with pytest.raises(ConfigError, match="runs.r.example_groups: classes needs a loss with classes"):
        validate_config({"runs": {"r": {**run, "loss": "mse", "example_groups": "classes"}}})


# ---- per-example curves: the quadrature, and bad input ------------------------------------------------


def _curves(model, x, y, loss="mse"):
    from lcaflow.curves import ExampleCurves
    from lcaflow.losses import BUILTIN_LOSSES

    return ExampleCurves(model, layout_of(model), x, y, BUILTIN_LOSSES[loss], np.arange(len(y)) + 100, "config: lca.example_curves")


def test_a_quadratic_loss_is_allocated_exactly_per_example():
    """A linear model's squared error is quadratic along a step: one Simpson panel is exact (to float32), so
    nothing is left to remove."""
    torch.manual_seed(0)
    curves = _curves(torch.nn.Sequential(torch.nn.Linear(3, 4)), torch.randn(6, 3), torch.randn(6, 4))
    theta0 = torch.cat([p.detach().flatten() for p in curves.model.parameters()])
    theta1 = theta0 + 0.3 * torch.randn_like(theta0)
    lca, loss0, loss1, panels, removed = curves.segment(theta0, theta1, 1e-5, 32)
    assert panels == 1 and np.abs(removed).max() < 1e-5 and lca.shape == (6, 1)
    assert np.allclose(lca.sum(1), loss1 - loss0, atol=1e-12)


def test_curves_split_a_deep_models_change_over_its_groups():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1))
    curves = _curves(model, torch.randn(7, 3), torch.randn(7, 1))
    theta0 = torch.cat([p.detach().flatten() for p in model.parameters()])
    theta1 = theta0 + 0.2 * torch.randn_like(theta0)
    lca, loss0, loss1, panels, removed = curves.segment(theta0, theta1, 1e-6, 32)
    assert lca.shape == (7, 2) and np.allclose(lca.sum(1), loss1 - loss0, atol=1e-9)
    assert panels == 4 and 1e-6 < np.abs(removed).max() < 1e-3  # refined up to CURVE_MAX_SPLITS, the rest removed
    # against a fine independent integral of each group's directional derivative (central differences)
    fine = np.zeros((7, 2))
    for g, (lo, hi) in enumerate(((0, 20), (20, 26))):
        mask = torch.zeros_like(theta0)
        mask[lo:hi] = 1
        step = (theta1 - theta0).double() * mask.double()
        for a in (np.arange(400) + 0.5) / 400:
            point = theta0.double() + a * (theta1 - theta0).double()
            h = 1e-3
            fine[:, g] += (curves.losses((point + h * step).float()) - curves.losses((point - h * step).float())).numpy() / (2 * h) / 400
    assert np.allclose(lca, fine, atol=2e-4), (lca, fine)


def test_curves_go_through_attention():
    """Forward-mode derivatives through scaled_dot_product_attention (the fused CPU and CUDA kernels have none):
    a causal self-attention model's per-example derivatives along a step match central differences."""

    class Attention(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv, self.out = torch.nn.Linear(4, 12), torch.nn.Linear(4, 4)

        def forward(self, x):
            q, k, v = self.qkv(x).unsqueeze(1).chunk(3, dim=-1)
            return self.out(torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True).squeeze(1))

    torch.manual_seed(2)
    curves = _curves(Attention(), torch.randn(5, 6, 4), torch.randn(5, 6, 4))
    theta = torch.cat([p.detach().flatten() for p in curves.model.parameters()])
    curves.delta = 0.1 * torch.randn_like(theta).double()
    losses, derivatives = curves.derivatives(theta)
    h, step = 1e-2, curves.delta.float()
    central = (curves.losses(theta + h * step) - curves.losses(theta - h * step)) / (2 * h)
    assert torch.allclose(derivatives.sum(1), central, rtol=1e-2, atol=1e-5)
    assert torch.allclose(losses, curves.losses(theta), atol=1e-6)


def test_bad_curve_settings_are_one_line():
    from lcaflow.curves import curve_sample
    from lcaflow.errors import DivergenceError

    with pytest.raises(ConfigError, match=r"lca.example_curves: 200 exceeds the 100 examples of the validation split; lower it$"):
        curve_sample(100, 200, 0, "val", "config: lca.example_curves")
    x = torch.randn(4, 3)
    x[2, 0] = float("nan")
    curves = _curves(torch.nn.Linear(3, 1), x, torch.randn(4, 1))
    with pytest.raises(DivergenceError, match=r"the loss of example 102 of the training split is nan at theta_0"):
        curves.check_finite(torch.zeros(4), "at theta_0", "r", "train")
    with pytest.raises(ConfigError, match="batch statistics"):
        _curves(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)), torch.randn(4, 3), torch.randn(4, 4))
    run = {"dataset": "fashion_mnist", "architecture": "mnist_fc", "optimizer": {"name": "sgd", "lr": 0.1}, "batch_size": 10, "iterations": 2}
    with pytest.raises(ConfigError, match=r"^config: lca.example_curves: 600 exceeds the 500 examples of the validation split of run r"):
        validate_config({"runs": {"r": {**run, "val_size": 500}}, "lca": {"example_curves": 600}})


# ---- what the options cost, as the plan predicts it ---------------------------------------------------


def test_the_plan_prices_each_option():
    """`none` keeps one row of per-group sums (less memory and disk than the classes), a grouping callable
    is priced at its upper bound of 64 rows, and lca.example_curves adds forward-mode passes, bytes and memory."""
    from lcaflow.cost.disk import chunk_bytes
    from lcaflow.cost.memory import gradient_mem_mb
    from lcaflow.cost.size import RunSize
    from lcaflow.cost.time import Rates, job_seconds
    from lcaflow.spec import RunSpec

    def cost(groups=None, curves=0):
        run = tiny_run(train_size=20000, **({"example_groups": groups} if groups else {}))
        lca = tiny_lca(example_curves=curves)
        spec = RunSpec.of("r", run)
        size = RunSize.of(spec)
        rates = Rates(1e-5, 1e-5, "test")
        return size.num_classes, sum(chunk_bytes(size, run, lca)), gradient_mem_mb(size, lca), sum(job_seconds(spec, size, lca, rates)["gradients"])

    classes, none, callable_, curves = cost(), cost("none"), cost(f"{REPO}/tests/user_project/models.py:char_model"), cost(curves=50)
    assert (classes[0], none[0], callable_[0]) == (10, 1, 64)
    assert none[1] < classes[1] < callable_[1] and none[2] <= classes[2] <= callable_[2]
    assert none[3] == pytest.approx(classes[3], rel=1e-4)  # no extra pass: the same full-set evaluations (less to write)
    assert curves[1] > classes[1] and curves[2] >= classes[2] and curves[3] > classes[3]
    assert curves[3] - classes[3] == pytest.approx(12 * 2 * 9 * 3 * (50 * 1e-5 + 1.5e-3), rel=1e-3)  # T, splits, points, groups
    assert callable_[3] == pytest.approx(classes[3], rel=1e-4)  # a callable: chunks sorted by group, no extra pass


def test_the_plan_prices_token_groups_by_route():
    """Token groups add forward-mode passes per parameter group (or a backward per token group per parameter),
    bytes and memory; priced at the bound of 64 groups."""
    from dataclasses import replace

    from lcaflow.cost.disk import chunk_bytes
    from lcaflow.cost.memory import gradient_mem_mb
    from lcaflow.cost.size import RunSize
    from lcaflow.cost.time import Rates, job_seconds
    from lcaflow.spec import RunSpec

    run = tiny_run(train_size=20000)
    spec, size = RunSpec.of("r", run), RunSize.of(RunSpec.of("r", run))
    rates = Rates(1e-5, 1e-5, "test")

    def cost(tokens, **lca):
        settings, sized = tiny_lca(**lca), replace(size, model=replace(size.model, token_groups=tokens))
        seconds = sum(job_seconds(spec, sized, settings, rates)["gradients"])
        return seconds, sum(chunk_bytes(sized, run, settings)), gradient_mem_mb(sized, settings)

    none, forward, reverse = cost(0), cost(6), cost(6, token_group_parameters=True)
    examples, chunks = 20000 + 100, 313 + 2  # both splits, in chunks of 64
    assert forward[0] - none[0] == pytest.approx(12 * 3.5 * 3 * (examples * 1e-5 * 2.8 + chunks * 1.5e-3), rel=1e-3)
    assert reverse[0] - none[0] == pytest.approx(12 * 3.5 * examples * 1e-5 * (1 + 6 * 1.3), rel=1e-3)
    assert none[1] < forward[1] < reverse[1] and none[2] < forward[2] < reverse[2]
    assert reverse[1] - forward[1] == 2 * 2 * 6 * size.num_params * 8  # E x K totals per split, in each of 2 chunks


# ---- token groups: the char model of tests/user_project, its own loop recorded ------------------------

TOKENS_PY = '''
import numpy as np

def kinds(inputs, targets):
    """What each predicted character is: a letter, a space (or line start: newline maps to space), other."""
    t = targets.numpy() + 32
    letter = ((t >= 65) & (t <= 90)) | ((t >= 97) & (t <= 122))
    return np.where(letter, "letter", np.where(t == 32, "space", "other"))
'''


@pytest.fixture(scope="module")
def token_run(tmp_path_factory):
    """The recorded char run of tests/user_project with `example_groups: tokens.py:kinds`, gradients and assembly."""
    import os
    import shutil
    import subprocess
    import sys

    from lcaflow.assemble import assemble
    from lcaflow.data import load_user_dataset, write_data_file
    from lcaflow.gradients import compute_chunk
    from lcaflow.training import adopt_trajectory

    work = tmp_path_factory.mktemp("tokens")
    for name in ("datasets.py", "models.py", "record.py"):
        shutil.copy(REPO / "tests" / "user_project" / name, work)
    (work / "tokens.py").write_text(TOKENS_PY)
    subprocess.run([sys.executable, "record.py"], cwd=work, check=True, capture_output=True)
    here, threads = os.getcwd(), torch.get_num_threads()
    os.chdir(work)
    torch.set_num_threads(1)  # a model this small runs fastest on one thread (and beside other jobs)
    try:
        ref = "datasets.py:characters"
        write_data_file(work / "d.h5", ref, load_user_dataset(ref, {}, "w"), raw_inputs=True)
        config = {"runs": {"chars": {"trajectory": "chars.h5", "architecture": "models.py:char_model", "architecture_args": {"vocab": 96},
                                     "dataset": ref, "loss": "token_cross_entropy", "device": "cpu", "example_groups": "tokens.py:kinds"}},
                  "lca": {"tolerance": 0.001, "eval_chunk_size": 96, "iterations_per_job": 6}}  # fmt: skip
        cfg = validate_config(config)
        run, lca = cfg["runs"]["chars"], cfg["lca"]
        folder = work / "results" / "runs" / "chars"
        (folder / "chunks").mkdir(parents=True)
        adopt_trajectory("chars", run, "chars.h5", str(work / "d.h5"), str(folder / "trajectory.h5"))
        per_parameter = folder.parent / "per_parameter"  # the same run, token groups per parameter (lca.token_group_parameters)
        (per_parameter / "chunks").mkdir(parents=True)
        shutil.copy(folder / "trajectory.h5", per_parameter / "trajectory.h5")
        config["lca"]["token_group_parameters"] = True
        for where, settings in ((folder, lca), (per_parameter, validate_config(config)["lca"])):
            chunks = [str(where / "chunks" / f"{k}.h5") for k in range(2)]
            for k, path in enumerate(chunks):
                compute_chunk("chars", run, settings, k, str(where / "trajectory.h5"), str(work / "d.h5"), path)
            assemble("chars", run, settings, str(where / "trajectory.h5"), chunks, str(where / "lca.h5"), str(where / "grounding.json"))
    finally:
        os.chdir(here)
        torch.set_num_threads(threads)
    return folder


def test_token_groups_are_grounded_per_group_and_sum_to_the_loss(token_run):
    report = json.loads((token_run / "grounding.json").read_text())["example_groups"]
    with lcaflow.open_run(token_run) as run:
        assert run.example_groups == ["letter", "other", "space"] and run.classes is None
        lca, loss = run.by_example_group(), run.example_group_loss()
        assert lca.shape == (12, 3) and loss.shape == (13, 3)
        # the token groups' losses (their tokens' summed losses over all tokens) add up to the run's mean token loss
        assert np.allclose(loss.sum(1), run.loss, rtol=1e-5)
        change = loss[-1] - loss[0]
        assert np.allclose(lca.sum(0), change, atol=1e-9)  # each group's LCA is its own loss change
        assert abs(report["worst_cumulative_error_pct"]) < 1e-6 and 0 < report["quadrature_error_removed_max_abs"] < 0.05
        assert np.allclose(lca.sum(1), run.per_iteration(), atol=5e-3)  # the groups' LCA, the run's own LCA
        val, val_loss = run.by_example_group("val"), run.example_group_loss("val")  # the validation split's too
        assert val.shape == (12, 3) and np.allclose(val_loss.sum(1), run.loss_val, rtol=1e-5)
        assert np.allclose(val.sum(0), val_loss[-1] - val_loss[0], atol=1e-9) and abs(report["val"]["worst_cumulative_error_pct"]) < 1e-6
        assert np.allclose(val.sum(1), run.per_iteration("val"), atol=5e-3)
        with h5py.File(token_run / "trajectory.h5") as f:
            labels, first = f["example_groups/train"][()], torch.from_numpy(f["params"][0])
        assert labels.shape == (96, 16)
    # each group's loss at theta_0 by plain torch on the model the recording started from
    import sys

    sys.path.insert(0, str(token_run.parents[2]))
    from models import char_model

    from lcaflow.data import load_examples

    model = char_model(vocab=96)
    layout, named = layout_of(model), dict(model.named_parameters())
    with torch.no_grad():
        for name, value in param_views(first, layout).items():
            named[name].copy_(value)
        (split,) = load_examples(token_run.parents[2] / "d.h5", [np.arange(96)])
        tokens = torch.nn.functional.cross_entropy(model(split.x).flatten(0, 1), split.y.flatten(), reduction="none").double()
    mine = [float(tokens[torch.from_numpy(labels.reshape(-1) == g)].sum() / tokens.numel()) for g in range(3)]
    assert np.allclose(mine, loss[0], rtol=1e-5)


def test_token_groups_per_parameter_add_up_to_the_groups(token_run):
    """lca.token_group_parameters: reverse mode, one backward per token group at every point; each parameter's
    totals per token group add up to the groups' LCA, which agrees with the forward-mode route's."""
    with lcaflow.open_run(token_run.parent / "per_parameter") as run, lcaflow.open_run(token_run) as forward:
        totals, lca = run.token_group_totals(), run.by_example_group()
        assert totals.shape == (3, run.num_params) and run.token_group_totals("val").shape == (3, run.num_params)
        loss = run.example_group_loss()
        # over parameters, each group's per-parameter totals come to the forward-mode route's LCA of the group
        assert np.abs(totals.sum(1) - forward.by_example_group().sum(0)).max() < 0.02 * np.abs(loss[-1] - loss[0]).max()
        assert np.allclose(lca.sum(0), loss[-1] - loss[0], atol=1e-9)  # grounded per group, as the forward route
        assert np.allclose(loss, forward.example_group_loss(), rtol=1e-5)
        change = np.abs(loss[-1] - loss[0])
        assert np.abs(run.by_example_group() - forward.by_example_group()).max() < 0.02 * change.max()  # the routes agree
        with pytest.raises(LCAError, match="set lca.token_group_parameters: true"):
            forward.token_group_totals()


def test_token_labels_need_a_loss_with_tokens(tmp_path):
    ref = _grouping(tmp_path, "    return np.zeros((len(targets), 3), dtype=int)\n")
    parts = {s: Split(x=torch.rand(n, 3), y=torch.zeros(n, 3, dtype=torch.long)) for s, n in (("train", 10), ("val", 4))}
    with pytest.raises(ConfigError, match=r"returned labels per token \(10, 3\) but the loss has no tokens"):
        label_examples(ref, "config: runs.r.example_groups", parts)
    assert label_examples(ref, "w", parts, tokens=True).per_token


def test_a_run_grouped_otherwise_is_left_out_of_the_per_class_claim():
    """The paper's synchronisation claim is per class: a run whose rows are other groups does not count."""
    from test_claims import by_start, fact

    from lcaflow.claims import NOT_MEASURED, check

    grouped = fact("g")
    grouped.run["example_groups"] = "groups.py:by_ink"
    claim = by_start(check([grouped], []), "Moments of learning")
    assert claim.holds == NOT_MEASURED and "no run whose loss has classes" in claim.notes
    assert by_start(check([fact("c")], []), "Moments of learning").holds == "yes"
