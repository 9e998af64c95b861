"""The device check: everything a GPU machine must show about lcaflow, in one call of at most 8 minutes.
Run it through benchmarks/gpu_check.sh (which finds Python, the package and Fashion-MNIST); docs/speed.md.

    (a) the tests marked `cuda` (tests/test_cuda.py): CPU against CUDA, bit-identical reruns, a killed job
    (b) a shortened default run (config.yaml's fc_sgd, 110 iterations) trained and allocated on the device
        and on the CPU: per-parameter differences of the LCA, % helping, the grounding of each
    (c) benchmarks/bench_lca.py on the device for every network at the paper's sizes (CIFAR-shaped ones on
        50,000 synthetic images), TF32 off and on: time, grounding error, share of the GPU's peak
    (d) nvidia-smi and versions; every table in --out, with gpu_check.md summing them up

The GPU machine has no Snakemake: the check calls the package's functions, as the workflow's thin rule
scripts do. Each part runs in a process of its own with a time limit, so that one that hangs or runs long
leaves the others their time (and bench_lca keeps the networks it finished). `--device cpu` is the smoke
mode (tiny sizes, MNIST-FC alone in the benchmark; CI runs it: tests/test_gpu_check.py)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

BUDGET_S = {"cuda": 460, "cpu": 300}  # the whole check; the device call allows 8 minutes
PART_S = {"tests": 150, "run": 120}  # at most; the benchmark gets what is left, half for each TF32 setting
RUN = {  # the shortened default run
    "cuda": {"iterations": 110},
    "cpu": {"iterations": 4, "train_size": 300, "val_size": 100},
}
BENCH = {  # bench_lca.py's arguments: every network at the paper's sizes (its defaults on a GPU), small ones first
    "cuda": ["--networks", "mnist_fc", "lenet", "resnet20", "vgg5", "vgg9", "allcnn"],
    "cpu": ["--networks", "mnist_fc", "--examples", "300", "--iterations", "3", "--skip", "3"],
}
BENCH_COMMON = ["--quadratures", "simpson", "--repeats", "2"]
# float32 and dense TF32 tensor-core peaks, TFLOP/s, by a part of the GPU's name (vendor data sheets)
PEAK_TFLOPS = {
    "H200": (67, 495),
    "H100 PCIe": (51, 378),
    "H100 NVL": (60, 418),
    "H100": (67, 495),
    "A100": (19.5, 156),
    "L40S": (91.6, 183),
    "L4": (30.3, 60),
    "A10": (31.2, 62.5),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--out", default="gpu-check-out")
    parser.add_argument("--fashion-mnist-dir", dest="fashion_dir", required=True, help="the idx files")
    parser.add_argument("--part", choices=["run"], help=argparse.SUPPRESS)  # internal: one part, in its own process
    args = parser.parse_args()
    out = Path(args.out).resolve()
    if args.part == "run":
        default_run(args.device, out, Path(args.fashion_dir))
        return
    check(args.device, out, Path(args.fashion_dir))


def check(device: str, out: Path, fashion_dir: Path) -> None:
    started = time.monotonic()
    deadline = started + BUDGET_S[device]
    out.mkdir(parents=True, exist_ok=True)
    (out / "work").mkdir(exist_ok=True)
    log = open(out / "gpu_check.log", "a")
    done = {"environment": environment(device, out)}
    data = fashion_file(out, fashion_dir)
    env = {**os.environ, "LCAFLOW_TEST_DEVICE": device, "LCA_FASHION_MNIST_DIR": str(fashion_dir), "LCA_FASHION_MNIST_FILE": str(data)}
    tests = [sys.executable, "-m", "pytest", "-m", "cuda", "tests/test_cuda.py", "-p", "no:cacheprovider", "-rs"]
    tests += ["--basetemp", str(out / "work" / "pytest"), "--junitxml", str(out / "cuda_tests.xml")]
    done["tests"] = part("tests", tests, out / "cuda_tests.txt", min(PART_S["tests"], left(deadline)), env, log)
    run = [sys.executable, __file__, "--part", "run", "--device", device, "--out", str(out), "--fashion-mnist-dir", str(fashion_dir)]
    done["run"] = part("run", run, out / "default_run.txt", min(PART_S["run"], left(deadline)), env, log)
    peaks = peak_gflops(done["environment"].get("gpu"))
    for tf32, peak in zip((False, True), peaks):
        name = f"bench_tf32_{'on' if tf32 else 'off'}"
        bench = [sys.executable, str(REPO / "benchmarks" / "bench_lca.py"), "--device", device, *BENCH[device], *BENCH_COMMON]
        bench += ["--out", str(out / name), "--fashion-mnist-file", str(data)]
        bench += (["--tf32"] if tf32 else []) + (["--peak-gflops", str(peak)] if peak else [])
        done[name] = part(name, bench, out / f"{name}.txt", left(deadline) / (2 - tf32), env, log)
    done["seconds"] = round(time.monotonic() - started, 1)
    (out / "gpu_check.json").write_text(json.dumps(done, indent=2) + "\n")
    (out / "gpu_check.md").write_text(summary(out, done))
    print((out / "gpu_check.md").read_text())
    failed = [k for k, v in done.items() if isinstance(v, dict) and v.get("rc") not in (None, 0)]
    if failed:
        sys.exit(f"gpu_check: {', '.join(failed)} failed or ran out of time; the parts' outputs are in {out}")


def left(deadline: float) -> float:
    return max(1.0, deadline - time.monotonic())


def part(name: str, cmd: list[str], output: Path, timeout: float, env: dict, log) -> dict:
    """Run one part in a process group of its own; past `timeout` the whole group is killed."""
    print(f"gpu_check: {name} (at most {timeout:.0f} s) ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    with open(output, "w") as f:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            rc = proc.wait()
            f.write(f"\ngpu_check: killed after {timeout:.0f} s\n")
    seconds = round(time.monotonic() - started, 1)
    log.write(f"{name}: rc {rc}, {seconds} s: {' '.join(cmd)}\n")
    log.flush()
    return {"rc": rc, "seconds": seconds, "timed_out": seconds >= timeout - 0.5, "output": output.name}


def environment(device: str, out: Path) -> dict:
    """(d) nvidia-smi's report and the versions that the numbers depend on."""
    import torch

    smi = shutil.which("nvidia-smi")
    if smi:
        report = subprocess.run([smi], capture_output=True, text=True, timeout=60)
        (out / "nvidia-smi.txt").write_text(report.stdout + report.stderr)
    gpu = torch.cuda.get_device_name(0) if device == "cuda" and torch.cuda.is_available() else None
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "gpu": gpu,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "lcaflow_commit": commit.stdout.strip() or None,
    }
    (out / "versions.json").write_text(json.dumps(versions, indent=2) + "\n")
    return versions


def peak_gflops(gpu: str | None) -> tuple[float | None, float | None]:
    """(float32, TF32) peaks of a known GPU in GFLOP/s, (None, None) for another device."""
    for name, peaks in PEAK_TFLOPS.items():
        if gpu and name in gpu:
            return peaks[0] * 1000, peaks[1] * 1000
    return None, None


def fashion_file(out: Path, fashion_dir: Path) -> Path:
    """Fashion-MNIST as the data stage writes it, made once for every part."""
    from lcaflow.data import load_official, write_data_file

    path = out / "work" / "fashion_mnist.h5"
    if not path.exists():
        write_data_file(path, "fashion_mnist", load_official("fashion_mnist", out / "work", fashion_dir, download=False))
    return path


def default_run(device: str, out: Path, fashion_dir: Path) -> None:
    """(b) config.yaml's fc_sgd, shortened, trained and allocated on the CPU and on the device."""
    import torch
    import yaml

    from lcaflow.config import validate_config

    cfg = validate_config(yaml.safe_load((REPO / "config.yaml").read_text()))
    run, lca = cfg["runs"]["fc_sgd"], cfg["lca"]
    run.update(RUN[device])
    lca["iterations_per_job"] = run["iterations"]
    torch.set_num_threads(cfg["threads"])
    data = fashion_file(out, fashion_dir)
    other = device if device != "cpu" else "cpu, again"  # the smoke mode compares the CPU with itself
    sides = {"cpu": "cpu", other: device}
    runs = {name: one_run(dict(run, device=d), lca, data, out / "work" / f"run_{name.replace(', ', '_')}") for name, d in sides.items()}
    table = compare_runs(runs["cpu"], runs[other], other)
    (out / "default_run.json").write_text(json.dumps({"run": run, "runs": runs, "comparison": table}, indent=2) + "\n")
    print(json.dumps(table, indent=2))


def one_run(run: dict, lca: dict, data: Path, work: Path) -> dict:
    """Train, one gradient job, assemble: the paths and the run's grounding and share of helping entries."""
    import h5py

    from lcaflow.assemble import assemble
    from lcaflow.gradients import compute_chunk
    from lcaflow.training import train

    work.mkdir(parents=True, exist_ok=True)
    paths = {k: str(work / f) for k, f in (("trajectory", "trajectory.h5"), ("chunk", "chunk0.h5"), ("lca", "lca.h5"), ("grounding", "grounding.json"))}
    started = time.perf_counter()
    train("fc_sgd", run, str(data), paths["trajectory"], str(work / "checkpoints"))
    trained = time.perf_counter()
    compute_chunk("fc_sgd", run, lca, 0, paths["trajectory"], str(data), paths["chunk"])
    allocated = time.perf_counter()
    assemble("fc_sgd", run, lca, paths["trajectory"], [paths["chunk"]], paths["lca"], paths["grounding"])
    grounding = json.loads(Path(paths["grounding"]).read_text())
    with h5py.File(paths["lca"]) as f:
        helped, hurt = f["helped_count"][()].sum(), f["hurt_count"][()].sum()
    return {
        **paths,
        "train_s": round(trained - started, 2),
        "gradients_s": round(allocated - trained, 2),
        "helping_pct": round(100 * float(helped / (helped + hurt)), 3),
        "grounding_error_pct": grounding["train"]["cumulative_error_pct"],
        "grounding_error_val_pct": grounding["val"]["cumulative_error_pct"],
        "iterations_refined": grounding["iterations_refined"],
    }


def compare_runs(cpu: dict, other: dict, device: str) -> dict:
    """How far the device's run is from the CPU's: the trajectories (which drift apart as float32 rounding
    differs) and each parameter's total LCA."""
    import h5py
    import numpy as np

    with h5py.File(cpu["trajectory"]) as a, h5py.File(other["trajectory"]) as b:
        theta_a, theta_b, theta_0 = a["params"][-1].astype(np.float64), b["params"][-1].astype(np.float64), a["params"][0]
    with h5py.File(cpu["lca"]) as a, h5py.File(other["lca"]) as b:
        total_a, total_b = a["lca_total"][()], b["lca_total"][()]
    big = np.abs(total_a) > 1e-3 * np.abs(total_a).max()  # relative differences of entries that are not ~0
    relative = np.abs(total_b - total_a)[big] / np.abs(total_a)[big]
    return {
        "device": device,
        "final_params_relative_difference": float(np.linalg.norm(theta_b - theta_a) / np.linalg.norm(theta_a - theta_0)),
        "lca_total_max_difference_of_largest": float(np.abs(total_b - total_a).max() / np.abs(total_a).max()),
        "lca_total_relative_difference_median": float(np.median(relative)),
        "lca_total_relative_difference_p99": float(np.quantile(relative, 0.99)),
        "lca_total_sign_differs_pct": float(100 * np.mean(np.sign(total_a) != np.sign(total_b))),
        "helping_pct": {"cpu": cpu["helping_pct"], device: other["helping_pct"]},
        "grounding_error_pct": {"cpu": cpu["grounding_error_pct"], device: other["grounding_error_pct"]},
    }


def summary(out: Path, done: dict) -> str:
    env = done["environment"]
    lines = [
        f"# Device check: {env['gpu'] or 'CPU (smoke mode)'}",
        "",
        f"Python {env['python']}, torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}, lcaflow {env['lcaflow_commit']}; "
        f"{done['seconds']} s in all.",
        "",
        "| part | exit | seconds | output |",
        "|---|---|---|---|",
    ]
    for name in ("tests", "run", "bench_tf32_off", "bench_tf32_on"):
        p = done[name]
        lines.append(f"| {name} | {p['rc']}{' (timed out)' if p['timed_out'] else ''} | {p['seconds']} | {p['output']} |")
    lines += ["", *run_table(out), "", *bench_table(out)]
    return "\n".join(lines) + "\n"


def run_table(out: Path) -> list[str]:
    path = out / "default_run.json"
    if not path.exists():
        return ["(b) no default-run comparison (see default_run.txt)"]
    c = json.loads(path.read_text())["comparison"]
    where = list(c["helping_pct"])
    return [
        "## (b) The shortened default run, CPU against the device",
        "",
        "| | " + " | ".join(where) + " |",
        "|---|" + "---|" * len(where),
        "| % helping | " + " | ".join(f"{c['helping_pct'][w]:.2f}" for w in where) + " |",
        "| grounding error (% of the loss change) | " + " | ".join(f"{c['grounding_error_pct'][w]:+.4f}" for w in where) + " |",
        "",
        f"Final parameters apart by {c['final_params_relative_difference']:.2e} of the distance travelled; per-parameter "
        f"total LCA: median relative difference {c['lca_total_relative_difference_median']:.2e}, 99th percentile "
        f"{c['lca_total_relative_difference_p99']:.2e}, largest difference {c['lca_total_max_difference_of_largest']:.2e} of the largest "
        f"total, sign differs for {c['lca_total_sign_differs_pct']:.3f}% of parameters.",
    ]


def bench_table(out: Path) -> list[str]:
    lines = [
        "## (c) LCA speed, TF32 off and on",
        "",
        "| network | TF32 | train + val examples | plain pass s (of peak) | LCA s/iteration (of peak) | ratio | grounding error |",
        "|---|---|---|---|---|---|---|",
    ]
    for tf32 in ("off", "on"):
        path = out / f"bench_tf32_{tf32}" / "lca_speed.json"
        for r in json.loads(path.read_text())["results"] if path.exists() else []:
            m = r["methods"]["simpson"]
            lines.append(
                f"| {r['network']} | {tf32} | {r['train_examples']:,} + {r['val_examples']:,} | {r['plain_pass_s']:.3g} ({pct(r['plain_pass_fraction_of_peak'])}) "
                f"| {m['lca_s_per_iteration']:.3g} ({pct(m['lca_fraction_of_peak'])}) | {m['ratio']:.2f} | {m['grounding_error_pct']:+.4f}% |"
            )
    return lines


def pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


if __name__ == "__main__":
    main()
