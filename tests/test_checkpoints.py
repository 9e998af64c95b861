"""Checkpoint files as a trajectory (runs.<run>.trajectory a glob or a list): every format read without
running pickled code into the model's theta, and every bad input one line."""

import numpy as np
import pytest
import torch
from torch import nn

from lcaflow.checkpoints import aliases, checkpoint_files, checkpoint_row, read_state, step_of
from lcaflow.config import validate_config
from lcaflow.errors import ConfigError, DivergenceError
from lcaflow.models import flat_params, layout_of

WHERE = "config: runs.r.trajectory"


def _model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(7, 4), nn.Linear(4, 7))
    model[1].weight = model[0].weight  # tied, as GPT-2's head and embedding
    return model


def _row(model, path):
    layout = layout_of(model)
    return checkpoint_row(read_state(str(path), WHERE), layout, aliases(model), str(path), WHERE)


def test_every_format_reads_into_the_models_theta(tmp_path):
    from safetensors.torch import save_file

    model = _model()
    theta = flat_params(model, layout_of(model)).numpy()
    torch.save(model.state_dict(), tmp_path / "step-1.pt")
    torch.save({"state_dict": model.state_dict(), "global_step": 2, "epoch": 0}, tmp_path / "epoch=0-step=2.ckpt")  # Lightning's
    only_head = {"1.weight": model[1].weight.detach().clone(), "1.bias": model[1].bias.detach().clone()}  # the tie stored once,
    save_file(only_head, tmp_path / "step-3.safetensors")  # under the other name
    (tmp_path / "checkpoint-4").mkdir()  # a save_pretrained directory
    save_file({k: v.contiguous() for k, v in only_head.items()}, tmp_path / "checkpoint-4" / "model.safetensors")
    for name in ("step-1.pt", "epoch=0-step=2.ckpt", "step-3.safetensors", "checkpoint-4"):
        np.testing.assert_array_equal(_row(model, tmp_path / name), theta, err_msg=name)
    assert [s for s, _ in checkpoint_files(str(tmp_path / "*"), WHERE)] == [1, 2, 3, 4]
    assert step_of("ckpt_000200.pt") == 200 and step_of("epoch=3-step=1500.ckpt") == 1500 and step_of("checkpoint-50") == 50


def test_buffers_and_what_hugging_face_ignores_are_no_other_model(tmp_path):
    """A checkpoint may hold the model's buffers (batch-norm statistics), torch's _extra_state and what Hugging
    Face ignores when loading (GPT-2's attn.bias masks in checkpoints of older transformers): read, not refused."""
    from lcaflow.checkpoints import ignored_keys

    class Net(nn.Sequential):
        _keys_to_ignore_on_load_unexpected = [r"attn\.bias"]

    model = Net(nn.Linear(3, 4), nn.BatchNorm1d(4))
    state = {**model.state_dict(), "attn.bias": torch.ones(2, 2), "1._extra_state": torch.zeros(1)}
    layout = layout_of(model)
    row = checkpoint_row(state, layout, aliases(model), "x.pt", WHERE, ignored_keys(model))
    np.testing.assert_array_equal(row, flat_params(model, layout).numpy())
    with pytest.raises(ConfigError, match=r"x.pt is of another model: it holds 2 tensor\(s\) the model lacks, first attn.bias"):
        checkpoint_row(state, layout, aliases(model), "x.pt", WHERE)  # without the model's patterns


class _Payload:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_bad_checkpoints_are_one_line(tmp_path):
    model = _model()
    torch.save(nn.Sequential(nn.Embedding(7, 5), nn.Linear(5, 7)).state_dict(), tmp_path / "other-1.pt")
    with pytest.raises(ConfigError, match=r"other-1.pt is of another model \(0.weight: \(7, 5\) in it, \(7, 4\) in the model\)$"):
        _row(model, tmp_path / "other-1.pt")
    bigger = nn.Sequential(nn.Embedding(7, 4), nn.Linear(4, 7), nn.ReLU(), nn.Linear(7, 7))  # the model and one more layer
    torch.save(bigger.state_dict(), tmp_path / "bigger-1.pt")
    with pytest.raises(ConfigError, match=r"bigger-1.pt is of another model: it holds 2 tensor\(s\) the model lacks, first 3.weight; check"):
        _row(model, tmp_path / "bigger-1.pt")
    torch.save({"0.weight": model[0].weight.detach()}, tmp_path / "part-1.pt")
    with pytest.raises(ConfigError, match=r"part-1.pt lacks parameter 1.bias: a checkpoint of another model, or a partial one$"):
        _row(model, tmp_path / "part-1.pt")
    state = model.state_dict()
    state["1.bias"] = torch.full((7,), float("nan"))
    torch.save(state, tmp_path / "nan-1.pt")
    with pytest.raises(DivergenceError, match=r"nan-1.pt has non-finite parameters; the training diverged there: leave it out$"):
        _row(model, tmp_path / "nan-1.pt")
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": _Payload()}, tmp_path / "pickled-1.ckpt")
    with pytest.raises(ConfigError, match=r"pickled-1.ckpt can only be loaded by running pickled code, which lcaflow never does; convert it"):
        _row(model, tmp_path / "pickled-1.ckpt")


@pytest.mark.parametrize(
    "files,message",
    [
        ([], r"ckpt/\*.pt matches 0 files \(looked in .*\); a trajectory of checkpoints needs at least two"),
        (["a-1.pt"], r"ckpt/\*.pt matches 1 file \(looked in .*\); a trajectory of checkpoints needs at least two"),
        (["a-1.pt", "b-1.pt"], r"ckpt/a-1.pt and ckpt/b-1.pt are both step 1; keep one of them"),
        (["a-1.pt", "last.pt"], r"ckpt/last.pt has no step number in its name; rename it"),
    ],
)
def test_a_glob_of_too_few_or_ambiguous_checkpoints_is_one_line_at_config_time(tmp_path, monkeypatch, files, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ckpt").mkdir()
    for name in files:
        torch.save({}, tmp_path / "ckpt" / name)
    with pytest.raises(ConfigError, match=f"^config: runs.r.trajectory: {message}") as err:
        validate_config({"runs": {"r": {"architecture": "mnist_fc", "dataset": "fashion_mnist", "trajectory": "ckpt/*.pt"}}})
    assert "\n" not in str(err.value)


def test_a_list_of_checkpoints_sets_the_runs_segments(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for step in (20, 0, 10):
        torch.save({}, tmp_path / f"step{step}.pt")
    cfg = validate_config({"runs": {"r": {"architecture": "mnist_fc", "dataset": "fashion_mnist", "trajectory": ["step20.pt", "step0.pt", "step10.pt"]}}})
    assert cfg["runs"]["r"]["iterations"] == 2 and cfg["runs"]["r"]["validation"] == "test"
    assert checkpoint_files(cfg["runs"]["r"]["trajectory"], WHERE) == [(0, "step0.pt"), (10, "step10.pt"), (20, "step20.pt")]


def test_steps_name_the_files_in_their_listed_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("start.pt", "middle.pt", "end.pt"):
        torch.save({}, tmp_path / name)
    run = {"architecture": "mnist_fc", "dataset": "fashion_mnist", "trajectory": ["start.pt", "middle.pt", "end.pt"], "steps": [0, 40, 100]}
    cfg = validate_config({"runs": {"r": run}})
    assert cfg["runs"]["r"]["iterations"] == 2
    assert checkpoint_files(run["trajectory"], WHERE, run["steps"]) == [(0, "start.pt"), (40, "middle.pt"), (100, "end.pt")]


@pytest.mark.parametrize(
    "trajectory,steps,message",
    [
        (["a.pt", "b.pt", "c.pt"], [0, 10], r"runs.r.steps: 2 steps for 3 checkpoint files; give one step per file, in their order$"),
        (["a.pt", "b.pt", "c.pt"], [0, 20, 10], r"runs.r.steps: 10 follows 20; the steps must increase strictly, in the order of the files$"),
        (["a.pt", "b.pt", "c.pt"], [0, 10, 10], r"runs.r.steps: 10 follows 10; the steps must increase strictly"),
        (["a.pt", "b.pt", "c.pt"], [-1, 0, 1], r"runs.r.steps: \[-1, 0, 1\]; give a list of whole step numbers >= 0, one per checkpoint file$"),
        (["a.pt", "b.pt", "c.pt"], [0, 1.5, 2], r"runs.r.steps: \[0, 1.5, 2\]; give a list of whole step numbers >= 0"),
        ("rec.h5", [0, 1], r"runs.r.steps: only for a trajectory of checkpoint files \(a glob or a list\); a recording has its own steps: remove it$"),
        (None, [0, 1], r"runs.r.steps: only for a trajectory of checkpoint files \(a glob or a list\); a trained run has no checkpoints: remove it$"),
    ],
)
def test_bad_steps_are_one_line_at_config_time(tmp_path, monkeypatch, trajectory, steps, message):
    monkeypatch.chdir(tmp_path)
    for name in ("a.pt", "b.pt", "c.pt"):
        torch.save({}, tmp_path / name)
    run = {"architecture": "mnist_fc", "dataset": "fashion_mnist", "trajectory": trajectory, "steps": steps}
    with pytest.raises(ConfigError, match=f"^config: {message}") as err:
        validate_config({"runs": {"r": {k: v for k, v in run.items() if v is not None}}})
    assert "\n" not in str(err.value)
