"""Your own model, data, loss and training loop: files written outside the package (tests/user_project)
go through the real workflow with only config entries; every bad input gives one line before compute."""

import json
import shutil
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, SNAKEMAKE

import lcaflow
from lcaflow.config import validate_config
from lcaflow.data import load_user_dataset, write_data_file
from lcaflow.errors import ConfigError, DivergenceError, LCAError
from lcaflow.training import Checkpoint, adopt_trajectory, train

PROJECT = REPO / "tests" / "user_project"


def snakemake(work, *args):
    """snakemake run in the project's folder, as its user types it there."""
    return subprocess.run([*SNAKEMAKE, *args], cwd=work, capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def own_project(tmp_path_factory):
    """The user's project in a fresh folder: record.py, then `snakemake --cores 2 --configfile=lca.yaml`,
    the plan and the report, exactly as docs/own-model.md says."""
    work = tmp_path_factory.mktemp("own_project")
    for path in PROJECT.glob("*.py"):
        shutil.copy(path, work)
    shutil.copy(PROJECT / "lca.yaml", work)
    subprocess.run([sys.executable, "record.py"], cwd=work, check=True, capture_output=True)
    result = snakemake(work, "--cores", "2", "--configfile=lca.yaml")
    assert result.returncode == 0, result.stderr[-4000:]
    plan = snakemake(work, "--cores", "1", "--configfile=lca.yaml", "plan")
    assert plan.returncode == 0, plan.stderr[-2000:]
    report = snakemake(work, "--cores", "1", "--report", "report.zip", "--configfile=lca.yaml")
    assert report.returncode == 0, report.stderr[-2000:]
    return work


def test_recorded_and_trained_user_runs_are_grounded(own_project):
    for run in ("chars", "convnet"):
        grounding = json.loads((own_project / "results" / "runs" / run / "grounding.json").read_text())
        assert abs(grounding["train"]["cumulative_error_pct"]) <= 1.0, run
        assert grounding["iterations_over_tolerance"] == 0, run
    with h5py.File(own_project / "chars.h5") as mine, h5py.File(own_project / "results/runs/chars/trajectory.h5") as run:
        assert np.array_equal(mine["params"][()], run["params"][()])  # the recorded steps, unchanged
        assert run.attrs["per_class"] == False  # noqa: E712 (numpy bool)
        assert run.attrs["val_source"] == "test"


def test_a_run_without_classes_gets_an_explorer_that_says_so(own_project, browser):
    from explorer_checks import Opened

    path = own_project / "results" / "runs" / "chars" / "explorer.html"
    assert "per-class LCA (the run&#x27;s loss has no classes)" in path.read_text()
    opened = Opened(browser, path)
    try:
        opened.check_clean()
        assert opened.marks("lca_0") and opened.marks("parameters") and not opened.marks("classes_0")
    finally:
        opened.close()


def test_user_runs_get_groups_classes_and_every_figure(own_project):
    from test_workflow import FIGURES

    with lcaflow.open_run(own_project / "results/runs/chars") as chars:
        assert chars.groups == ("embeddings", "mix", "head")  # the config's group, then module groups
        assert chars.classes is None
        with pytest.raises(LCAError, match="no classes"):
            chars.by_class()
        assert np.allclose(chars.per_iteration().sum(), chars.loss[-1] - chars.loss[0], rtol=0.01)
    with lcaflow.open_run(own_project / "results/runs/convnet") as convnet:
        assert convnet.classes[:2] == ["T-shirt/top", "Trouser"]  # the Dataset's `classes`
        assert convnet.groups == ("0:Conv2d", "4:Linear")  # nn.Sequential positions with their type; the batch norm folds into its conv
        assert convnet.by_class().shape == (12, 10)
    neurons = json.loads((own_project / "results/runs/chars/stats/neurons.json").read_text())
    assert neurons["specialization_skipped"].startswith("skipped: the run's loss has no classes")
    assert "embeddings" in neurons["skipped_layers"]
    sync = json.loads((own_project / "results/runs/chars/stats/synchronization.json").read_text())
    assert "lca_by_class" not in sync["signals"] and "lca_by_class" in sync["skipped"]
    for run in ("chars", "convnet"):
        for name in FIGURES:
            assert (own_project / "results" / "runs" / run / "figures" / name).stat().st_size > 5000, (run, name)
    names = zipfile.ZipFile(own_project / "report.zip").namelist()
    assert any(n.endswith("specialization.png") for n in names)
    assert "no run whose loss has classes" not in (own_project / "results/claims.md").read_text()


def test_a_recorded_run_says_only_what_its_recording_knows(own_project):
    """No made-up training settings: run.config and the plan of a recorded run hold what the recording knows."""
    with lcaflow.open_run(own_project / "results/runs/chars") as chars:
        config = chars.config
    assert config["iterations"] == 12 and config["trajectory"] == "chars.h5" and config["validation"] == "test"
    assert not {"batch_size", "optimizer", "val_size", "split_seed", "checkpoint_every", "layers"} & set(config)
    with lcaflow.open_run(own_project / "results/runs/convnet") as convnet:  # trained by the workflow: every setting
        assert convnet.config["batch_size"] == 50 and convnet.config["optimizer"]["momentum"] == 0.9
    plan = json.loads((own_project / "results/plan.json").read_text())["runs"]
    assert set(plan["chars"]["jobs"]) == {"adopt_trajectory", "gradients", "assemble", "analyses", "figures"}
    assert plan["chars"]["calibration"]["batches"]["train"] is None and plan["chars"]["calibration"]["optimizer"] is None
    assert "train" in plan["convnet"]["jobs"] and plan["convnet"]["calibration"]["batches"]["train"] == 50
    text = (own_project / "results/plan.md").read_text()
    assert "| adopt_trajectory | 1 |" in text and "no training step (a recorded run is adopted, not trained)" in text


def test_the_reports_front_page_shows_each_runs_headline_numbers(own_project):
    report = zipfile.ZipFile(own_project / "report.zip")
    pages = [report.read(n).decode(errors="replace") for n in report.namelist() if n.endswith(".html")]
    front = next(p for p in pages if "Headline numbers of each run" in p)
    summary = json.loads((own_project / "results/runs/convnet/summary/summary.json").read_text())
    assert f"{summary['loss_initial']:.4g} to {summary['loss_final']:.4g}" in front
    assert "4:Linear" in front or "0:Conv2d" in front  # the group that helped most
    assert "Claims of the paper" in front and "not comparable" in front  # 12 iterations: not the paper's whole runs


def test_open_runs_lines_up_runs_of_different_models(own_project):
    folders = [own_project / "results/runs/chars", own_project / "results/runs/convnet"]
    with lcaflow.open_runs(folders) as runs:
        assert runs.names == ("chars", "convnet") and runs.groups == ("embeddings", "mix", "head", "0:Conv2d", "4:Linear")
        totals = runs.totals()
        assert np.isnan(totals[0, 3:]).all() and np.isnan(totals[1, :3]).all()  # each run's own groups only
        assert np.allclose(totals[1, 3:], list(runs["convnet"].totals().values()))
        assert runs.classes[:2] == ["T-shirt/top", "Trouser"]
        by_class = runs.by_class()
        assert np.isnan(by_class[0]).all() and np.isfinite(by_class[1]).all()  # chars' loss has no classes
        assert runs.per_iteration().shape == (2, 12) and np.isnan(runs.group("mix")[1]).all()


def test_open_run_warns_about_results_older_than_the_trajectory(own_project, tmp_path):
    """A failed rerun leaves the previous lca.h5 (Snakemake removes the failed job's outputs only)."""
    run = tmp_path / "chars"
    run.mkdir()
    shutil.copy(own_project / "results/runs/chars/lca.h5", run)
    shutil.copytree(own_project / "results/runs/chars/chunks", run / "chunks")  # lca.h5 reads its matrix there
    with pytest.warns(UserWarning, match="trajectory.h5 is missing, so lca.h5 may be out of date"):
        lcaflow.open_run(run).close()
    shutil.copy(own_project / "results/runs/convnet/trajectory.h5", run)
    with pytest.warns(UserWarning, match="lca.h5 was made from another trajectory than trajectory.h5"):
        lcaflow.open_run(run).close()


def test_editing_the_model_file_recomputes_the_run(own_project):
    result = snakemake(own_project, "-n", "--cores", "1", "--configfile", "lca.yaml")
    assert "Nothing to be done" in result.stdout + result.stderr
    with open(own_project / "models.py", "a") as fh:  # Snakemake compares contents: a mere touch reruns nothing
        fh.write("\n# edited\n")
    result = snakemake(own_project, "-n", "--cores", "1", "--configfile", "lca.yaml")
    assert "adopt_trajectory" in result.stdout and "train" in result.stdout


# ---- bad input: one line, before compute ------------------------------------------------------


def _config(tmp_path, **run):
    base = {
        "dataset": "fashion_mnist",
        "architecture": "mnist_fc",
        "optimizer": {"name": "sgd", "lr": 0.05},
        "batch_size": 10,
        "iterations": 4,
    }
    return {"runs": {"r": {**base, **run}}}


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    "source,ref,message",
    [
        (None, "nowhere.py:build", "runs.r.architecture: file nowhere.py not found"),
        ("def other():\n    pass\n", "m.py:build", "runs.r.architecture: m.py has no 'build'; its callables: other"),
        ("import not_a_module\n", "m.py:build", "importing m.py failed (ModuleNotFoundError: No module named 'not_a_module')"),
        (
            "def build():\n    raise ValueError('width must be even')\n",
            "m.py:build",
            "m.py:build raised ValueError: width must be even",
        ),
        ("def build():\n    return 3\n", "m.py:build", "m.py:build returned a int, not a torch.nn.Module"),
        (None, "no_such_package.models:build", "runs.r.architecture: no module 'no_such_package.models'"),
    ],
)
def test_a_model_that_cannot_be_imported_or_built_is_one_line(in_tmp, source, ref, message):
    if source:
        (in_tmp / "m.py").write_text(source)
    with pytest.raises(ConfigError) as err:
        validate_config(_config(in_tmp, architecture=ref))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_group_patterns_that_match_nothing_or_overlap(in_tmp):
    with pytest.raises(
        ConfigError, match=r"runs.r.groups.attn: 'attn' matches no parameter; parameters are named like fc1.weight"
    ):
        validate_config(_config(in_tmp, groups={"attn": "attn"}))
    with pytest.raises(ConfigError, match="parameter fc1.bias is claimed by both biases and first"):
        validate_config(_config(in_tmp, groups={"biases": "bias", "first": "fc1"}))
    groups = {"hidden": r"^fc[12]\."}
    assert validate_config(_config(in_tmp, groups=groups))["runs"]["r"]["groups"] == groups


MODELS = """
import torch
from torch import nn

def linear(n_in=4, n_out=3):
    return nn.Sequential(nn.Flatten(), nn.Linear(n_in, n_out))

class NaNOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
    def forward(self, x):
        return self.fc(x) * float("nan")

def nan_model():
    return NaNOut()

def regressor():
    return nn.Sequential(nn.Linear(4, 1), nn.Flatten(0))
"""

DATA = """
import torch
from torch.utils.data import TensorDataset

def classes(n=40):
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 4, generator=g), torch.arange(n) % 3), TensorDataset(torch.randn(8, 4, generator=g), torch.arange(8) % 3)

def floats(n=40):
    return TensorDataset(torch.randn(n, 4), torch.randn(n)), TensorDataset(torch.randn(8, 4), torch.randn(8))

def not_pairs():
    return [torch.zeros(4)] * 5, []

def one_set():
    return TensorDataset(torch.randn(5, 4), torch.zeros(5))
"""


def _user_files(folder):
    (folder / "user_models.py").write_text(MODELS)
    (folder / "user_data.py").write_text(DATA)


def _train_user(folder, dataset, **run):
    _user_files(folder)
    ref = f"user_data.py:{dataset}"
    write_data_file(folder / "d.h5", ref, load_user_dataset(ref, {}, "config: runs.r.dataset"), raw_inputs=True)
    cfg = validate_config(
        _config(folder, **{"dataset": ref, "architecture": "user_models.py:linear", "val_size": 8, "device": "cpu", **run})
    )
    train("r", cfg["runs"]["r"], str(folder / "d.h5"), str(folder / "t.h5"), str(folder / "ckpt"))


@pytest.mark.parametrize(
    "dataset,run,error,message",
    [
        (
            "floats",
            {},
            ConfigError,
            "runs.r.loss: loss cross_entropy needs integer class indices as targets, the dataset gives float32 scalars",
        ),
        ("classes", {"loss": "mse"}, ConfigError, "runs.r.loss: loss mse needs float targets, the dataset gives torch.int64"),
        (
            "classes",
            {"architecture_args": {"n_in": 5}},
            ConfigError,
            "runs.r.architecture: the model failed on inputs (8, 4) torch.float32",
        ),
        (
            "classes",
            {"loss": "token_cross_entropy"},
            ConfigError,
            "do not fit loss token_cross_entropy (expected outputs (N, S, V) and targets (N, S))",
        ),
        (
            "classes",
            {"architecture": "user_models.py:nan_model"},
            DivergenceError,
            "run r: the loss at theta_0 is nan on the first examples",
        ),
        (
            "classes",
            {"architecture_args": {"n_out": 2}},
            ConfigError,
            "runs.r.architecture: the model gives 2 outputs per example but the dataset has 3 classes; give the model 3 outputs",
        ),
    ],
)
def test_outputs_targets_and_loss_that_do_not_fit_stop_before_training(in_tmp, dataset, run, error, message):
    with pytest.raises(error) as err:
        _train_user(in_tmp, dataset, **run)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (in_tmp / "ckpt").exists() and not (in_tmp / "t.h5").exists()  # nothing started


@pytest.mark.parametrize("loss", ["mse", "user_losses.py:absolute"])
def test_a_regression_model_trains_with_mse_or_a_loss_from_a_file(in_tmp, loss):
    (in_tmp / "user_losses.py").write_text("def absolute(outputs, targets):\n    return (outputs - targets).abs()\n")
    _train_user(in_tmp, "floats", loss=loss, architecture="user_models.py:regressor")
    with h5py.File(in_tmp / "t.h5") as f:
        assert np.isfinite(f["minibatch_loss"][()]).all() and f["params"].shape == (5, 5)
        assert f.attrs["per_class"] == False and list(f["classes"].asstr()[()]) == ["all examples"]  # noqa: E712


@pytest.mark.parametrize(
    "dataset,message",
    [
        ("not_pairs", "item 0 of the train set is a Tensor, not an (input, target) pair"),
        ("one_set", "must return (train, test), two torch Datasets; it returned a TensorDataset"),
    ],
)
def test_a_dataset_that_is_not_input_target_pairs_is_one_line(in_tmp, dataset, message):
    _user_files(in_tmp)
    with pytest.raises(ConfigError) as err:
        load_user_dataset(f"user_data.py:{dataset}", {}, "config: runs.r.dataset")
    assert message in str(err.value)


def _recorded(folder, model, steps=3, poison=False):
    recorder = lcaflow.TrajectoryRecorder(folder / "rec.h5", model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(steps):
        loss = model(torch.randn(5, 4)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        recorder.step(loss)
    recorder.close()
    if poison:
        with h5py.File(folder / "rec.h5", "r+") as f:
            f["params"][2, 0] = np.nan


def _adopt(folder, **run):
    _user_files(folder)
    ref = "user_data.py:classes"
    write_data_file(folder / "d.h5", ref, load_user_dataset(ref, {}, "config: runs.r.dataset"), raw_inputs=True)
    cfg = validate_config(
        {"runs": {"r": {"dataset": ref, "architecture": "user_models.py:linear", "trajectory": "rec.h5", "val_size": 8, **run}}}
    )
    assert cfg["runs"]["r"]["iterations"] == 3  # from the recording
    assert cfg["runs"]["r"]["validation"] == "test"  # the loop trained on all of train
    adopt_trajectory("r", cfg["runs"]["r"], "rec.h5", str(folder / "d.h5"), str(folder / "t.h5"))


def test_a_trajectory_of_another_model_or_with_nan_is_refused(in_tmp):
    from torch import nn

    _recorded(in_tmp, nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))
    with pytest.raises(
        ConfigError,
        match=r"rec.h5 was recorded from another model than user_models.py:linear \(1.weight: recorded \(2, 4\), model \(3, 4\)\)",
    ):
        _adopt(in_tmp)
    _recorded(in_tmp, nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), poison=True)
    with pytest.raises(DivergenceError, match="theta_2 has non-finite parameters"):
        _adopt(in_tmp)
    assert not (in_tmp / "t.h5").exists()
    _recorded(in_tmp, nn.Sequential(nn.Flatten(), nn.Linear(4, 3)))
    _adopt(in_tmp)
    with h5py.File(in_tmp / "t.h5") as f:
        assert f["params"].shape == (4, 15) and list(f["classes"].asstr()[()]) == ["0", "1", "2"]


def test_missing_or_unfinished_recordings_are_named(in_tmp):
    from torch import nn

    model = nn.Linear(4, 3)
    with pytest.raises(RuntimeError), lcaflow.TrajectoryRecorder(in_tmp / "rec.h5", model) as recorder:
        recorder.step(1.0)
        raise RuntimeError("the loop crashed")
    assert not (in_tmp / "rec.h5").exists() and (in_tmp / "rec.h5.partial").exists()
    with pytest.raises(  # where it looked: a relative path is read from the working directory
        ConfigError, match=rf"runs.r.trajectory: rec.h5 not found \(looked in {in_tmp}\) \(rec.h5.partial exists: that recording did not finish\)"
    ):
        validate_config({"runs": {"r": {"architecture": "mnist_fc", "trajectory": "rec.h5"}}})
    recorder = lcaflow.TrajectoryRecorder(in_tmp / "rec.h5", model, iterations=5)
    recorder.step(1.0)
    with pytest.raises(LCAError, match="recorded 1 steps of the 5 announced"):
        recorder.close()
    with torch.no_grad():
        model.weight[0, 0] = float("inf")
    with pytest.raises(DivergenceError, match="theta_0 has non-finite parameters"):
        lcaflow.TrajectoryRecorder(in_tmp / "rec2.h5", model)


class _Payload:
    def __reduce__(self):
        return (open, ("pwned", "w"))


def test_a_checkpoint_never_runs_a_pickle(in_tmp):
    """A state.pt someone left in a shared results folder is not executed (weights_only=True)."""
    (in_tmp / "ckpt").mkdir()
    torch.save({"fingerprint": "x", "payload": _Payload()}, in_tmp / "ckpt" / "state.pt")
    np.zeros((3, 2), np.float32).tofile(in_tmp / "ckpt" / "params.f32")
    ckpt = Checkpoint(in_tmp / "ckpt", "x", 3, 2)
    assert ckpt.state is None and not (in_tmp / "pwned").exists()


def test_a_user_run_is_sized_from_its_data_file(in_tmp):
    """Cluster requests and the disk check: measured from the model and data once the data file exists,
    conservative defaults before."""
    from lcaflow.cost import disk, memory
    from lcaflow.cost.size import RunSize
    from lcaflow.spec import RunSpec

    _user_files(in_tmp)
    ref = "user_data.py:classes"
    write_data_file(in_tmp / "d.h5", ref, load_user_dataset(ref, {}, "config: runs.r.dataset"), raw_inputs=True)
    cfg = validate_config(_config(in_tmp, dataset=ref, architecture="user_models.py:linear", val_size=8))
    spec, lca = RunSpec.of("r", cfg["runs"]["r"]), cfg["lca"]
    size = RunSize.of(spec, str(in_tmp / "d.h5"))
    assert (size.num_params, size.n_train, size.n_val, size.model.input_numel) == (15, 32, 8, 4)
    assert disk.by_kind(disk.run_files(spec, size, lca, "results"))["trajectory"] == 5 * 15 * 4
    assert RunSize.of(spec, None) is None
    assert memory.gradient_mem_mb(RunSize.of(spec, None), lca) == memory.UNKNOWN_MEM_MB


def test_tied_weights_are_one_tensor_of_theta(in_tmp):
    """A head sharing the embedding's weight (GPT-style) is recorded and evaluated once, under its first name."""
    from torch import nn

    from lcaflow.models import flat_params, layout_of

    model = nn.Sequential(nn.Embedding(7, 4), nn.Linear(4, 7))
    model[1].weight = model[0].weight  # (7, 4) both
    layout = layout_of(model)
    assert layout.names == ("0.weight", "1.bias") and layout.num_params == 7 * 4 + 7
    assert flat_params(model, layout).shape == (35,)
    with pytest.raises(ConfigError, match=r"groups.head: '1\\.weight' matches only 1.weight, which is tied to 0.weight") as err:
        layout_of(model, {"head": r"1\.weight"})  # a group for the head's name: the error names the tensor in theta
    assert str(err.value).endswith("match 0.weight instead")
    with lcaflow.TrajectoryRecorder(in_tmp / "tied.h5", model) as recorder:
        recorder.step(0.0)
    with h5py.File(in_tmp / "tied.h5") as f:
        assert f["params"].shape == (2, 35)


def test_a_failed_rerecording_leaves_no_old_file_behind(in_tmp):
    from torch import nn

    model = nn.Linear(4, 3)
    with lcaflow.TrajectoryRecorder(in_tmp / "rec.h5", model) as recorder:
        recorder.step(1.0)
    with pytest.raises(RuntimeError), lcaflow.TrajectoryRecorder(in_tmp / "rec.h5", model):
        raise RuntimeError("crashed")
    assert not (in_tmp / "rec.h5").exists()


FROZEN = """
import torch
from torch import nn

def frozen_backbone():
    backbone = nn.Linear(4, 4)
    backbone.requires_grad_(False)
    return nn.Sequential(backbone, nn.Linear(4, 3))
"""


def test_frozen_parameters_the_model_does_not_rebuild_are_refused(in_tmp):
    _user_files(in_tmp)
    (in_tmp / "frozen.py").write_text(FROZEN)
    torch.manual_seed(123)  # not the run's seed: the frozen layer differs from what the workflow builds
    model = _load_frozen(in_tmp)
    _recorded(in_tmp, model)
    ref = "user_data.py:classes"
    write_data_file(in_tmp / "d.h5", ref, load_user_dataset(ref, {}, "config: runs.r.dataset"), raw_inputs=True)
    cfg = validate_config(
        {"runs": {"r": {"dataset": ref, "architecture": "frozen.py:frozen_backbone", "trajectory": "rec.h5", "val_size": 8}}}
    )
    with pytest.raises(
        ConfigError, match=r"runs.r.trajectory: the model's frozen parameters \(requires_grad False\) differ from the recording's"
    ):
        adopt_trajectory("r", cfg["runs"]["r"], "rec.h5", str(in_tmp / "d.h5"), str(in_tmp / "t.h5"))
    torch.manual_seed(0)  # the run's seed: the same frozen layer
    _recorded(in_tmp, _load_frozen(in_tmp))
    adopt_trajectory("r", cfg["runs"]["r"], "rec.h5", str(in_tmp / "d.h5"), str(in_tmp / "t.h5"))


def _load_frozen(folder):
    import importlib.util

    spec = importlib.util.spec_from_file_location("frozen_test_module", folder / "frozen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.frozen_backbone()


def test_layer_and_group_names_that_are_digits(in_tmp):
    """nn.Sequential's modules are named 0, 1, ...: YAML reads `layers: {1: ...}` as an integer key."""
    _user_files(in_tmp)
    cfg = validate_config(
        yaml.safe_load("""
runs:
  r:
    dataset: fashion_mnist
    architecture: "user_models.py:linear"
    architecture_args: {n_in: 784, n_out: 10}
    optimizer: {name: sgd, lr: 0.1}
    batch_size: 10
    iterations: 4
    layers: {1: {lr_factor: 0.5}}
""")
    )
    # the position names the default group of that position: 1:Linear
    assert cfg["runs"]["r"]["layers"] == {"1:Linear": {"freeze": False, "freeze_at": None, "lr_factor": 0.5}}


def test_a_scalar_parameter_has_no_units():
    from lcaflow.layout import Layout, units_of

    layout = Layout(("w", "scale"), ((3, 4), ()), (0, 12), ("g", "g"), ("g",))
    units, why = units_of(layout, "g")
    assert units is None and "scale none (a scalar)" in why


def test_an_exception_inside_a_dataset_is_one_line(in_tmp):
    (in_tmp / "broken.py").write_text(
        "class D:\n    def __len__(self):\n        return 3\n    def __getitem__(self, i):\n        raise OSError('image 2.png unreadable')\n"
        "def load():\n    return D(), D()\n"
    )
    with pytest.raises(
        ConfigError, match=r"reading item 0 of the train set failed \(OSError: image 2.png unreadable\); fix the Dataset"
    ):
        load_user_dataset("broken.py:load", {}, "config: runs.r.dataset")


def test_a_recording_of_every_kth_theta_is_adopted_as_segments(in_tmp):
    from torch import nn

    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with lcaflow.TrajectoryRecorder(in_tmp / "rec.h5", model, every=2) as recorder:
        for _ in range(6):
            loss = model(torch.randn(5, 4)).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            recorder.step(loss)
    _adopt(in_tmp)  # 4 thetas: 3 segments, the run's iterations
    with h5py.File(in_tmp / "t.h5") as f:
        assert json.loads(f.attrs["steps"]) == [0, 2, 4, 6] and f["minibatch_loss"].shape == (3,)


SWAPPED = """
from torch import nn

def relu():
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU())

def gelu():  # the same names and shapes, another function
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.GELU())
"""


def test_a_model_changed_after_recording_with_the_same_names_and_shapes_is_refused(in_tmp):
    """The recorder keeps the first inputs and the outputs at theta_0; adoption recomputes them."""
    (in_tmp / "swap.py").write_text(SWAPPED)
    _user_files(in_tmp)
    from lcaflow.models import build_model

    _recorded(in_tmp, build_model("swap.py:relu", None, 0, 0))
    with h5py.File(in_tmp / "rec.h5") as f:
        assert f["probe/inputs"].shape == (4, 4) and f["probe/outputs"].shape == (4, 3)
    with pytest.raises(
        ConfigError,
        match=r"^config: runs.r.trajectory: swap.py:gelu at the recording's theta_0 gives other outputs on its first inputs than the "
        r"recorded model \(max difference .*\); the model changed after recording \(an activation, a normalisation\?\)",
    ):
        _adopt(in_tmp, architecture="swap.py:gelu")
    _adopt(in_tmp, architecture="swap.py:relu")  # the model that was trained
