"""How coarse can checkpoints be? The LCA of a checkpoint path against the per-step LCA over the same windows.

    python benchmarks/checkpoint_interval.py [--config config.yaml] [--work results/checkpoint_interval] [--intervals 5 20 50] [--cores 2]

Runs the first run of the config (by default config.yaml's: MNIST-FC, SGD momentum 0.9, 880 steps; or a recorded
run such as configs/examples/char_transformer.yaml's) through the workflow,
writes its theta every k steps as checkpoint files (`torch.save` state_dicts named by step, the last step
always included), takes each folder through the workflow as `runs.<run>.trajectory` (the same training set:
the base run's model, data, loss, groups and validation), and compares each segment's LCA with the per-step LCA summed
over the segment's steps: per group totals, % of parameters helping, per-parameter (and per group and
segment) correlation and sign agreement, grounding and cost in training-set passes. Prints a markdown table
(docs/integrations.md quotes it).

    python benchmarks/checkpoint_interval.py --compare results/.../runs/STEPS results/.../runs/CHECKPOINTS

only compares two finished runs of the same training: one recorded every step, one from its checkpoints
(docs/examples.md: the GPT-2 trained by the Hugging Face Trainer)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
import lcaflow  # noqa: E402
from lcaflow.config import validate_config  # noqa: E402
from lcaflow.layout import Layout  # noqa: E402

# What a checkpoint run takes over from the base run: what it evaluates, never how it was trained.
EVALUATED = ("architecture", "architecture_args", "dataset", "dataset_args", "loss", "output", "groups", "device", "example_groups", "val_size", "train_size", "split_seed")


def snakemake(config: Path, cores: int, *targets: str) -> None:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", str(cores), f"--configfile={config}", *targets]
    subprocess.run(cmd, cwd=REPO, check=True)


def write_checkpoints(trajectory: Path, folder: Path, every: int) -> list[str]:
    """theta every `every` steps (and the last) as state_dict files named by step."""
    folder.mkdir(parents=True, exist_ok=True)
    with h5py.File(trajectory) as f:
        layout = Layout.from_h5(f["layout"])
        T = f["params"].shape[0] - 1
        steps = sorted({*range(0, T + 1, every), T})
        paths = []
        for step in steps:
            row = torch.from_numpy(f["params"][step])
            state = {n: row[o : o + s].view(shape) for n, o, s, shape in zip(layout.names, layout.offsets, layout.sizes, layout.shapes)}
            path = folder / f"step-{step}.pt"
            torch.save({k: v.clone() for k, v in state.items()}, path)
            paths.append(str(path))
    return paths


def windowed(run_steps, every_steps: list[int]) -> np.ndarray:
    """(segments, K) per-step LCA summed over each segment's steps, read a block of rows at a time."""
    out = np.zeros((len(every_steps) - 1, run_steps.num_params))
    for i, (a, b) in enumerate(zip(every_steps[:-1], every_steps[1:])):
        for start in range(a, b, 64):
            out[i] += run_steps.lca[start : min(start + 64, b)].sum(0)
    return out


def compare(results: Path, base: str, k: int) -> dict:
    return compare_runs(results / "runs" / base, results / "runs" / f"ck{k}", k)


def compare_runs(steps_run: Path, checkpoints_run: Path, k: int | str | None = None) -> dict:
    """A checkpoint run's LCA against the per-step run's summed over the same windows (the checkpoints'
    steps; a path starting after step 0 or ending before T is compared over the steps it covers)."""
    with lcaflow.open_run(steps_run) as steps, lcaflow.open_run(checkpoints_run) as ck:
        seg_steps = [int(s) for s in ck.steps]
        reference = windowed(steps, seg_steps)
        segments = np.asarray(ck.lca[:], dtype=np.float64)
        per_param_ref, per_param = reference.sum(0), segments.sum(0)
        moving = (per_param_ref != 0) | (per_param != 0)
        helping = lambda v: 100 * float((v[v != 0] < 0).mean())  # noqa: E731
        by_group_ref = np.add.reduceat(steps.by_group()[: seg_steps[-1]], seg_steps[:-1], axis=0)
        groups_ref = dict(zip(steps.groups, by_group_ref.sum(0).tolist()))
        per_group = {}
        for g in ck.groups:
            cols = ck.group_columns(g)
            a, b = per_param_ref[cols], per_param[cols]
            m = (a != 0) | (b != 0)
            per_group[g] = {
                "pct_helping": (helping(a), helping(b)),
                "param_corr": float(np.corrcoef(a[m], b[m])[0, 1]),
                "param_sign_agreement": 100 * float((np.sign(a[m]) == np.sign(b[m])).mean()),
            }
        g_steps, g_ck = steps.grounding, ck.grounding
        return {
            "k": k if k is not None else int(np.median(np.diff(seg_steps))),
            "segments": ck.iterations,
            "group_totals": {g: (groups_ref[g], float(v)) for g, v in ck.totals().items()},
            "per_group": per_group,
            "pct_helping": (helping(per_param_ref), helping(per_param)),
            "param_corr": float(np.corrcoef(per_param_ref[moving], per_param[moving])[0, 1]),
            "param_sign_agreement": 100 * float((np.sign(per_param_ref[moving]) == np.sign(per_param[moving])).mean()),
            "entry_corr": float(np.corrcoef(reference.ravel(), segments.ravel())[0, 1]),
            "entry_sign_agreement": 100 * float((np.sign(reference) == np.sign(segments)).mean()),
            "group_segment_corr": float(np.corrcoef(by_group_ref.ravel(), ck.by_group().ravel())[0, 1]),
            "grounding_pct": (g_steps["train"]["cumulative_error_pct"], g_ck["train"]["cumulative_error_pct"]),
            "max_splits_used": g_ck["max_splits_used"],
            "over_tolerance": g_ck["iterations_over_tolerance"],
            "passes": (g_steps["evaluations_per_iteration"] * steps.iterations, g_ck["evaluations_per_iteration"] * ck.iterations),
        }


def table(rows: list[dict]) -> str:
    lines = [
        "| k | segments | passes (per-step run) | grounding % (segments) | max panels | % helping (steps / segments) | per-parameter corr | sign agreement | (segment, parameter) corr | sign agreement | (segment, group) corr |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['k']} | {r['segments']} | {r['passes'][1]:.0f} ({r['passes'][0]:.0f}) | {r['grounding_pct'][1]:+.3f} | {r['max_splits_used']} | "
            f"{r['pct_helping'][0]:.1f} / {r['pct_helping'][1]:.1f} | {r['param_corr']:.4f} | {r['param_sign_agreement']:.1f}% | "
            f"{r['entry_corr']:.4f} | {r['entry_sign_agreement']:.1f}% | {r['group_segment_corr']:.4f} |"
        )
    lines += ["", "| k | " + " | ".join(f"{g} (steps / segments)" for g in rows[0]["group_totals"]) + " |", "|---|" + "---|" * len(rows[0]["group_totals"])]
    for r in rows:
        lines.append(f"| {r['k']} | " + " | ".join(f"{a:+.4f} / {b:+.4f}" for a, b in r["group_totals"].values()) + " |")
    lines += ["", "| k | group | % helping (steps / segments) | per-parameter corr | sign agreement |", "|---|---|---|---|---|"]
    for r in rows:
        for g, v in r.get("per_group", {}).items():
            lines.append(f"| {r['k']} | {g} | {v['pct_helping'][0]:.1f} / {v['pct_helping'][1]:.1f} | {v['param_corr']:.4f} | {v['param_sign_agreement']:.1f}% |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "results" / "checkpoint_interval")
    parser.add_argument("--intervals", type=int, nargs="+", default=[5, 20, 50])
    parser.add_argument("--config", type=Path, default=REPO / "config.yaml", help="its first run is the per-step run")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument(
        "--compare", nargs=2, type=Path, metavar=("STEPS_RUN", "CHECKPOINTS_RUN"),
        help="only compare two finished run folders (results/.../runs/<run>): a per-step run and the same run's checkpoints",
    )  # fmt: skip
    args = parser.parse_args()
    if args.compare:
        print(table([compare_runs(*args.compare)]))
        return
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(args.config.read_text())
    config["results_dir"] = str(work / "results")
    config["threads"] = min(config.get("threads", args.cores), args.cores)
    base = next(iter(config["runs"]))
    results = work / "results"
    phase1 = work / "steps.yaml"
    phase1.write_text(yaml.safe_dump(config))
    snakemake(phase1, args.cores, str(results / "runs" / base / "grounding.json"))
    run = config["runs"][base]
    validation = validate_config(config)["runs"][base]["validation"]  # as the base run resolved it
    for k in args.intervals:
        files = write_checkpoints(results / "runs" / base / "trajectory.h5", work / f"ckpt{k}", k)
        evaluated = {key: run[key] for key in EVALUATED if key in run}
        config["runs"][f"ck{k}"] = {"trajectory": files, **evaluated, "validation": validation}
    phase2 = work / "checkpoints.yaml"
    phase2.write_text(yaml.safe_dump(config))
    snakemake(phase2, args.cores, *[str(results / "runs" / f"ck{k}" / "grounding.json") for k in args.intervals])
    rows = [compare(results, base, k) for k in args.intervals]
    (work / "study.json").write_text(json.dumps(rows, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
