"""What the example-group options cost, measured in one process next to the plan's predictions.

Real runs, trained (or recorded) here, one gradient job each, 1 thread:
- MNIST-FC on a subset of Fashion-MNIST: example_groups classes (the default), none, a grouping callable
  (ink terciles), and lca.example_curves M;
- a small character transformer (examples/char_transformer, fewer windows and layers): no token groups,
  token groups (examples/char_transformer/tokens.py:kinds) by forward mode, and per parameter
  (lca.token_group_parameters, reverse mode).
Each job's wall time and full-set passes, its ratio to its family's baseline, and the ratio the plan predicts
(lcaflow.cost.time.job_seconds less the job's start-up and I/O, from a calibration of the model made here).
Speed claims are these ratios of one run, never timed assertions in tests.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_groups.py [--data results/data/fashion_mnist.h5] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
GROUPS_PY = """
import numpy as np

def by_ink(inputs, targets):
    ink = inputs.flatten(1).mean(1).numpy()
    cuts = np.quantile(ink, [1 / 3, 2 / 3])
    return np.array(["light", "medium", "heavy"])[np.searchsorted(cuts, ink)]
"""
T = 12
FC = {"dataset": "fashion_mnist", "architecture": "mnist_fc", "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
      "batch_size": 100, "iterations": T, "train_size": 4000, "val_size": 1000, "device": "cpu"}  # fmt: skip
CHAR_ARGS = {"context": 32, "d_model": 32, "n_layers": 2, "n_heads": 4}
CHAR_DATA = {"context": 32, "train_windows": 400, "test_windows": 100}


def validated(run: dict, lca: dict) -> tuple[dict, dict]:
    from lcaflow.config import validate_config

    cfg = validate_config({"runs": {"r": run}, "lca": {"eval_chunk_size": 1000, "iterations_per_job": T, **lca}})
    return cfg["runs"]["r"], cfg["lca"]


def gradient_job(name: str, run: dict, lca: dict, trajectory: Path, data: Path, work: Path) -> dict:
    """One gradient job, timed: wall seconds, passes, and the plan's prediction of its compute."""
    from lcaflow.cost.calibration import calibrate
    from lcaflow.cost.size import RunSize
    from lcaflow.cost.time import IO_BYTES_PER_S, STARTUP_S, Rates, job_seconds
    from lcaflow.gradients import compute_chunk
    from lcaflow.spec import RunSpec

    out = work / f"{name}.h5"
    start = time.perf_counter()
    compute_chunk("r", run, lca, 0, str(trajectory), str(data), str(out))
    wall = time.perf_counter() - start
    with h5py.File(out) as f:
        passes = float(f.attrs["train_passes"]) + float(f.attrs["val_passes"])
        panels = float(np.mean(f["token_splits"][()])) if "token_splits" in f else None
    spec = RunSpec.of("r", run)
    size = RunSize.of(spec, str(data)).with_recorded_groups(trajectory)  # as the jobs' requests see it
    rates = Rates.calibrated(calibrate(spec, lca, 1, size, torch.device("cpu"), work / "calibration", str(data)))
    predicted = job_seconds(spec, size, lca, rates)["gradients"][0] - STARTUP_S - (data.stat().st_size + out.stat().st_size) / IO_BYTES_PER_S
    return {"job": name, "wall_s": wall, "passes": passes, "predicted_s": predicted, "token_panels": panels}


def train_fc(groups: str | None, data: Path, work: Path) -> tuple[dict, Path]:
    from lcaflow.training import train

    run, _ = validated({**FC, **({"example_groups": groups} if groups else {})}, {})
    path = work / f"fc_{(groups or 'classes').replace('/', '_').replace(':', '_')}.h5"
    train("r", run, str(data), str(path), str(work / f"ckpt_{path.stem}"))
    return run, path


def mnist_fc(data: Path, work: Path, curves: int) -> list[dict]:
    (work / "groups.py").write_text(GROUPS_PY)
    rows = []
    for name, groups, lca in (
        ("classes (default)", None, {}),
        ("none", "none", {}),
        ("callable (ink terciles)", f"{work}/groups.py:by_ink", {}),
        (f"classes + example_curves {curves}", None, {"example_curves": curves}),
    ):
        run, trajectory = train_fc(groups, data, work)
        run, lca = validated(run, lca)
        rows.append(gradient_job(name, run, lca, trajectory, data, work))
    return rows


def record_char(work: Path) -> Path:
    """A few Adam steps of the small char transformer, recorded by lcaflow.TrajectoryRecorder."""
    sys.path.insert(0, str(REPO / "examples" / "char_transformer"))
    from data import fortunes
    from model import build

    import lcaflow

    torch.manual_seed(0)
    train, _ = fortunes(**CHAR_DATA)
    model = build(**CHAR_ARGS)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = train.tensors
    path = work / "char_recorded.h5"
    with lcaflow.TrajectoryRecorder(str(path), model) as recorder:
        for step in range(T):
            batch = slice(step * 32 % len(x), step * 32 % len(x) + 32)
            loss = torch.nn.functional.cross_entropy(model(x[batch]).flatten(0, 1), y[batch].flatten())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            recorder.step(loss)
    return path


def char_transformer(work: Path) -> list[dict]:
    from lcaflow.data import load_user_dataset, write_data_file
    from lcaflow.training import adopt_trajectory

    recorded = record_char(work)
    here = os.getcwd()
    os.chdir(REPO)  # the config's relative paths
    try:
        ref = "examples/char_transformer/data.py:fortunes"
        data = work / "chars.h5"
        write_data_file(data, ref, load_user_dataset(ref, CHAR_DATA, "w"), raw_inputs=True)
        base = {"trajectory": str(recorded), "architecture": "examples/char_transformer/model.py:build", "architecture_args": CHAR_ARGS,
                "dataset": ref, "dataset_args": CHAR_DATA, "loss": "token_cross_entropy", "validation": "test", "device": "cpu",
                "groups": {"embeddings": "^(tok_emb|pos_emb)\\.", "attention": "\\.attn\\.", "mlp": "\\.mlp\\.", "rest": "^(head|ln_f)\\.|\\.ln(1|2)\\."}}  # fmt: skip
        rows = []
        for name, groups, lca in (
            ("no token groups", None, {}),
            ("token groups, forward mode", "examples/char_transformer/tokens.py:kinds", {}),
            ("token groups per parameter (reverse mode)", "examples/char_transformer/tokens.py:kinds", {"token_group_parameters": True}),
        ):
            run, lca = validated({**base, **({"example_groups": groups} if groups else {})}, {"tolerance": 1e-3, **lca})
            trajectory = work / f"char_{len(rows)}.h5"
            adopt_trajectory("r", run, str(recorded), str(data), str(trajectory))
            rows.append(gradient_job(name, run, lca, trajectory, data, work))
        return rows
    finally:
        os.chdir(here)


def table(title: str, rows: list[dict]) -> str:
    base = rows[0]
    lines = [f"### {title}\n", "| job | wall s | passes | / baseline, measured | / baseline, plan | plan s | token panels |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        panels = "" if r["token_panels"] is None else f"{r['token_panels']:.2f}"
        lines.append(
            f"| {r['job']} | {r['wall_s']:.2f} | {r['passes']:.0f} | {r['wall_s'] / base['wall_s']:.2f} | "
            f"{r['predicted_s'] / base['predicted_s']:.2f} | {r['predicted_s']:.2f} | {panels} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(REPO / "results" / "data" / "fashion_mnist.h5"), help="the data stage's Fashion-MNIST file")
    parser.add_argument("--curves", type=int, default=32)
    parser.add_argument("--out", default=None, help="also write the report here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from lcaflow.cost.calibration import machine

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fc, chars = mnist_fc(Path(args.data).resolve(), work, args.curves), char_transformer(work)
    m = machine()
    report = (
        f"# Example groups, token groups and example curves: one gradient job each ({time.strftime('%Y-%m-%d')})\n\n"
        f"`OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_groups.py`: {m['cpu']}, 1 thread, torch {m['torch']}, "
        f"load average {os.getloadavg()[0]:.1f} at the end ({os.cpu_count()} cores, {platform.node()}). T = {T} iterations, "
        f"one job; 'plan s' is lcaflow.cost.time.job_seconds less start-up and I/O, from a calibration made here.\n\n"
        + table(f"MNIST-FC, Fashion-MNIST {FC['train_size']} + {FC['val_size']} examples", fc)
        + "\n"
        + table(f"Char transformer {CHAR_ARGS}, {CHAR_DATA['train_windows']} + {CHAR_DATA['test_windows']} windows", chars)
        + "\n```json\n" + json.dumps({"mnist_fc": fc, "char_transformer": chars}, indent=1) + "\n```\n"
    )  # fmt: skip
    print(report)
    if args.out:
        Path(args.out).write_text(report)


if __name__ == "__main__":
    main()
