"""The Hugging Face Trainer and Lightning callbacks on real runs of the real libraries (tiny models built
from configs, no download): each records what the plain recorder records when the same micro-batches are
replayed in a plain loop, once per optimizer step under gradient accumulation."""

import json

import h5py
import numpy as np
import pytest
import torch

import lcaflow

transformers = pytest.importorskip("transformers", reason="the hf extra: pip install -e '.[hf]'")


def _read(path):
    with h5py.File(path) as f:
        return f["params"][()], f["minibatch_loss"][()], json.loads(f.attrs.get("optimizer", "null"))


def tiny_gpt2(vocab=48, positions=16):
    """A 2-layer GPT-2 of 32 dimensions, dropout off (the workflow's L(theta) is deterministic)."""
    config = transformers.GPT2Config(
        vocab_size=vocab, n_positions=positions, n_embd=32, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, use_cache=False,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(config)


def _token_rows(n=16, length=12, vocab=48):
    g = torch.Generator().manual_seed(3)
    return [torch.randint(vocab, (length,), generator=g) for _ in range(n)]


def _replay(path, batches, lr, momentum, accumulate):
    """The plain recorder on a plain loop over the micro-batches the Trainer ran, each loss normalised by the
    token count the Trainer gave the model (`num_items_in_batch`; this version counts all 12 labels of a
    row, the model's loss 11 after shifting them)."""
    model = tiny_gpt2()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    with lcaflow.TrajectoryRecorder(path, model) as recorder:
        for i in range(0, len(batches), accumulate):
            losses = []
            for ids, labels, items in batches[i : i + accumulate]:
                loss = model(ids, labels=labels, num_items_in_batch=items).loss  # the step's sum / its tokens
                loss.backward()
                losses.append(loss.item())
            opt.step()
            opt.zero_grad()
            recorder.step(sum(losses))
    return _read(path)


def test_the_trainer_callback_records_the_plain_recorders_trajectory(tmp_path):
    from lcaflow.integrations.hf import TrajectoryCallback

    model = tiny_gpt2()
    seen = []  # the micro-batches the Trainer feeds, in order
    model.register_forward_pre_hook(
        lambda m, a, kw: seen.append((kw["input_ids"], kw["labels"], kw["num_items_in_batch"])) if m.training else None,
        with_kwargs=True,
    )
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=3, per_device_train_batch_size=4, gradient_accumulation_steps=2,
        optim="sgd", learning_rate=0.1, lr_scheduler_type="constant", max_grad_norm=0.0, weight_decay=0.0,
        report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True, disable_tqdm=True, seed=0,
    )  # fmt: skip
    data = [{"input_ids": r, "labels": r} for r in _token_rows()]
    callback = TrajectoryCallback(tmp_path / "hf.h5")
    transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=[callback]).train()
    recorded, losses, described = _read(tmp_path / "hf.h5")
    assert len(seen) == 6 and recorded.shape[0] == 4  # 6 micro-batches, 3 optimizer steps
    assert described["name"] == "sgd" and described["lr"] == 0.1
    plain, plain_losses, _ = _replay(tmp_path / "plain.h5", seen, 0.1, described.get("momentum", 0.0), accumulate=2)
    np.testing.assert_allclose(recorded, plain, rtol=0, atol=2e-6)
    np.testing.assert_allclose(losses, plain_losses, rtol=1e-5)  # the shares of num_items_in_batch add up to the mean
    with h5py.File(tmp_path / "hf.h5") as f:  # tied lm_head and wte: one tensor, under its first name
        names = list(f["layout/names"].asstr()[()])
    assert "transformer.wte.weight" in names and "lm_head.weight" not in names


def _lightning_module():
    import lightning

    class Classifier(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.cross_entropy(self(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

    return Classifier()


def _classes(n=48):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 4, generator=g), torch.randint(3, (n,), generator=g)


def test_the_lightning_callback_records_once_per_accumulated_step(tmp_path):
    import lightning

    from lcaflow.integrations.lightning import TrajectoryCallback

    x, y = _classes()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)  # in order: 6 micro-batches
    trainer = lightning.Trainer(
        accelerator="cpu", devices=1, max_steps=3, accumulate_grad_batches=2, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[TrajectoryCallback(tmp_path / "pl.h5")],
    )  # fmt: skip
    trainer.fit(_lightning_module(), loader)
    recorded, losses, described = _read(tmp_path / "pl.h5")
    assert described["name"] == "sgd" and described["momentum"] == 0.9
    model = _lightning_module()  # the plain recorder on the same micro-batches, two per step
    opt = model.configure_optimizers()
    with lcaflow.TrajectoryRecorder(tmp_path / "plain.h5", model) as recorder:
        for step in range(3):
            micro = [torch.nn.functional.cross_entropy(model(x[a : a + 8]), y[a : a + 8]) for a in (16 * step, 16 * step + 8)]
            sum(m / 2 for m in micro).backward()
            opt.step()
            opt.zero_grad()
            recorder.step(sum(m.item() for m in micro) / 2)
    plain, plain_losses, _ = _read(tmp_path / "plain.h5")
    assert recorded.shape == plain.shape == (4, 4 * 8 + 8 + 8 * 3 + 3)
    np.testing.assert_allclose(recorded, plain, rtol=0, atol=1e-6)
    np.testing.assert_allclose(losses, plain_losses, rtol=1e-6)
    with h5py.File(tmp_path / "pl.h5") as f:  # named as in the module
        assert list(f["layout/names"].asstr()[()])[:2] == ["net.0.weight", "net.0.bias"]


def _torchrun(worker, *args) -> dict:
    """`worker(*args)` in two DDP processes on CPU, started as torchrun --standalone --nproc_per_node=2 starts
    them (its launcher, torch.distributed.launcher.elastic_launch: the RANK, WORLD_SIZE, MASTER_* and
    TORCHELASTIC_* environment), forked rather than spawned (a spawned process imports torch and the library
    again: 10-20 s); each worker's return value by rank."""
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=2, rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0", max_restarts=0,
        monitor_interval=0.05, start_method="fork",
    )  # fmt: skip
    return elastic_launch(config, worker)(*args)


def _probe(path):
    with h5py.File(path) as f:
        return torch.from_numpy(f["probe/inputs"][()]), torch.from_numpy(f["probe/outputs"][()])


def _hf_ddp_worker(out: str) -> list:
    """One rank of the Trainer test's run (4 rows a rank per micro-batch, 2 micro-batches a step, 3 steps)
    under DDP on CPU (gloo): the callback on every rank, the micro-batches this rank's model saw kept."""
    from accelerate.state import AcceleratorState

    from lcaflow.integrations.hf import TrajectoryCallback

    AcceleratorState._reset_state(reset_partial_state=True)  # forked from pytest: a test before made it one process's
    torch.set_num_threads(1)
    model = tiny_gpt2()
    seen = []
    model.register_forward_pre_hook(
        lambda m, a, kw: seen.append((kw["input_ids"], kw["labels"], kw["num_items_in_batch"])) if m.training else None,
        with_kwargs=True,
    )
    args = transformers.TrainingArguments(
        output_dir=f"{out}/out", max_steps=3, per_device_train_batch_size=4, gradient_accumulation_steps=2,
        optim="sgd", learning_rate=0.1, lr_scheduler_type="constant", max_grad_norm=0.0, weight_decay=0.0,
        report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True, ddp_backend="gloo", disable_tqdm=True, seed=0,
    )  # fmt: skip
    data = [{"input_ids": r, "labels": r} for r in _token_rows(32)]
    transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=[TrajectoryCallback(f"{out}/hf.h5")]).train()
    return [tuple(t.detach().clone() if torch.is_tensor(t) else t for t in b) for b in seen]


def test_the_trainer_callback_under_ddp_records_the_global_batchs_trajectory_on_rank_0(tmp_path):
    """Two ranks of a Trainer under torchrun: one complete file, from rank 0; its thetas and losses are the plain
    recorder's on a plain loop over both ranks' micro-batches of each step (DDP averages the ranks' gradients;
    each rank's loss is its share of the tokens of all ranks, average_tokens_across_devices)."""
    seen = _torchrun(_hf_ddp_worker, str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf.h5", "out"]  # rank 0 wrote it, completed; rank 1 nothing
    recorded, losses, described = _read(tmp_path / "hf.h5")
    assert recorded.shape[0] == 4 and len(seen[0]) == len(seen[1]) == 6  # 3 steps of 2 micro-batches a rank
    step_batches = [b for s in range(3) for rank in (0, 1) for b in seen[rank][2 * s : 2 * s + 2]]
    plain, plain_losses, _ = _replay(tmp_path / "plain.h5", step_batches, 0.1, described.get("momentum", 0.0), accumulate=4)
    np.testing.assert_allclose(recorded, plain, rtol=0, atol=2e-6)
    np.testing.assert_allclose(losses, plain_losses, rtol=1e-5)
    inputs, outputs = _probe(tmp_path / "hf.h5")  # rank 0's first inputs, the model's outputs on them at theta_0
    assert torch.equal(inputs, seen[0][0][0][:4])
    torch.testing.assert_close(tiny_gpt2().eval()(inputs).logits, outputs, rtol=0, atol=1e-5)


def _lightning_ddp_worker(out: str) -> list:
    """One rank of the Lightning test's fit (8 examples a rank per micro-batch, 2 micro-batches a step, 3 steps)
    with strategy="ddp" on 2 CPU devices under torchrun: the callback on every rank, the batches it saw kept."""
    import lightning

    from lcaflow.integrations.lightning import TrajectoryCallback

    torch.set_num_threads(1)
    seen = []

    class Seen(lightning.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append([t.clone() for t in batch])

    x, y = _classes(96)
    trainer = lightning.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_steps=3, accumulate_grad_batches=2, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[TrajectoryCallback(f"{out}/pl.h5"), Seen()],
    )  # fmt: skip
    trainer.fit(_lightning_module(), torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8))
    return seen


def test_the_lightning_callback_under_ddp_records_the_global_batchs_trajectory_on_rank_0(tmp_path):
    """Lightning's DDP strategy on 2 CPU devices under torchrun: one complete file, from rank 0; its thetas and
    losses are the plain recorder's on a plain loop over the 4 micro-batches of each step (2 a rank)."""
    seen = _torchrun(_lightning_ddp_worker, str(tmp_path))
    assert [p.name for p in tmp_path.iterdir()] == ["pl.h5"]  # rank 0 wrote it, completed; rank 1 nothing
    recorded, losses, _ = _read(tmp_path / "pl.h5")
    assert recorded.shape[0] == 4 and len(seen[0]) == len(seen[1]) == 6
    assert not torch.equal(seen[0][0][0], seen[1][0][0])  # the ranks trained on different examples
    model = _lightning_module()
    opt = model.configure_optimizers()
    with lcaflow.TrajectoryRecorder(tmp_path / "plain.h5", model) as recorder:
        for s in range(3):  # DDP averages the ranks' gradients: the mean loss over the step's 4 micro-batches
            micro = [b for rank in (0, 1) for b in seen[rank][2 * s : 2 * s + 2]]
            loss = torch.nn.functional.cross_entropy(model(torch.cat([b[0] for b in micro])), torch.cat([b[1] for b in micro]))
            loss.backward()
            opt.step()
            opt.zero_grad()
            recorder.step(loss)
    plain, plain_losses, _ = _read(tmp_path / "plain.h5")
    np.testing.assert_allclose(recorded, plain, rtol=0, atol=1e-6)
    np.testing.assert_allclose(losses, plain_losses, rtol=1e-6)
    inputs, outputs = _probe(tmp_path / "pl.h5")  # rank 0's first inputs, the module's outputs on them at theta_0
    assert torch.equal(inputs, seen[0][0][0][:4])
    torch.testing.assert_close(_lightning_module()(inputs), outputs, rtol=0, atol=1e-6)


def test_lcaflow_imports_without_the_libraries():
    import subprocess
    import sys

    code = "import sys, lcaflow, lcaflow.trajectory, lcaflow.integrations; assert not {'transformers', 'lightning'} & set(sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).returncode == 0


def test_a_trainer_run_goes_through_the_workflow_with_config_entries_only(tmp_path):
    """The user's Trainer script with the callback (tests/user_project/hf_train.py), then the workflow with
    hf.yaml: the Hugging Face model as its function returns it (its logits taken), grounded; and the same
    run from its checkpoint folder (save_steps=2), the same thetas, grounded per segment."""
    import shutil
    import subprocess
    import sys

    from conftest import REPO, SNAKEMAKE

    project = REPO / "tests" / "user_project"
    for path in [*project.glob("*.py"), project / "hf.yaml"]:
        shutil.copy(path, tmp_path)
    trained = subprocess.run([sys.executable, "hf_train.py"], cwd=tmp_path, capture_output=True, text=True)
    assert trained.returncode == 0, trained.stderr[-3000:]
    targets = [f"results/runs/{run}/grounding.json" for run in ("gpt", "gpt_checkpoints")]
    targets.append("results/runs/gpt_checkpoints/stats/oscillation.json")
    result = subprocess.run([*SNAKEMAKE, "--cores", "2", "--configfile=hf.yaml", *targets], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    for target in targets[:2]:
        grounding = json.loads((tmp_path / target).read_text())
        assert abs(grounding["train"]["cumulative_error_pct"]) <= 1.0 and grounding["iterations_over_tolerance"] == 0, target
    with h5py.File(tmp_path / "results/runs/gpt/trajectory.h5") as f:
        config = json.loads(f.attrs["run_config"])
        recorded = f["params"][()]
        assert recorded.shape[0] == 7 and "lm_head.weight" not in list(f["layout/names"].asstr()[()])
    assert config["optimizer"]["name"] == "adamw" and config["optimizer"]["lr"] == 3e-3  # the Trainer's, not a placeholder
    with h5py.File(tmp_path / "results/runs/gpt_checkpoints/trajectory.h5") as f:  # safetensors, lm_head stored once
        assert json.loads(f.attrs["steps"]) == [2, 4, 6]
        np.testing.assert_array_equal(f["params"][()], recorded[[2, 4, 6]])  # the callback's thetas at those steps
    checked = json.loads((tmp_path / targets[0]).read_text())["recorded_losses"]  # the Trainer's losses, reproduced
    assert checked["reproduced"] and checked["median_relative_difference"] < 0.25
    assert "recorded_losses" not in json.loads((tmp_path / targets[1]).read_text())  # checkpoints carry no losses
    oscillation = json.loads((tmp_path / targets[2]).read_text())  # turns between checkpoints are not oscillation
    assert oscillation["skipped"] == "skipped: checkpoints every 2 steps; turns between them are not the optimizer's oscillation"
    with lcaflow.open_run(tmp_path / "results/runs/gpt_checkpoints") as run, lcaflow.open_run(tmp_path / "results/runs/gpt") as every:
        assert list(run.steps) == [2, 4, 6] and list(every.steps) == list(range(7))  # the time axis of each
        segments, steps = run.per_iteration(), every.per_iteration()
    np.testing.assert_allclose(segments, [steps[2:4].sum(), steps[4:6].sum()], rtol=0.02)  # both add up to the loss changes
    _figures_time_axis(tmp_path / "results/runs")
    flagged = tmp_path / targets[0]  # as open_run shows a run whose model does not reproduce its losses
    flagged.write_text(json.dumps({**json.loads(flagged.read_text()), "recorded_losses": {**checked, "reproduced": False}}))
    with pytest.warns(UserWarning, match="does not reproduce the recording's training losses"), lcaflow.open_run(flagged.parent):
        pass


def _figures_time_axis(runs):
    """The figures' time axis: optimizer steps for the run of checkpoints (a theta at its step, an iteration at
    its segment's end; the neuron heat map's columns labelled by those ends), iterations for the recorded run."""
    from lcaflow.plots import ITERATIONS, TimeAxis
    from lcaflow.plots.style import close, subplots

    assert TimeAxis.of(runs / "gpt/lca.h5") == ITERATIONS and ITERATIONS.label == "iteration"
    axis = TimeAxis.of(runs / "gpt_checkpoints/lca.h5")
    assert axis.label == "optimizer step" and list(axis.thetas([0, 1, 2])) == [2, 4, 6] and list(axis.iterations([0, 1])) == [4, 6]
    fig, axes = subplots()
    axes[0, 0].imshow(np.zeros((3, 2)))  # a column per segment, as neurons_figure draws them
    axis.columns(axes[0, 0])
    axis.name(axes[0, 0])
    fig.canvas.draw()
    assert axes[0, 0].get_xlabel() == "optimizer step"
    assert [t.get_text() for t in axes[0, 0].get_xticklabels() if t.get_text()] == ["4", "6"]
    close(fig)
    from lcaflow.explorer.views import time_x  # the explorer's time axis: each whole tick, a theta, at its step

    x = time_x({"steps": list(axis.steps)}, [0, 2]).to_dict()
    assert x["title"] == "optimizer step" and "[2, 4, 6][datum.value]" in x["axis"]["labelExpr"]


def test_the_workflow_takes_the_logits_or_the_named_entry_of_a_model_output(tmp_path, monkeypatch):
    from lcaflow.errors import ConfigError
    from lcaflow.models import build_model

    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text("from transformers import GPT2Config, GPT2LMHeadModel\n\ndef gpt(**kw):\n    return GPT2LMHeadModel(GPT2Config(**kw))\n")
    args = {"vocab_size": 16, "n_positions": 8, "n_embd": 8, "n_layer": 1, "n_head": 1, "bos_token_id": 0, "eos_token_id": 0}
    tokens = torch.zeros(2, 5, dtype=torch.int64)
    model = build_model("m.py:gpt", None, 0, 0, args, "config: runs.r.architecture")
    assert model(tokens).shape == (2, 5, 16)  # the ModelOutput's logits
    hidden = build_model("m.py:gpt", None, 0, 0, {**args, "output_hidden_states": True}, "w", output="hidden_states")
    assert isinstance(hidden(tokens), tuple)  # the named entry
    with pytest.raises(ConfigError, match=r"^w: the model returns a CausalLMOutputWithCrossAttentions without 'past' \(it holds logits\); set the run's `output`"):
        build_model("m.py:gpt", None, 0, 0, {**args, "use_cache": False}, "w", output="past")(tokens)
