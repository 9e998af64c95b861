"""Example groups (runs.<run>.example_groups): a user's grouping callable, written outside the package,
goes through the real workflow by config alone; every group's LCA adds up to its own loss change and the
groups to the total. Every bad grouping is one line, before training."""

import json

import h5py
import numpy as np
import pytest
import torch
from conftest import snakemake, write_tiny_config

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
    """The tiny run with `example_groups: groups.py:by_ink`, made by snakemake up to its lca.h5."""
    work = tmp_path_factory.mktemp("grouped")
    (work / "groups.py").write_text(GROUPS_PY)
    config = write_tiny_config(work, run={"example_groups": "groups.py:by_ink", "iterations": 10})
    (work / "results" / "data").mkdir(parents=True)
    (work / "results" / "data" / "fashion_mnist.h5").symlink_to(fashion_data_file)  # the data stage: done already
    result = snakemake(work, str(work / "results/runs/tiny_sgd/lca.h5"), "--cores", "2", "--configfile", str(config))
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
        with pytest.raises(LCAError, match="training split only"):
            run.by_example_group("val")
        _check_group_losses_independently(grouped_run, run, loss)


def _check_group_losses_independently(folder, run, loss):
    """Each group's loss at theta_0 and theta_T, from the trajectory and the data by plain torch."""
    with h5py.File(folder / "trajectory.h5") as f:
        ends = [torch.from_numpy(f["params"][t]) for t in (0, run.iterations)]
        indices, labels = f["split/train_indices"][()], f["example_groups/train"][()]
        data_path = folder.parents[1] / "data" / "fashion_mnist.h5"
    (split,) = load_examples(data_path, [indices])
    model = build_model("mnist_fc", (1, 28, 28), 10, 0)
    layout = layout_of(model)
    for row, theta in zip((loss[0], loss[-1]), ends):
        with torch.no_grad():
            named = dict(model.named_parameters())
            for name, value in param_views(theta, layout).items():
                named[name].copy_(value)
            each = torch.nn.functional.cross_entropy(model(split.x), split.y, reduction="none").double()
        mine = [float(each[torch.from_numpy(labels == g)].sum() / len(each)) for g in range(3)]
        assert np.allclose(mine, row, rtol=1e-5), (mine, row)


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
