"""Training: kill -9 at any point and rerun gives the identical trajectory; divergence stops cleanly."""

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from conftest import run_python, tiny_run


def train_cmd(run, data, out, ckpt):
    code = (
        "import torch; torch.set_num_threads(1)\n"
        "from lcaflow.progress import stage\n"
        "from lcaflow.training import train\n"
        f"with stage('train'):\n    train('r', {run!r}, {str(data)!r}, {str(out)!r}, {str(ckpt)!r})\n"
    )
    return [sys.executable, "-c", code]


def kill_after_checkpoint(cmd, ckpt, newer_than=0.0, timeout=120):
    """Start training and SIGKILL it as soon as a checkpoint newer than `newer_than` is on disk."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = ckpt / "state.pt"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if state.exists() and state.stat().st_mtime > newer_than:
            break
        if proc.poll() is not None:
            pytest.fail("training finished before it could be killed; make the test run longer")
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return state.stat().st_mtime


def read(path):
    with h5py.File(path) as f:
        return f["params"][()], f["minibatch_loss"][()], dict(f.attrs)


def test_kill_9_and_resume_gives_the_identical_trajectory(tmp_path, fashion_data_file):
    run = tiny_run(iterations=400, train_size=2000, batch_size=250, checkpoint_every=20)
    ref_out = tmp_path / "ref.h5"
    subprocess.run(train_cmd(run, fashion_data_file, ref_out, tmp_path / "ref_ckpt"), check=True, capture_output=True)

    out, ckpt = tmp_path / "trajectory.h5", tmp_path / "ckpt"
    cmd = train_cmd(run, fashion_data_file, out, ckpt)
    first = kill_after_checkpoint(cmd, ckpt)
    assert not out.exists(), "a killed run must not leave a finished-looking trajectory"
    kill_after_checkpoint(cmd, ckpt, newer_than=first)  # killed again while resuming
    assert not out.exists()
    resumed = subprocess.run(cmd, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming run r from checkpoint at iteration" in resumed.stderr

    params, losses, attrs = read(out)
    ref_params, ref_losses, ref_attrs = read(ref_out)
    assert np.array_equal(params, ref_params) and np.array_equal(losses, ref_losses)
    assert attrs["fingerprint"] == ref_attrs["fingerprint"]
    assert not ckpt.exists(), "checkpoints are removed once the trajectory is complete"


def test_trajectory_records_layout_split_and_config(tmp_path, fashion_data_file):
    run = tiny_run()
    subprocess.run(train_cmd(run, fashion_data_file, tmp_path / "t.h5", tmp_path / "c"), check=True, capture_output=True)
    from lcaflow.trajectory import read_trajectory_meta

    meta = read_trajectory_meta(tmp_path / "t.h5")
    assert meta["shape"] == (13, 84060)
    assert meta["layout"].layers == ("fc1", "fc2", "fc3")
    assert meta["layout"].names == ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias")
    assert len(meta["train_indices"]) == 300 and len(meta["val_indices"]) == 100
    assert meta["run"] == run
    with h5py.File(tmp_path / "t.h5") as f:
        params = f["params"][()]
        assert not np.array_equal(params[0], params[-1])
        assert np.isfinite(f["minibatch_loss"][()]).all()


def test_divergence_names_the_iteration_and_keeps_the_partial_trajectory(tmp_path, fashion_data_file):
    run = tiny_run(optimizer={"name": "sgd", "lr": 1e6, "momentum": 0.9}, iterations=50)
    result = subprocess.run(train_cmd(run, fashion_data_file, tmp_path / "t.h5", tmp_path / "c"), capture_output=True, text=True)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "ERROR: run r: minibatch loss is" in last and "at iteration" in last and "lower the learning rate" in last
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "t.h5").exists()
    assert (tmp_path / "c" / "params.f32").exists() and (tmp_path / "c" / "state.pt").exists()


def test_cuda_request_without_cuda_is_a_clear_error(tmp_path, fashion_data_file):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    run = tiny_run(device="cuda")
    result = run_python(
        "from lcaflow.progress import stage\nfrom lcaflow.training import train\n"
        f"with stage('train'):\n    train('r', {run!r}, {str(fashion_data_file)!r}, {str(tmp_path / 't.h5')!r}, {str(tmp_path / 'c')!r})"
    )
    assert result.returncode == 1 and "CUDA is not available" in result.stderr.strip().splitlines()[-1]


def test_a_second_trainer_on_the_same_checkpoint_is_refused(tmp_path):
    from lcaflow.errors import LCAError
    from lcaflow.training import Checkpoint

    first = Checkpoint(tmp_path / "c", "fp", 3, 5)
    with pytest.raises(LCAError, match="another training process holds this checkpoint"):
        Checkpoint(tmp_path / "c", "fp", 3, 5)
    first.remove()
    Checkpoint(tmp_path / "c", "fp", 3, 5).remove()  # free again once the first is done


def test_a_rejected_state_is_deleted_before_any_row_is_written(tmp_path):
    import torch

    from lcaflow.training import Checkpoint

    ckpt = Checkpoint(tmp_path / "c", "config-A", 3, 5)
    ckpt.save(1, torch.nn.Linear(1, 1), torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1), np.zeros(2))
    ckpt._lock.close()
    other = Checkpoint(tmp_path / "c", "config-B", 3, 5)  # another config: must start fresh...
    assert other.state is None and not (tmp_path / "c" / "state.pt").exists()
    other._lock.close()
    # ...so going back to config A cannot resume A's old state on top of B's rows
    assert Checkpoint(tmp_path / "c", "config-A", 3, 5).state is None
