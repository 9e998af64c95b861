"""Adaptive quadrature against Simpson on the same trajectories: per-parameter, per-layer, per-class and
per-neuron LCA, % helping, cost, and every claim's verdict.

    python benchmarks/quadrature_fidelity.py SIMPSON_RESULTS ADAPTIVE_RESULTS [--runs fc_sgd ...] [--out fidelity]

SIMPSON_RESULTS and ADAPTIVE_RESULTS are two results directories (results_dir) holding the same runs, made
from the same trajectories (copy trajectory.h5 and the data file into the second before running it, or train
both from one config and seed: training is bitwise reproducible on CPU), each run through the `claims`
target. Writes <out>.md (one row per run and method, the differences by magnitude decile, the claims whose
verdict differs) and <out>.json. Reads the T x K matrices in blocks of iterations, with h5py directly: both
results directories must store every parameter in float32 (lca.storage: float32, lca.store: full, the
defaults)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from lcaflow.integrate import TRAPEZOID, evaluations  # noqa: E402
from lcaflow.tables import read_tsv  # noqa: E402

BLOCK = 64  # rows of the T x K matrices read at a time


def neuron_index(f: h5py.File) -> tuple[np.ndarray, int]:
    """The output unit (neuron, channel) of every parameter, as the paper's per-neuron sums: a layer's weight
    entries grouped by their first axis, and its bias (and normalisation scale / shift) entries by theirs, onto the
    same units. Returns (index (K,), number of units)."""
    shapes = json.loads(f["layout"].attrs["shapes"])
    owners = f["layout/layer_of_param"].asstr()[()]
    index, first_unit, base = [], {}, 0
    for shape, layer in zip(shapes, owners):
        units = shape[0] if shape else 1
        size = int(np.prod(shape)) if shape else 1
        if layer not in first_unit:
            first_unit[layer] = base
            base += units
        index.append(first_unit[layer] + np.repeat(np.arange(units), size // units))
    return np.concatenate(index), base


def _max_rel_pct(x: np.ndarray, y: np.ndarray, floor: float = 0.0) -> float:
    """Largest |x - y| / |y| in percent over entries with |y| above `floor` times the largest |y|."""
    keep = np.abs(y) > floor * np.abs(y).max()
    return float(100 * np.max(np.abs(x - y)[keep] / np.abs(y)[keep]))


def _rel_percentiles(x: np.ndarray, y: np.ndarray, floor: float) -> list[float]:
    keep = np.abs(y) >= floor * np.abs(y).max()
    return [float(v) for v in np.percentile(100 * np.abs(x - y)[keep] / np.abs(y)[keep], [50, 90])]


def compare_run(simpson_dir: Path, adaptive_dir: Path, run: str) -> dict:
    """One run, streamed: the adaptive LCA matrix against Simpson's."""
    with h5py.File(adaptive_dir / "runs" / run / "lca.h5") as a, h5py.File(simpson_dir / "runs" / run / "lca.h5") as s:
        T, K = s["lca"].shape
        trapezoid_rows = a["num_splits"][()] == TRAPEZOID
        totals = {"adaptive": np.zeros(K), "simpson": np.zeros(K)}
        helping = {"adaptive": [0, 0], "simpson": [0, 0]}  # helping, non-zero
        sign_differs = both_non_zero = 0
        magnitude, relative = [], []
        for lo in range(0, T, BLOCK):
            x, y = a["lca"][lo : lo + BLOCK].astype(np.float64), s["lca"][lo : lo + BLOCK].astype(np.float64)
            for method, m in (("adaptive", x), ("simpson", y)):
                totals[method] += m.sum(0)
                helping[method][0] += int((m < 0).sum())
                helping[method][1] += int((m != 0).sum())
            non_zero = (x != 0) & (y != 0)
            both_non_zero += int(non_zero.sum())
            sign_differs += int((np.sign(x[non_zero]) != np.sign(y[non_zero])).sum())
            rows = trapezoid_rows[lo : lo + BLOCK]  # the other rows are Simpson's in both
            xs, ys = x[rows], y[rows]
            keep = ys != 0
            magnitude.append(np.abs(ys[keep]))
            relative.append(np.abs(xs[keep] - ys[keep]) / np.abs(ys[keep]))
        magnitude, relative = np.concatenate(magnitude), np.concatenate(relative)
        deciles = None
        if magnitude.size:
            edges = np.quantile(magnitude, np.linspace(0, 1, 11))
            bins = np.clip(np.searchsorted(edges, magnitude, side="right") - 1, 0, 9)
            deciles = [float(np.median(relative[bins == b])) for b in range(10)]
        layers = list(s["layout/layers"].asstr()[()])
        layer = a["lca_layer"][()].sum(0), s["lca_layer"][()].sum(0)
        classes = a["lca_class_layer"][()].sum((0, 2)), s["lca_class_layer"][()].sum((0, 2))
        neuron, units = neuron_index(s)
        neurons = np.bincount(neuron, totals["adaptive"], units), np.bincount(neuron, totals["simpson"], units)
        g = {"adaptive": json.loads(a.attrs["grounding"]), "simpson": json.loads(s.attrs["grounding"])}
        # from num_splits, so that Simpson runs made before grounding.json counted evaluations compare too
        cost = {method: float(1 + evaluations(f["num_splits"][()]).mean()) for method, f in (("adaptive", a), ("simpson", s))}
    with h5py.File(simpson_dir / "runs" / run / "trajectory.h5") as f:
        n_train, n_val = len(f["split/train_indices"]), len(f["split/val_indices"])
    methods = {}
    for method in ("simpson", "adaptive"):
        gm = g[method]
        methods[method] = {
            "evaluations_per_iteration": cost[method],
            "pass_equivalents_per_iteration": gm["train_passes_per_iteration"] + gm["val_passes_per_iteration"] * n_val / n_train,
            "cumulative_error_pct": gm["train"]["cumulative_error_pct"],
            "cumulative_error_val_pct": gm["val"]["cumulative_error_pct"],
            "pct_helping": 100 * helping[method][0] / helping[method][1],
            "iterations_trapezoid": gm.get("iterations_trapezoid", 0),
            "trapezoid_error_removed_pct": gm["train"].get("trapezoid_error_removed_pct"),
        }
    return {
        "run": run,
        "iterations": int(T),
        "params": int(K),
        "methods": methods,
        "sign_differs_pct": 100 * sign_differs / max(both_non_zero, 1),
        "layer_totals": {"layers": layers, "simpson": layer[1].tolist(), "adaptive": layer[0].tolist()},
        "layer_max_rel_diff_pct": _max_rel_pct(*layer),
        "class_max_rel_diff_pct": _max_rel_pct(*classes),
        # per-neuron totals: the largest difference relative to the largest |total|, and the median and 90th
        # percentile of the relative difference over units whose total is at least 1% of the largest
        "neuron_max_diff_of_largest_pct": float(100 * np.abs(neurons[0] - neurons[1]).max() / np.abs(neurons[1]).max()),
        "neuron_rel_diff_pct_median_p90": _rel_percentiles(*neurons, floor=0.01),
        "neuron_sign_differs": int((np.sign(neurons[0]) != np.sign(neurons[1])).sum()),
        "neurons": int(units),
        "neuron_corr": float(np.corrcoef(*neurons)[0, 1]),
        "param_total_corr": float(np.corrcoef(totals["adaptive"], totals["simpson"])[0, 1]),
        "rel_diff_by_decile_trapezoid_rows": deciles,
    }


def claims_changed(simpson_dir: Path, adaptive_dir: Path) -> tuple[int, list[str]]:
    """(claims compared, the ones whose verdict differs, with both measured values)."""
    s, a = (read_tsv(d / "claims.tsv") for d in (simpson_dir, adaptive_dir))
    changed = [
        f"{claim}: {hs} ({ms}) -> {ha} ({ma})"
        for claim, hs, ha, ms, ma in zip(s["claim"], s["holds"], a["holds"], s["measured"], a["measured"])
        if hs != ha
    ]
    return len(s["claim"]), changed


def markdown(rows: list[dict], claims: tuple[int, list[str]]) -> str:
    lines = [
        "| run | method | evaluations / iteration (train) | pass equivalents / iteration (train + val) | cumulative error, train (val) "
        "| iterations by trapezoid | % helping | sign differs | largest per-layer diff | largest per-class diff "
        "| per-neuron diff: median / 90th pct (largest, of the largest total) | corr. of per-parameter totals |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for method, m in r["methods"].items():
            cells = [
                r["run"],
                method,
                f"{m['evaluations_per_iteration']:.3f}",
                f"{m['pass_equivalents_per_iteration']:.3f}",
                f"{m['cumulative_error_pct']:+.3f}% ({m['cumulative_error_val_pct']:+.3f}%)",
                f"{m['iterations_trapezoid']}/{r['iterations']}",
                f"{m['pct_helping']:.3f}",
            ]
            if method == "adaptive":
                cells += [f"{r['sign_differs_pct']:.3f}%"]
                cells += [f"{r[k]:.2f}%" for k in ("layer_max_rel_diff_pct", "class_max_rel_diff_pct")]
                median, p90 = r["neuron_rel_diff_pct_median_p90"]
                cells += [f"{median:.2f}% / {p90:.2f}% ({r['neuron_max_diff_of_largest_pct']:.2f}%)"]
                cells += [f"{r['param_total_corr']:.6f}"]
            else:
                cells += ["-", "-", "-", "-", "1"]
            lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Median |adaptive - Simpson| / |Simpson| of single entries in the iterations allocated by the trapezoid, by decile "
        "of |Simpson LCA| (smallest first):",
        "",
        "| run | " + " | ".join(f"d{i}" for i in range(1, 11)) + " |",
        "|---|" + "---|" * 10,
    ]
    for r in rows:
        d = r["rel_diff_by_decile_trapezoid_rows"]
        lines.append(f"| {r['run']} | " + (" | ".join(f"{v:.1e}" for v in d) if d else "-") + " |")
    n, changed = claims
    lines += ["", f"Claims compared: {n}; verdicts changed: {len(changed)}" + (":" if changed else ".")]
    lines += [f"- {c}" for c in changed]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("simpson", type=Path)
    parser.add_argument("adaptive", type=Path)
    parser.add_argument("--runs", nargs="+", help="default: every run in both directories")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "quadrature_fidelity")
    args = parser.parse_args()
    runs = args.runs or sorted(
        p.name for p in (args.simpson / "runs").iterdir() if (p / "lca.h5").exists() and (args.adaptive / "runs" / p.name / "lca.h5").exists()
    )
    rows = [compare_run(args.simpson, args.adaptive, run) for run in runs]
    claims = claims_changed(args.simpson, args.adaptive)
    text = markdown(rows, claims)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps({"runs": rows, "claims_changed": claims[1]}, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
