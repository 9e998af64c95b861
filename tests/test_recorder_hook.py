"""TrajectoryRecorder.attach: recording through the optimizer's step hook gives the trajectory of the plain
recorder on the same run, once per real update (gradient accumulation, a step a GradScaler skips, two
DDP processes), with the optimizer's settings stored for run.config."""

import json
import socket

import h5py
import numpy as np
import pytest
import torch
from torch import nn

import lcaflow
from lcaflow.errors import LCAError


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))


def _batches(n=6, size=8):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(size, 4, generator=g), torch.randint(3, (size,), generator=g)) for _ in range(n)]


def _read(path):
    with h5py.File(path) as f:
        return f["params"][()], f["minibatch_loss"][()], json.loads(f.attrs.get("optimizer", "null"))


def _plain_run(path, accumulate=1):
    """The reference: recorder.step(loss) after each optimizer step, the loss of the whole step's batch."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with lcaflow.TrajectoryRecorder(path, model) as recorder:
        batches = _batches()
        for i in range(0, len(batches), accumulate):
            x = torch.cat([b[0] for b in batches[i : i + accumulate]])
            y = torch.cat([b[1] for b in batches[i : i + accumulate]])
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            recorder.step(loss)
    return _read(path)


def test_the_hook_records_what_the_plain_recorder_does_once_per_accumulated_step(tmp_path):
    plain, plain_loss, none = _plain_run(tmp_path / "plain.h5", accumulate=2)
    assert none is None  # no optimizer given: nothing said of it
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with lcaflow.TrajectoryRecorder(tmp_path / "hook.h5", model).attach(opt) as recorder:
        for i, (x, y) in enumerate(_batches()):  # two micro-batches of 8 per optimizer step
            loss = nn.functional.cross_entropy(model(x), y)
            (loss / 2).backward()
            recorder.add_loss(loss)
            if i % 2 == 1:
                opt.step()
                opt.zero_grad()
    hooked, hooked_loss, described = _read(tmp_path / "hook.h5")
    assert hooked.shape == plain.shape == (4, 4 * 8 + 8 + 8 * 3 + 3)
    np.testing.assert_allclose(hooked, plain, rtol=0, atol=1e-6)
    np.testing.assert_allclose(hooked_loss, plain_loss, rtol=1e-6)
    assert described == {"name": "sgd", "lr": 0.1, "momentum": 0.9, "dampening": 0, "nesterov": False, "weight_decay": 0, "maximize": False}
    opt.step()  # after close: the hook is gone, nothing more is recorded
    with pytest.raises(LCAError, match="records every step itself; give the loss with recorder.add_loss"):
        lcaflow.TrajectoryRecorder(tmp_path / "again.h5", model).attach(opt).step(loss)


def test_a_step_the_grad_scaler_skips_is_not_recorded_nor_its_loss(tmp_path):
    """GradScaler on CPU: an inf in the gradients skips optimizer.step; the skipped batch's loss is dropped."""
    plain, plain_loss, _ = _plain_run(tmp_path / "plain.h5")
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**4)
    skipped = 0
    with lcaflow.TrajectoryRecorder(tmp_path / "amp.h5", model, optimizer=opt).attach(opt, scaler=scaler) as recorder:
        for i, (x, y) in enumerate([*_batches()[:3], _batches()[3], *_batches()[3:]]):
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            scaler.scale(loss).backward()
            recorder.add_loss(loss * (1000 if i == 3 else 1))  # the skipped batch's loss must not count
            if i == 3:
                model[0].weight.grad[0, 0] = float("inf")  # an overflow: the scaler skips this step
            before = scaler.get_scale()
            scaler.step(opt)
            scaler.update()
            skipped += scaler.get_scale() < before
    hooked, hooked_loss, described = _read(tmp_path / "amp.h5")
    assert skipped == 1 and described["name"] == "sgd"
    np.testing.assert_allclose(hooked, plain, rtol=0, atol=1e-6)  # scaled and unscaled gradients agree to rounding
    np.testing.assert_allclose(hooked_loss, plain_loss, rtol=1e-6)


def test_the_optimizer_settings_reach_the_adopted_runs_config(tmp_path):
    from lcaflow.spec import RunSpec
    from lcaflow.trajectory import read_recorded

    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=torch.tensor(3e-3), betas=(0.9, 0.95))
    with lcaflow.TrajectoryRecorder(tmp_path / "rec.h5", model, optimizer=opt) as recorder:
        recorder.step(1.0)
    recorded = read_recorded(tmp_path / "rec.h5", "config: runs.r.trajectory")["optimizer"]
    assert recorded["name"] == "adamw" and recorded["lr"] == pytest.approx(3e-3) and recorded["betas"] == [0.9, 0.95]
    run = {"trajectory": "rec.h5", "validation": "test", "optimizer": {"name": "sgd", "lr": 0.05, "weight_decay": 0.0}}
    assert RunSpec.of("r", run).described(recorded)["optimizer"] == recorded


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, port, path):
    """One of two DDP processes on CPU (gloo): each trains on its half of every batch."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    torch.set_num_threads(1)
    model = nn.parallel.DistributedDataParallel(_model())
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with lcaflow.TrajectoryRecorder(path, model, optimizer=opt).attach(opt) as recorder:
        for x, y in _batches():
            loss = nn.functional.cross_entropy(model(x[rank::2]), y[rank::2])
            opt.zero_grad()
            loss.backward()
            recorder.add_loss(loss)
            opt.step()
    dist.destroy_process_group()


def test_two_ddp_processes_record_one_file_with_the_whole_batchs_trajectory(tmp_path):
    plain, plain_loss, _ = _plain_run(tmp_path / "plain.h5")
    # forked, not spawned: the workers start in milliseconds instead of importing torch again (10 s)
    torch.multiprocessing.start_processes(_ddp_worker, args=(_free_port(), str(tmp_path / "ddp.h5")), nprocs=2, start_method="fork")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp.h5", "plain.h5"]  # rank 0 wrote, rank 1 did not
    hooked, hooked_loss, described = _read(tmp_path / "ddp.h5")
    np.testing.assert_allclose(hooked, plain, rtol=0, atol=1e-5)  # gradients averaged over the halves
    np.testing.assert_allclose(hooked_loss, plain_loss, rtol=1e-5)  # the losses too
    assert described["momentum"] == 0.9


def _fsdp_worker(rank, port, path):
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=1)
    model = _model()
    fully_shard(model, mesh=init_device_mesh("cpu", (1,)))  # FSDP2: every parameter a DTensor shard
    try:
        with pytest.raises(LCAError, match=r"sharded \(FSDP\); a recording needs the whole theta .* train with DDP or on one device"):
            lcaflow.TrajectoryRecorder(path, model)
    finally:
        dist.destroy_process_group()


def test_sharded_parameters_are_refused_in_one_line(tmp_path):
    torch.multiprocessing.start_processes(_fsdp_worker, args=(_free_port(), str(tmp_path / "r.h5")), nprocs=1, start_method="fork")
    assert not list(tmp_path.iterdir())  # nothing written


def test_every_k_keeps_every_kth_theta_as_segments_and_says_what_it_weighs(tmp_path, capsys):
    from lcaflow.trajectory import read_recorded

    plain, plain_loss, _ = _plain_run(tmp_path / "plain.h5")  # 6 steps
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with lcaflow.TrajectoryRecorder(tmp_path / "every.h5", model, iterations=6, every=4).attach(opt) as recorder:
        for x, y in _batches():
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            recorder.add_loss(loss)
            opt.step()
    assert "67 parameters, theta kept every 4 steps: 3 rows, 804 B for 6 steps" in capsys.readouterr().err
    kept, kept_loss, _ = _read(tmp_path / "every.h5")
    np.testing.assert_allclose(kept, plain[[0, 4, 6]], rtol=0, atol=1e-6)  # the last, shorter segment closes the run
    np.testing.assert_allclose(kept_loss, [plain_loss[:4].mean(), plain_loss[4:].mean()], rtol=1e-6)
    assert read_recorded(tmp_path / "every.h5", "w")["steps"] == [0, 4, 6]
    with pytest.raises(LCAError, match="every=0; keep theta every k steps with a whole k >= 1"):
        lcaflow.TrajectoryRecorder(tmp_path / "never.h5", model, every=0)


def test_recorded_losses_are_checked_against_the_full_set_losses_with_their_noise():
    from lcaflow.grounding import recorded_losses_check

    rng = np.random.default_rng(0)
    full = 2.3 * np.exp(-np.arange(201) / 60) + 0.3  # the full-set losses at theta_0..theta_200
    noisy = full[:-1] + rng.normal(0, 0.15, 200)  # minibatch losses: the same function, sampling noise
    assert recorded_losses_check(noisy, full)["reproduced"]
    assert recorded_losses_check(noisy * 16 / 17, full)["reproduced"]  # a loss normalised a little differently
    checked = recorded_losses_check(noisy * 1.6, full)  # another function (e.g. other preprocessing)
    assert not checked["reproduced"] and checked["median_relative_difference"] > 0.5 and checked["windows"] == 10
    other_data = 0.95 + 0.1 * (1 - np.exp(-np.arange(201) / 60))  # other data: the level close, the loss rising
    trained = 1.1 - 0.2 * (1 - np.exp(-np.arange(200) / 60)) + rng.normal(0, 0.15, 200)  # while training lowered it
    checked = recorded_losses_check(trained, other_data)
    assert not checked["reproduced"] and checked["median_relative_difference"] < 0.25
    assert checked["recorded_change"] < -0.1 and checked["evaluated_change"] > 0.05
    assert recorded_losses_check(np.full(200, np.nan), full) is None  # no recorded losses: nothing to say
