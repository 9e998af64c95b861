import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
FASHION_DIR = Path(os.environ.get("LCA_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))


@pytest.fixture(scope="session")
def fashion_data_file(tmp_path_factory) -> Path:
    """The real Fashion-MNIST through torchvision, cached as the data stage writes it (or the data file that
    LCA_FASHION_MNIST_FILE names: the device check makes one for all its parts)."""
    from lcaflow.data import load_official, write_data_file

    if os.environ.get("LCA_FASHION_MNIST_FILE"):
        return Path(os.environ["LCA_FASHION_MNIST_FILE"])
    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.fail(f"Fashion-MNIST missing in {FASHION_DIR}: apt-get install dataset-fashion-mnist")
    root = tmp_path_factory.mktemp("datasets")
    path = root / "fashion_mnist.h5"
    write_data_file(path, "fashion_mnist", load_official("fashion_mnist", root, FASHION_DIR, download=False))
    return path


def tiny_run(**overrides) -> dict:
    from lcaflow.config import validate_config

    run = {
        "dataset": "fashion_mnist",
        "architecture": "mnist_fc",
        "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
        "batch_size": 50,
        "iterations": 12,
        "train_size": 300,
        "val_size": 100,
        "checkpoint_every": 4,
        "device": "cpu",
    }
    run.update(overrides)
    return validate_config({"runs": {"r": run}})["runs"]["r"]


def tiny_lca(**overrides) -> dict:
    from lcaflow.config import validate_config

    return validate_config({"runs": {"r": tiny_run()}, "lca": {"eval_chunk_size": 64, "iterations_per_job": 6, **overrides}})[
        "lca"
    ]


SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]


def snakemake(workdir, *args, timeout=900):
    return subprocess.run([*SNAKEMAKE, "-d", str(workdir), *args], capture_output=True, text=True, timeout=timeout)


# The end-to-end fixture adds a second seed and two experiments, so that the cross-run statistics,
# the comparison and their figures run for real too.
SEEDS_EXPERIMENT = {
    "extra_runs": {"tiny_sgd_s1": {"seed": 1}},
    "experiments": {"seeds": {"runs": ["tiny_sgd", "tiny_sgd_s1"], "compare_with": "seed0"}, "seed0": {"runs": ["tiny_sgd"]}},
}


def write_tiny_config(
    workdir: Path,
    datasets: Path | None = None,
    run: dict | None = None,
    lca: dict | None = None,
    extra_runs: dict | None = None,
    experiments: dict | None = None,
) -> Path:
    """tests/configs/tiny.yaml with outputs under `workdir` (datasets may be shared between runs),
    optionally with some run and lca settings changed, more runs (variations of tiny_sgd) and experiments."""
    import yaml

    config = yaml.safe_load((REPO / "tests" / "configs" / "tiny.yaml").read_text())
    config["runs"]["tiny_sgd"].update(run or {})
    for name, changes in (extra_runs or {}).items():
        config["runs"][name] = {**config["runs"]["tiny_sgd"], **changes}
    if experiments:
        config["experiments"] = experiments
    config["lca"].update(lca or {})
    config["results_dir"] = str(workdir / "results")
    config["data"] = {"root": str(datasets or workdir / "datasets"), "fashion_mnist_dir": str(FASHION_DIR), "download": False}
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def output_hashes(results: Path) -> dict[str, str]:
    """sha256 of every result file (logs and timings excluded): equal dicts mean byte-identical runs."""
    import hashlib

    return {
        str(p.relative_to(results)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(results.rglob("*"))
        if p.is_file() and p.parts[len(results.parts)] not in ("logs", "benchmarks")
    }


@pytest.fixture(scope="session")
def tiny_workflow(tmp_path_factory):
    """One real `snakemake --cores 2` run of the tiny config: (workdir, config path, process)."""
    workdir = tmp_path_factory.mktemp("workflow")
    config_path = write_tiny_config(workdir, **SEEDS_EXPERIMENT)
    result = snakemake(workdir, "--cores", "2", "--configfile", str(config_path))
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, config_path, result


def run_python(code: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, **kwargs)


class SignChangeCounter:
    """The tests' own numpy reference of the gradient jobs' sign-change counts (lcaflow.reducers.SignChanges). Counts, per column of a streamed (rows = time) matrix, how often the sign flips between
    consecutive non-zero values (zeros are skipped: a parameter that pauses has not turned)."""

    def __init__(self, k: int):
        self.last = np.zeros(k, dtype=np.int8)
        self.changes = np.zeros(k, dtype=np.int64)

    def update(self, block: np.ndarray) -> None:
        for row in np.sign(block).astype(np.int8):
            nonzero = row != 0
            self.changes += (nonzero & (self.last != 0) & (row != self.last)).astype(np.int64)
            self.last = np.where(nonzero, row, self.last)


def plant_reductions(f, layout, lca, grad, class_param, params) -> None:
    """Write into an lca.h5 under construction the reductions that the gradient jobs compute (see
    lcaflow.reducers), computed here independently in numpy from full matrices: lca (T, K), grad (T+1, K),
    the per-class, per-parameter totals class_param (C, K) and the trajectory params (T+1, K)."""
    from lcaflow.layout import kernel_of, units_of

    lca32 = np.asarray(lca, dtype=np.float32)
    x = lca32.astype(np.float64)
    layer_index = layout.layer_index()
    L = len(layout.layers)
    f["helping_layer"] = np.stack([(lca32[:, layer_index == j] < 0).sum(1) for j in range(L)], axis=1)
    f["hurting_layer"] = np.stack([(lca32[:, layer_index == j] > 0).sum(1) for j in range(L)], axis=1)
    f["helped_count"], f["hurt_count"] = (lca32 < 0).sum(0), (lca32 > 0).sum(0)
    f["lca_total"] = x.sum(0)
    f["stored_row_sum"] = x.sum(1)
    std, kurt, tail = [], [], []
    for row in x:
        nz = row[row != 0]
        if nz.size < 4 or nz.var() == 0:
            std.append(np.nan), kurt.append(np.nan), tail.append(np.nan)
            continue
        m2, m4 = ((nz - nz.mean()) ** 2).mean(), ((nz - nz.mean()) ** 4).mean()
        std.append(np.sqrt(m2)), kurt.append(m4 / m2**2)
        tail.append(np.abs(row)[np.abs(row) > 3 * np.sqrt(m2)].sum() / np.abs(row).sum())
    f["row_std"], f["row_kurtosis"], f["tail_share"] = np.array(std), np.array(kurt), np.array(tail)
    signs = SignChangeCounter(x.shape[1])
    signs.update(np.asarray(grad, dtype=np.float32))
    f["grad_sign_changes"] = signs.changes
    steps = np.diff(np.asarray(params, dtype=np.float32).astype(np.float64), axis=0)
    turns = SignChangeCounter(x.shape[1])
    turns.update(steps)
    f["step_sign_changes"] = turns.changes
    f["layer_motion"] = np.sqrt(np.stack([(steps[:, layer_index == j] ** 2).sum(1) for j in range(L)], axis=1))
    kernel = kernel_of(layout, layout.layers[-1])
    trace = np.arange(layout.offsets[kernel], layout.offsets[kernel] + layout.sizes[kernel])
    f["trace_index"], f["grad_trace"] = trace, np.asarray(grad, dtype=np.float32)[:, trace]
    f["param_trace"] = np.asarray(params, dtype=np.float32)[:, trace]
    for name in layout.layers:
        units, _ = units_of(layout, name)
        if units is None:
            continue
        members = [j for j, owner in enumerate(layout.layer_of_param) if owner == name]

        def sums(values, members=members, units=units):
            return sum(
                values[:, layout.offsets[j] : layout.offsets[j] + layout.sizes[j]].reshape(len(values), units, -1).sum(2)
                for j in members
            )

        f[f"lca_neuron/{name}"] = sums(x)
        f[f"lca_class_neuron/{name}"] = sums(np.asarray(class_param, dtype=np.float64))


CHROMIUM = os.environ.get("LCAFLOW_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (Debian's package, install.sh) driven by Playwright. Where either is missing the
    browser tests skip with the reason, except under CI (CI=true), where they fail."""
    why = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        why = "Playwright for Python is not installed (pip install -e '.[test]'; install.sh does)"
    if why is None and not Path(CHROMIUM).is_file():
        why = f"no Chromium at {CHROMIUM} (apt-get install chromium, or set LCAFLOW_CHROMIUM; install.sh does)"
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests cannot run under CI: {why}")
        pytest.skip(why)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def slurm_cluster():
    """A one-node SLURM started by .ci/local-slurm.sh (root and Debian's slurm-wlm), skipped with the reason
    otherwise. It stops at the end of the session, not of its test file: Snakemake's SLURM plugin asks
    `scontrol show config` on every start, which waits 9 s for a stopped controller."""
    if os.environ.get("LCA_SKIP_SLURM"):
        pytest.skip("LCA_SKIP_SLURM is set")
    if os.geteuid() != 0:
        pytest.skip("starting a local SLURM needs root (.ci/local-slurm.sh)")
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        pytest.skip("starting a local SLURM needs Debian's slurm-wlm packages (apt-get)")
    setup_script = REPO / ".ci" / "local-slurm.sh"
    setup = subprocess.run(["bash", str(setup_script)], capture_output=True, text=True, timeout=600)
    assert setup.returncode == 0, setup.stderr[-2000:]
    yield
    subprocess.run(["bash", str(setup_script), "teardown"], capture_output=True, timeout=120)
