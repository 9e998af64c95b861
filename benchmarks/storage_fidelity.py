"""Storage forms against float32 on one computed run: disk, every analysis, every figure, every claim.

    python benchmarks/storage_fidelity.py RESULTS [--run fc_sgd] [--sample-fraction 0.1] [--out PREFIX]

RESULTS is a results directory (results_dir) in which the run went through the whole workflow with
`lca.storage: float32` and `lca.store: full` (the default config: `snakemake --cores all`). For each
other form (bfloat16; a stratified sample of the parameters) this script makes a results directory beside
it holding the same data file and trajectory, re-stores the run's float32 chunks in that form
(benchmarks/transcode.py: what the gradient jobs would write with those settings, as tests/test_storage.py
checks dataset for dataset), and runs the workflow from assembly on (`snakemake --cores 2 all` with the
form's settings): lca.h5, summary, every analysis, figure and the claims. It then compares the tables
with the float32 ones and writes PREFIX.md and PREFIX.json."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from transcode import transcode_run  # noqa: E402

from lcaflow.config import validate_config  # noqa: E402
from lcaflow.tables import read_tsv  # noqa: E402


def forms(fraction: float) -> dict[str, dict]:
    return {
        "bfloat16": {"storage": "bfloat16"},
        f"sampled {fraction:g}": {"store": "sampled", "sample_fraction": fraction},
    }


def prepare(reference: Path, run: str, name: str, settings: dict) -> Path:
    """A results directory with the reference's data and trajectory and the run's chunks in the new form,
    their modification times in DAG order so that Snakemake starts at assembly."""
    out = reference.parent / f"{reference.name}-{name.replace(' ', '-')}"
    shutil.rmtree(out, ignore_errors=True)
    (out / "runs" / run).mkdir(parents=True)
    shutil.copytree(reference / "data", out / "data")
    shutil.copy2(reference / "runs" / run / "trajectory.h5", out / "runs" / run / "trajectory.h5")
    config = validate_config({**yaml_config(), "lca": {**yaml_config().get("lca", {}), **settings}})
    transcode_run(reference / "runs" / run, out / "runs" / run, config["lca"])
    now = time.time()
    for k, path in enumerate([*sorted((out / "data").iterdir()), out / "runs" / run / "trajectory.h5"]):
        os.utime(path, (now - 100 + k, now - 100 + k))
    return out


def yaml_config() -> dict:
    import yaml

    return yaml.safe_load((REPO / "config.yaml").read_text())


def run_workflow(out: Path, settings: dict) -> float:
    import yaml

    config = yaml_config()
    config["results_dir"] = str(out)
    config["lca"] = {**config.get("lca", {}), **settings}
    config_path = out.with_suffix(".yaml")
    config_path.write_text(yaml.safe_dump(config))
    start = time.time()
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2", "all", "--configfile", str(config_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    text = result.stdout + result.stderr
    planned = text.split("Job stats:", 1)[-1].split("\n\n", 1)[0]
    if any(line.split()[:1] in (["gradients"], ["train"]) for line in planned.splitlines()):
        raise SystemExit(f"{out}: Snakemake recomputed training or gradient jobs; the chunks were not taken as they are")
    return time.time() - start


def disk(folder: Path) -> dict:
    size = lambda p: p.stat().st_size  # noqa: E731
    return {
        "trajectory": size(folder / "trajectory.h5"),
        "chunks": sum(size(p) for p in (folder / "chunks").glob("*.h5")),
        "lca": size(folder / "lca.h5"),
        "small": sum(size(p) for p in folder.rglob("*") if p.is_file() and p.parent.name in ("stats", "figures", "summary"))
        + size(folder / "grounding.json"),
    }


def numbers(results: Path, run: str) -> dict:
    stats = results / "runs" / run / "stats"
    load = lambda name: json.loads((stats / name).read_text())  # noqa: E731
    noise, osc, sync, neurons = load("noise.json"), load("oscillation.json"), load("synchronization.json"), load("neurons.json")
    layers = read_tsv(stats / "layers.tsv")
    grounding = json.loads((results / "runs" / run / "grounding.json").read_text())
    d = noise["distribution"]
    return {
        "pct_helping_of_nonzero": noise["pct_helping_of_nonzero"],
        "pct_helping": noise["pct_helping"],
        "layer_lca": dict(zip(layers["layer"].tolist(), layers["lca"].tolist())),
        "help_fraction_median": noise["help_fraction_per_param"]["median"],
        "kurtosis_pooled": d["kurtosis"],
        "kurtosis_per_iteration_median": d["kurtosis_per_iteration_median"],
        "weibull_k_all": d["weibull"]["all"]["shape_k"],
        "tail_share_observed": d["tail_share_observed"],
        "tail_share_within_iteration_mean": d["tail_share_within_iteration_mean"],
        "pooled_from": d.get("pooled_from"),
        "iterations_per_weight_turn": osc["iterations_per_weight_direction_change"],
        "iterations_per_gradient_sign_change": osc["iterations_per_gradient_sign_change"],
        "trace_most_helping": osc["traces"]["most_helping"]["index_in_tensor"],
        "synchronized": {k: v["synchronized_total"] for k, v in sync["signals"].items()},
        "correlation": {
            layer: {k: v[k] for k in ("same_output", "same_input", "baseline", "ks_same_output_vs_baseline_p")}
            for layer, v in neurons["correlation"].items()
        },
        "specialization": neurons["specialization"],
        "followed_from": neurons.get("followed_from"),
        "storage_error": grounding["storage"],
        "claims": dict(zip(*(read_tsv(results / "claims.tsv")[k].tolist() for k in ("claim", "holds")))),
    }


def relative(a: float, b: float) -> float:
    return abs(a - b) / abs(b) if b else abs(a - b)


def compare(ref: dict, other: dict) -> dict:
    return {
        "pct_helping_of_nonzero_points": other["pct_helping_of_nonzero"] - ref["pct_helping_of_nonzero"],
        "largest_layer_relative_difference": max(relative(other["layer_lca"][k], v) for k, v in ref["layer_lca"].items()),
        "kurtosis_pooled_relative": relative(other["kurtosis_pooled"], ref["kurtosis_pooled"]),
        "weibull_k_relative": relative(other["weibull_k_all"], ref["weibull_k_all"]),
        "tail_share_relative": relative(other["tail_share_observed"], ref["tail_share_observed"]),
        "gradient_sign_change_same": other["iterations_per_gradient_sign_change"] == ref["iterations_per_gradient_sign_change"],
        "synchronized_same": other["synchronized"] == ref["synchronized"],
        "specialization_same": other["specialization"] == ref["specialization"],
        "claims_changed": [c for c, v in ref["claims"].items() if other["claims"].get(c) != v],
    }


def figures_differing(ref: Path, other: Path, run: str) -> list[str]:
    a, b = ref / "runs" / run / "figures", other / "runs" / run / "figures"
    return sorted(p.name for p in a.glob("*.png") if not (b / p.name).is_file() or (b / p.name).read_bytes() != p.read_bytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--run", default="fc_sgd")
    parser.add_argument("--sample-fraction", type=float, default=0.1)
    parser.add_argument("--out", type=Path, default=Path("storage_fidelity"))
    args = parser.parse_args()
    ref_dir = args.results.resolve()
    folder = ref_dir / "runs" / args.run
    T, K = (lambda f: (f["lca"].shape[0], f["lca_total"].shape[0]))(__import__("h5py").File(folder / "lca.h5"))
    table = {"float32": {"disk": disk(folder), "numbers": numbers(ref_dir, args.run), "seconds_from_assembly": None}}
    for name, settings in forms(args.sample_fraction).items():
        out = prepare(ref_dir, args.run, name, settings)
        seconds = run_workflow(out, settings)
        entry = {"disk": disk(out / "runs" / args.run), "numbers": numbers(out, args.run), "seconds_from_assembly": seconds}
        entry["compared"] = compare(table["float32"]["numbers"], entry["numbers"])
        entry["figures_differing"] = figures_differing(ref_dir, out, args.run)
        table[name] = entry
    for entry in table.values():
        d = entry["disk"]
        entry["lca_bytes_per_param_per_iteration"] = (d["chunks"] + d["lca"]) / (T * K)
        entry["total_bytes"] = sum(d.values())
    args.out.with_suffix(".json").write_text(json.dumps({"run": args.run, "T": T, "K": K, "forms": table}, indent=1, default=float) + "\n")
    args.out.with_suffix(".md").write_text(markdown(args.run, T, K, table) + "\n")
    print(markdown(args.run, T, K, table))


def markdown(run: str, T: int, K: int, table: dict) -> str:
    names = list(table)
    rows = [
        ("run folder (trajectory + chunks + lca.h5 + tables, figures)", lambda e: f"{e['total_bytes'] / 1e6:.0f} MB"),
        ("LCA bytes per parameter per iteration (chunks + lca.h5)", lambda e: f"{e['lca_bytes_per_param_per_iteration']:.3f}"),
        ("% helping (of non-zero)", lambda e: f"{e['numbers']['pct_helping_of_nonzero']:.4f}"),
        ("largest per-layer difference", lambda e: f"{e['compared']['largest_layer_relative_difference']:.2e}" if "compared" in e else "-"),
        ("stored rows' sum error, cumulative (% of loss change)", lambda e: f"{e['numbers']['storage_error']['cumulative_error_pct']:+.2e}"),
        ("stored rows' sum error, largest per iteration (nats)", lambda e: f"{e['numbers']['storage_error']['max_abs_iteration_error']:.1e}"),
        ("pooled kurtosis", lambda e: f"{e['numbers']['kurtosis_pooled']:.4g}"),
        ("Weibull k (all)", lambda e: f"{e['numbers']['weibull_k_all']:.4f}"),
        ("tail share (pooled, > 3 sd)", lambda e: f"{e['numbers']['tail_share_observed']:.4f}"),
        ("iterations per gradient sign change", lambda e: f"{e['numbers']['iterations_per_gradient_sign_change']:.4g}"),
        ("synchronised moments (LCA, gradient, motion)", lambda e: ", ".join(str(e["numbers"]["synchronized"].get(k)) for k in ("lca", "gradient", "motion"))),
        ("correlation same output / baseline (first layer)", lambda e: "{same_output:.3f} / {baseline:.3f}".format(**next(iter(e["numbers"]["correlation"].values())))),
        ("claim verdicts changed", lambda e: str(len(e["compared"]["claims_changed"])) if "compared" in e else "-"),
        ("figures not byte-identical", lambda e: ", ".join(e["figures_differing"]) or "none" if "compared" in e else "-"),
        ("workflow from assembly to claims (s)", lambda e: f"{e['seconds_from_assembly']:.0f}" if e["seconds_from_assembly"] else "-"),
    ]
    lines = [f"# Storage forms on run {run} (T = {T}, K = {K:,})", "", "| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(get(table[n]) for n in names) + " |" for label, get in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
