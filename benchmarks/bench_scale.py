"""Scale benchmark: a 2.08 M-parameter network through the whole workflow with full and sampled storage.

    python benchmarks/bench_scale.py [--forms full sampled] [--iterations 300 150] [--out PREFIX]

Runs `snakemake --cores 2 all` on benchmarks/scale/<form>.yaml (a 784-1600-512-10 MLP, 300 iterations
on 2,000 Fashion-MNIST images, SGD with momentum), once per form and number of iterations, each in its
own results directory under results/bench_scale/, from nothing (data, training, gradients, assembly,
summary, every analysis, figure and the claims). Per run it reports the bytes of every file per parameter
per iteration, and each stage's time and peak RSS from Snakemake's benchmark files; analysis time is
also given per T x K. Writes PREFIX.md and PREFIX.json."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from lcaflow.tables import read_tsv  # noqa: E402

RUN = "wide_mlp"
STAGES = ("train", "gradients", "assemble", "summary", "analysis", "figures")


def run_form(form: str, iterations: int) -> tuple[Path, float]:
    results = REPO / "results" / "bench_scale" / f"{form}_T{iterations}"
    shutil.rmtree(results, ignore_errors=True)
    config = yaml.safe_load((REPO / "benchmarks" / "scale" / f"{form}.yaml").read_text())
    config["results_dir"] = str(results)
    config["runs"][RUN]["iterations"] = iterations
    config_path = results.with_suffix(".yaml")
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(yaml.safe_dump(config))
    start = time.time()
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2", "all", "--configfile", str(config_path)],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    return results, time.time() - start


def stage_costs(results: Path) -> dict:
    """Per stage: jobs, seconds (sum and largest job) and the largest peak RSS (MB), from the benchmark files."""
    out = {}
    for stage in STAGES:
        files = sorted((results / "benchmarks" / stage).rglob("*.tsv"))
        if not files:
            continue
        rows = [read_tsv(f) for f in files]
        seconds = [float(r["s"][0]) for r in rows]
        rss = [float(r["max_rss"][0]) for r in rows if str(r["max_rss"][0]) not in ("-", "nan")]
        out[stage] = {"jobs": len(files), "seconds": sum(seconds), "largest_job_seconds": max(seconds), "peak_rss_mb": max(rss, default=float("nan"))}
    return out


def disk(results: Path) -> dict:
    folder = results / "runs" / RUN
    size = lambda paths: sum(p.stat().st_size for p in paths if p.is_file())  # noqa: E731
    return {
        "trajectory": size([folder / "trajectory.h5"]),
        "chunks": size((folder / "chunks").glob("*.h5")),
        "lca": size([folder / "lca.h5"]),
        "tables_and_figures": size([*(folder / "stats").rglob("*"), *(folder / "figures").rglob("*"), *(folder / "summary").rglob("*")]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--forms", nargs="+", default=["full", "sampled"])
    parser.add_argument("--iterations", nargs="+", type=int, default=[300])
    parser.add_argument("--out", type=Path, default=Path("bench_scale"))
    args = parser.parse_args()
    entries = []
    for iterations in args.iterations:
        for form in args.forms:
            results, seconds = run_form(form, iterations)
            with __import__("h5py").File(results / "runs" / RUN / "lca.h5") as f:
                K, stored = int(f["lca_total"].shape[0]), int(f["lca"].shape[1])
            d = disk(results)
            costs = stage_costs(results)
            entries.append(
                {
                    "form": form,
                    "iterations": iterations,
                    "K": K,
                    "stored_columns": stored,
                    "wall_seconds": seconds,
                    "disk": d,
                    "bytes_per_param_per_iteration": {k: v / (K * iterations) for k, v in d.items()},
                    "lca_bytes_per_param_per_iteration": (d["chunks"] + d["lca"]) / (K * iterations),
                    "stages": costs,
                    "analysis_seconds_per_million_entries": costs.get("analysis", {}).get("seconds", 0) / (K * iterations / 1e6),
                    "figures": len(list((results / "runs" / RUN / "figures").glob("*.png"))),
                    "claims": (results / "claims.md").is_file(),
                }
            )
            print(json.dumps(entries[-1], indent=1))
    args.out.with_suffix(".json").write_text(json.dumps(entries, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(entries) + "\n")
    print(markdown(entries))


def markdown(entries: list[dict]) -> str:
    head = [f"{e['form']}, T = {e['iterations']}" for e in entries]
    rows = [
        ("stored LCA columns", lambda e: f"{e['stored_columns']:,} of {e['K']:,}"),
        ("LCA bytes / parameter / iteration (chunks + lca.h5)", lambda e: f"{e['lca_bytes_per_param_per_iteration']:.3f}"),
        ("trajectory bytes / parameter / iteration", lambda e: f"{e['bytes_per_param_per_iteration']['trajectory']:.3f}"),
        ("run folder", lambda e: f"{sum(e['disk'].values()) / 1e9:.2f} GB"),
        *[
            (f"{stage}: jobs, s (largest job), peak RSS MB", lambda e, s=stage: "{jobs}, {seconds:.0f} ({largest_job_seconds:.0f}), {peak_rss_mb:.0f}".format(**e["stages"][s]) if s in e["stages"] else "-")
            for stage in STAGES
        ],
        ("analysis s per million T x K entries", lambda e: f"{e['analysis_seconds_per_million_entries']:.3f}"),
        ("figures, claims", lambda e: f"{e['figures']}, {'yes' if e['claims'] else 'no'}"),
        ("whole workflow (s)", lambda e: f"{e['wall_seconds']:.0f}"),
    ]
    lines = ["| | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(get(e) for e in entries) + " |" for label, get in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
