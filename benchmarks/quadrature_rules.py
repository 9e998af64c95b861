"""Offline study: how should adaptive quadrature spread the trapezoid's known error over the parameters?

    python benchmarks/quadrature_rules.py RESULTS_DIR RUN [--iterations N] [--fractions 0.02 0.05 0.1] [--out F]

Recomputes, along a finished run's trajectory (RESULTS_DIR/runs/RUN/trajectory.h5 and its data file), the
training split's full-set gradient at every end point and midpoint, and the gradients of nested, class-
stratified, seeded subsets of the examples at the same points (the full-set gradient is assembled from the
parts: one pass per point). For every iteration it then allocates the loss change by the one-panel Simpson
rule (the reference) and by each candidate rule that needs no full midpoint:

- `lca`: the trapezoid with its known error removed in proportion to |LCA| (the rule shipped before);
- `dg`: the same error removed in proportion to |delta * (g_t+1 - g_t)| (where the gradient moves);
- `cubic`: the midpoint gradient predicted from g_t-1, g_t, g_t+1, g_t+2 (a cubic in time), residual by |LCA|;
- `unit<f>`: the same estimate summed over each unit (a row of a tensor: a neuron's incoming weights, one bias)
  and spread over the unit's entries in proportion to |LCA| (unbiased unit totals, no sign changed by noise);
- `sub<f>`: the Simpson correction (2/3) delta * (g_mid - (g_t + g_t+1) / 2) estimated on a subset holding a
  fraction f of each class (its midpoint costs f of a pass), the remaining error removed by |LCA|. Accepted
  either where the trapezoid's error is small (`/E`) or where the *remaining* error is (`/r`).

Each rule is used on the iterations it accepts (its error below a threshold), Simpson elsewhere, and compared
with Simpson everywhere: full-set evaluations per iteration, the largest per-tensor difference of the totals,
% helping, entries whose sign differs. Writes <out>.json and prints a markdown table."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import h5py
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from lcaflow.data import Split  # noqa: E402
from lcaflow.objective import FullSetObjective  # noqa: E402
from lcaflow.paths import ResultPaths  # noqa: E402
from lcaflow.spec import RunData, RunSpec  # noqa: E402
from lcaflow.trajectory import read_trajectory_meta  # noqa: E402

THRESHOLDS = (5e-4, 1e-3, 2e-3)


def nested_parts(labels: np.ndarray, fractions: list[float], seed: int = 0) -> list[np.ndarray]:
    """Index sets of the nested subsets' increments (fractions[0], fractions[1] - fractions[0], ...) and the
    rest; every class contributes its share to each subset."""
    rng = np.random.default_rng(seed)
    parts = [[] for _ in range(len(fractions) + 1)]
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        bounds = [0] + [int(round(f * len(members))) for f in fractions] + [len(members)]
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            parts[i].append(members[a:b])
    return [np.sort(np.concatenate(p)) for p in parts]


class Evaluator:
    """The full-set gradient and the subsets' gradients at a theta, from one pass over the parts."""

    def __init__(self, model, layout, data: RunData, fractions, loss, chunk_size):
        y = data.train.y
        labels = data.class_labels(data.train).cpu().numpy()
        self.parts = nested_parts(labels, fractions)
        self.sizes = np.array([len(p) for p in self.parts], dtype=np.float64)
        self.objectives = [
            FullSetObjective(model, layout, Split(data.train.x[p], y[p]), data.num_classes, chunk_size, per_class=False, loss=loss)
            for p in self.parts
        ]

    def __call__(self, theta):
        points = [o(theta) for o in self.objectives]
        grads, losses = [p.grad for p in points], [float(p.loss) for p in points]
        n = self.sizes.sum()
        full_g = sum(g * (s / n) for g, s in zip(grads, self.sizes))
        full_l = sum(v * s / n for v, s in zip(losses, self.sizes))
        subsets, acc_g, acc_n = [], 0.0, 0.0
        for g, s in zip(grads[:-1], self.sizes[:-1]):
            acc_g, acc_n = acc_g + g * s, acc_n + s
            subsets.append(acc_g / acc_n)
        return full_l, full_g, subsets


def remove_by(row: torch.Tensor, error: float, weight: torch.Tensor) -> torch.Tensor:
    w = weight.abs()
    total = float(w.sum())
    return row - w * (error / total) if total > 0 else row


class Tally:
    """What one rule at one threshold gives, summed over the run."""

    def __init__(self, K):
        self.totals = torch.zeros(K, dtype=torch.float64)
        self.helping = 0
        self.entries = 0
        self.sign_differs = 0
        self.evaluations = 0.0
        self.accepted = 0

    def add(self, row, simpson, evaluations, accepted):
        self.totals += row
        nz = row != 0
        self.helping += int((row < 0).sum())
        self.entries += int(nz.sum())
        self.sign_differs += int(((row > 0) != (simpson > 0))[nz & (simpson != 0)].sum())
        self.evaluations += evaluations
        self.accepted += int(accepted)


def unit_index(layout) -> torch.Tensor:
    """The unit of every parameter: one per row (first-axis index) of every tensor, one for a scalar."""
    index, base = [], 0
    for shape, size in zip(layout.shapes, layout.sizes):
        units = shape[0] if shape else 1
        index.append(base + np.repeat(np.arange(units), size // units))
        base += units
    return torch.from_numpy(np.concatenate(index))


def spread_by_unit(trap: torch.Tensor, correction: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """The correction's total over each unit, spread over the unit's entries in proportion to |trapezoid|."""
    n = int(units.max()) + 1
    magnitude = trap.abs()
    unit_total = torch.zeros(n, dtype=torch.float64).index_add_(0, units, correction)
    unit_magnitude = torch.zeros(n, dtype=torch.float64).index_add_(0, units, magnitude)
    share = torch.where(unit_magnitude > 0, unit_total / unit_magnitude, 0.0)
    return trap + magnitude * share[units]


def candidates(delta, dl, g0, g1, gm, s0, s1, sm, fractions, residual_ratio, units) -> dict:
    """Each rule's row for one iteration, the error its acceptance is judged by, and its extra cost."""
    trap = delta * (g0 + g1) / 2
    E = float(trap.sum()) - dl
    simpson = delta * (g0 + 4 * gm + g1) / 6
    rows = {"simpson": (simpson, 0.0, 1.0), "lca": (remove_by(trap, E, trap), abs(E), 0.0), "dg": (remove_by(trap, E, delta * (g1 - g0)), abs(E), 0.0)}
    for f, a0, am, a1 in zip(fractions, s0, sm, s1):
        row = trap + (2 / 3) * delta * (am - (a0 + a1) / 2)
        r = float(row.sum()) - dl
        residual_ratio[f].append(abs(r) / max(abs(E), 1e-12))
        fixed = remove_by(row, r, row)
        rows[f"sub{f:g}/E"] = (fixed, abs(E), f)  # the subset's end points come with the full pass
        rows[f"sub{f:g}/r"] = (fixed, abs(r), f)
        row = spread_by_unit(trap, (2 / 3) * delta * (am - (a0 + a1) / 2), units)
        r = float(row.sum()) - dl
        fixed = remove_by(row, r, row)
        rows[f"unit{f:g}/E"] = (fixed, abs(E), f)
        rows[f"unit{f:g}/r"] = (fixed, abs(r), f)
    return rows


def study(results_dir: str, run: str, iterations: int | None, fractions: list[float], stride: int = 1) -> dict:
    paths = ResultPaths(results_dir)
    traj = paths.run(run).trajectory
    meta = read_trajectory_meta(traj)
    spec = RunSpec.of(run, meta["run"])
    torch.set_num_threads(int(os.environ.get("THREADS", "1")))
    split = {"train_indices": meta["train_indices"], "val_indices": meta["val_indices"], "val_source": meta["val_source"]}
    data = RunData(spec, paths.data(meta["run"]["dataset"]), torch.device("cpu"), split)
    model = spec.build_model(meta["input_shape"], meta["num_classes"])
    layout = meta["layout"]
    evaluate = Evaluator(model, layout, data, fractions, spec.loss, 10000)
    T = meta["shape"][0] - 1 if iterations is None else iterations
    tensor_of = torch.from_numpy(np.repeat(np.arange(len(layout.names)), layout.sizes))

    rules = ["simpson", "lca", "dg"] + [f"{k}{f:g}/{c}" for k in ("sub", "unit") for f in fractions for c in ("E", "r")]
    units = unit_index(layout)
    tallies = {(r, a): Tally(layout.num_params) for r in rules for a in THRESHOLDS}
    chosen = range(0, T, stride)
    residual_ratio = {f: [] for f in fractions}
    with h5py.File(traj, "r") as f:
        params = f["params"]
        for count, t in enumerate(chosen):
            th0, th1 = (torch.from_numpy(params[t]).double(), torch.from_numpy(params[t + 1]).double())
            (l0, g0, s0), (l1, g1, s1) = evaluate(th0), evaluate(th1)
            lm, gm, sm = evaluate((th0 + th1) / 2)
            rows = candidates(th1 - th0, l1 - l0, g0, g1, gm, s0, s1, sm, fractions, residual_ratio, units)
            simpson = rows["simpson"][0]
            for name, (row, err, cost) in rows.items():
                for a in THRESHOLDS:
                    ok = err <= a
                    tallies[(name, a)].add(row if ok else simpson, simpson, 1.0 + cost if ok else 2.0, ok)
            if count % 10 == 0:
                print(f"iteration {t} ({count + 1}/{len(chosen)})", file=sys.stderr, flush=True)
    T = len(chosen)
    ref = tallies[("simpson", THRESHOLDS[0])]
    ref_tensor = torch.zeros(len(layout.names), dtype=torch.float64).index_add_(0, tensor_of, ref.totals)
    out = {"run": run, "iterations": T, "fractions": fractions, "tensors": list(layout.names), "rules": {}}
    for (name, a), tally in tallies.items():
        per_tensor = torch.zeros(len(layout.names), dtype=torch.float64).index_add_(0, tensor_of, tally.totals)
        diff = (per_tensor - ref_tensor).abs()
        rel = (diff / ref_tensor.abs()).tolist()
        ok = [(d <= 3e-3 * abs(r)) or d <= 1e-4 for d, r in zip(diff.tolist(), ref_tensor.tolist())]
        out["rules"][f"{name}@{a:g}"] = {
            "evaluations_per_iteration": tally.evaluations / T,
            "accepted": tally.accepted,
            "per_tensor_rel_diff_pct": [100 * v for v in rel],
            "per_tensor_abs_diff": diff.tolist(),
            "all_tensors_within_0.3pct_or_1e-4": all(ok),
            "pct_helping": 100 * tally.helping / max(tally.entries, 1),
            "sign_differs_pct": 100 * tally.sign_differs / max(tally.entries, 1),
            "corr_per_param": float(np.corrcoef(tally.totals.numpy(), ref.totals.numpy())[0, 1]),
        }
    out["residual_over_trapezoid_error_median"] = {f"{f:g}": float(np.median(v)) for f, v in residual_ratio.items()}
    out["simpson_per_tensor"] = ref_tensor.tolist()
    return out


def table(result: dict) -> str:
    lines = [
        f"run {result['run']}, {result['iterations']} iterations; Simpson per-tensor totals "
        + ", ".join(f"{n} {v:.4f}" for n, v in zip(result["tensors"], result["simpson_per_tensor"])),
        "",
        "| rule@threshold | eval/iter | accepted | max per-tensor diff % | all within 0.3% | % helping | sign differs % | corr |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in result["rules"].items():
        lines.append(
            f"| {name} | {r['evaluations_per_iteration']:.3f} | {r['accepted']} | {max(r['per_tensor_rel_diff_pct']):.3f} "
            f"| {r['all_tensors_within_0.3pct_or_1e-4']} | {r['pct_helping']:.4f} | {r['sign_differs_pct']:.3f} | {r['corr_per_param']:.6f} |"
        )
    lines.append("")
    lines.append(f"median |remaining error| / |trapezoid error| by subset fraction: {result['residual_over_trapezoid_error_median']}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results_dir")
    parser.add_argument("run")
    parser.add_argument("--iterations", type=int)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.02, 0.05, 0.1])
    parser.add_argument("--stride", type=int, default=1, help="every stride-th iteration only")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    result = study(args.results_dir, args.run, args.iterations, args.fractions, args.stride)
    print(table(result))
    if args.out:
        Path(args.out).with_suffix(".json").write_text(json.dumps(result, indent=1))
        Path(args.out).with_suffix(".md").write_text(table(result) + "\n")


if __name__ == "__main__":
    main()
