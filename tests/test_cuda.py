"""On a GPU: CPU against CUDA for one Simpson step of every built-in network, bit-identical reruns on one GPU,
a gradient job killed and rerun, the plan's calibration. Marked `cuda`; skipped, with the reason, where torch
sees no CUDA device.

`benchmarks/gpu_check.sh --device cuda` runs them on a GPU machine. LCAFLOW_TEST_DEVICE=cpu runs the same
tests with the CPU in CUDA's place (the check's smoke mode, `--device cpu`, which CI runs): every line
runs, and the comparisons are then of the CPU with itself."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import tiny_lca, tiny_run

from lcaflow.data import Split
from lcaflow.gradients import compute_chunk
from lcaflow.integrate import SPLITS, Endpoint, integrate_segment
from lcaflow.models import ARCHITECTURES, build_model, flat_params, layout_of, set_lca_mode
from lcaflow.numerics import set_numerics
from lcaflow.objective import FullSetObjective
from lcaflow.training import train

DEVICE = os.environ.get("LCAFLOW_TEST_DEVICE", "cuda")
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        DEVICE.startswith("cuda") and not torch.cuda.is_available(),  # counts devices; CUDA is not initialised
        reason="no CUDA device here (LCAFLOW_TEST_DEVICE=cpu runs these tests on the CPU)",
    ),
]
MNIST_SHAPED = {"mnist_fc", "lenet"}  # every other built-in network is CIFAR-shaped
# On the CPU (smoke mode) the CPU is compared with itself: MNIST-FC runs the code, the others would add
# minutes on 2 cores and show nothing more
NETWORKS = sorted(ARCHITECTURES) if DEVICE.startswith("cuda") else ["mnist_fc"]
# A run long enough that a job's kill lands mid-way on a GPU; on the CPU its first 4 iterations are (they
# refine to dozens of Simpson panels each)
SIZES = {"iterations": 40, "train_size": 2000, "val_size": 500} if DEVICE.startswith("cuda") else {"iterations": 4}
EXAMPLES, CLASSES = 20, 10  # two images a class: every evaluation batch of one shape


def simpson_step(network: str, device: str, theta0: torch.Tensor, theta1: torch.Tensor) -> torch.Tensor:
    """The LCA of one Simpson panel (start, midpoint, end) from theta0 to theta1 on 20 fixed random images."""
    shape = (1, 28, 28) if network in MNIST_SHAPED else (3, 32, 32)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand((EXAMPLES, *shape), generator=g), torch.arange(EXAMPLES) % CLASSES
    model = set_lca_mode(build_model(network, shape, CLASSES, seed=0)).to(device)
    split = Split(x.to(device), y.to(device))
    train_part = FullSetObjective(model, layout_of(model), split, CLASSES, chunk_size=32)
    val_part = FullSetObjective(model, layout_of(model), split, CLASSES, chunk_size=32, per_class=False)

    def evaluate(theta, splits=SPLITS):
        return Endpoint(train=train_part(theta) if "train" in splits else None, val=val_part(theta) if "val" in splits else None)

    start, end = evaluate(theta0), evaluate(theta1)
    return integrate_segment(evaluate, theta0, theta1, start, end, tolerance=1e-3, max_splits=1).lca.cpu()


@pytest.mark.parametrize("network", NETWORKS)
def test_one_simpson_step_on_cuda_matches_the_cpu_to_float32_rounding(network):
    set_numerics(torch.device(DEVICE))
    shape = (1, 28, 28) if network in MNIST_SHAPED else (3, 32, 32)
    model = build_model(network, shape, CLASSES, seed=0)
    theta0 = flat_params(model, layout_of(model)).detach()
    step = torch.randn(theta0.shape, generator=torch.Generator().manual_seed(1))
    theta1 = theta0 + 1e-3 * theta0.abs().mean() * step  # a step of SGD's size, in every parameter
    on_cpu, on_device = simpson_step(network, "cpu", theta0, theta1), simpson_step(network, DEVICE, theta0, theta1)
    scale = on_cpu.abs().max().item()
    # other kernels, other summation orders: float32 rounding of gradients summed over 20 examples, relative
    # to the largest entry (an entry near zero has no relative precision to keep)
    torch.testing.assert_close(on_device, on_cpu, rtol=1e-3, atol=1e-5 * scale)
    assert on_device.sum().item() == pytest.approx(on_cpu.sum().item(), rel=1e-4, abs=1e-6 * scale)


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def run_on_device(fashion_data_file, tmp_path_factory):
    """A tiny run trained on the device and its one gradient job: (run, lca, data, trajectory, chunk)."""
    run = tiny_run(device=DEVICE, **SIZES)
    lca = tiny_lca(iterations_per_job=run["iterations"], eval_chunk_size=500)
    work = tmp_path_factory.mktemp("cuda_reference")
    trajectory, chunk = work / "trajectory.h5", work / "chunk0.h5"
    train("r", run, str(fashion_data_file), str(trajectory), str(work / "checkpoints"))
    compute_chunk("r", run, lca, 0, str(trajectory), str(fashion_data_file), str(chunk))
    return run, lca, fashion_data_file, trajectory, chunk


def test_reruns_on_one_gpu_are_bit_identical(run_on_device, tmp_path):
    run, lca, data, trajectory, chunk = run_on_device
    again, again_chunk = tmp_path / "trajectory.h5", tmp_path / "chunk0.h5"
    train("r", run, str(data), str(again), str(tmp_path / "checkpoints"))
    assert _sha(again) == _sha(trajectory)
    compute_chunk("r", run, lca, 0, str(trajectory), str(data), str(again_chunk))
    assert _sha(again_chunk) == _sha(chunk)


KILLED_JOB = "import json, sys; from lcaflow.gradients import compute_chunk; compute_chunk(*json.loads(sys.argv[1]))"


def test_a_gradient_job_killed_on_the_gpu_leaves_no_chunk_and_its_rerun_is_identical(run_on_device, tmp_path):
    run, lca, data, trajectory, chunk = run_on_device
    out = tmp_path / "chunk0.h5"
    partial = out.with_name(out.name + ".partial")
    args = json.dumps(["r", run, lca, 0, str(trajectory), str(data), str(out)])
    job = subprocess.Popen([sys.executable, "-c", KILLED_JOB, args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not partial.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)  # the .partial file appears when the job starts integrating
    landed = job.poll() is None
    job.send_signal(signal.SIGKILL)
    stderr = job.communicate()[1].decode(errors="replace")
    assert landed, f"the job ended before it could be killed: {stderr[-2000:]}"
    assert not out.exists()  # a killed job never leaves a finished-looking chunk
    compute_chunk("r", run, lca, 0, str(trajectory), str(data), str(out))  # the rerun, as Snakemake's
    assert not partial.exists() and _sha(out) == _sha(chunk)


def test_the_plans_calibration_times_the_run_on_the_gpu_and_the_jobs_find_it(fashion_data_file, tmp_path):
    from lcaflow.cost.run import RunCost
    from lcaflow.paths import ResultPaths
    from lcaflow.spec import RunSpec

    run, lca, results = tiny_run(device=DEVICE), tiny_lca(), tmp_path / "results"
    data = results / ResultPaths("").data("fashion_mnist")
    data.parent.mkdir(parents=True)
    data.symlink_to(fashion_data_file)
    device = torch.device(DEVICE).type
    planned = RunCost(RunSpec.of("r", run), lca, 2, str(results), device).calibrate()  # what `snakemake plan` does
    assert planned["device"] == device and planned["train_s_per_example"] > 0 and planned["eval_s_per_example"] > 0
    requested = RunCost(RunSpec.of("r", run), lca, 2, str(results), device)  # what a job's resources look up
    assert requested.calibration is not None and requested.calibration["cached"]  # found without initialising CUDA
    assert requested.rates.source.startswith("calibration") and requested.runtime("gradients", chunk=0).endswith("m")
