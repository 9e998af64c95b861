"""Neurons and classes (S6, Fig. S1, S2, S20-S22): LCA per neuron, correlated weights, class specialisation.

LCA per neuron and per class and neuron, and per-parameter totals, come from the gradient jobs'
reductions (every parameter). The weights followed over iterations (the correlation test, Fig. S2's
traces) come from the stored matrix: every parameter, or the sample with lca.store: sampled (the JSON
says which)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
from scipy import stats as sps

from .. import stats
from ..io import finite, iter_row_blocks, require, write_json
from ..layout import Layout, kernel_of, units_of
from ..storage import Matrix, matrix
from ..tables import write_tsv
from .common import NO_CLASSES_REASON, has_classes, layout_of, open_lca, source_of

NEEDS = ("lca_total", "lca_neuron", "lca_class_neuron", "layout", "classes")


def correlation_groups(shape, rng, nodes: int, per_node: int, stored: np.ndarray | None = None) -> dict[str, list[np.ndarray]]:
    """Flat indices into a kernel: groups of weights sharing an output, sharing an input, and baseline
    "fake nodes" of weights that pairwise share neither (S20). With `stored` (a boolean mask over the
    kernel's entries, when only a sample is stored) the groups are drawn from the stored weights."""
    n_out, n_in = shape[0], shape[1]
    rest = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    flat = np.arange(int(np.prod(shape))).reshape(n_out, n_in, rest)
    if stored is not None:
        return _stored_groups(flat, stored, rng, nodes, per_node)
    groups = {"same_output": [], "same_input": [], "baseline": []}
    for o in rng.permutation(n_out)[:nodes]:
        members = flat[o].ravel()
        groups["same_output"].append(rng.choice(members, min(per_node, members.size), replace=False))
    for i in rng.permutation(n_in)[:nodes]:
        members = flat[:, i].ravel()
        groups["same_input"].append(rng.choice(members, min(per_node, members.size), replace=False))
    m = min(per_node, n_out, n_in)
    for _ in range(nodes):
        outs, ins = rng.permutation(n_out)[:m], rng.permutation(n_in)[:m]
        groups["baseline"].append(flat[outs, ins, rng.integers(rest, size=m)])
    return groups


def _stored_groups(flat, stored, rng, nodes: int, per_node: int) -> dict[str, list[np.ndarray]]:
    groups = {"same_output": [], "same_input": [], "baseline": []}
    for g, rows in (
        ("same_output", [flat[o].ravel() for o in range(flat.shape[0])]),
        ("same_input", [flat[:, i].ravel() for i in range(flat.shape[1])]),
    ):
        candidates = [r[stored[r]] for r in rows]
        candidates = [c for c in candidates if c.size >= 2]
        for k in rng.permutation(len(candidates))[:nodes]:
            groups[g].append(rng.choice(candidates[k], min(per_node, candidates[k].size), replace=False))
    available = np.flatnonzero(stored)
    out_of, in_of = available // (flat.shape[1] * flat.shape[2]), (available // flat.shape[2]) % flat.shape[1]
    for _ in range(nodes):  # weights that pairwise share neither their output nor their input
        used_out, used_in, node = set(), set(), []
        for k in rng.permutation(available.size):
            if out_of[k] not in used_out and in_of[k] not in used_in:
                node.append(available[k])
                used_out.add(out_of[k])
                used_in.add(in_of[k])
                if len(node) == per_node:
                    break
        groups["baseline"].append(np.array(node, dtype=np.int64))
    return groups


def followed_columns(layout: Layout, lca: Matrix, rng, nodes: int, per_node: int) -> dict[str, dict[str, list[np.ndarray]]]:
    """Per layer with a 2+-D kernel: the correlation groups, as columns of theta."""
    out = {}
    for name in layout.layers:
        kernel = kernel_of(layout, name)
        if len(layout.shapes[kernel]) < 2:
            continue
        a = layout.offsets[kernel]
        stored = None
        if lca.sampled:
            stored = lca.position(np.arange(a, a + layout.sizes[kernel])) >= 0
        groups = correlation_groups(layout.shapes[kernel], rng, nodes, per_node, stored)
        out[name] = {g: [a + idx for idx in v] for g, v in groups.items()}
    return out


def read_columns(lca: Matrix, columns: np.ndarray) -> np.ndarray:
    """(T, n) float32: the stored rows of the given columns of theta (all stored), in one streamed pass."""
    where = lca.position(columns)
    traces = np.zeros((lca.shape[0], columns.size), dtype=np.float32)  # T x (a few thousand): float32 halves it
    for start, block in iter_row_blocks(lca):
        traces[start : start + len(block)] = block[:, where]
    return traces


def correlation_table(traces, followed, corr_cols, out_correlation) -> dict:
    """S20: mean pairwise correlation of LCA over iterations within each group; KS test against baseline."""
    position = {c: i for i, c in enumerate(followed.tolist())}
    corr_rows = {k: [] for k in ("layer", "group", "node", "mean_correlation")}
    corr_summary = {}
    for name, groups in corr_cols.items():
        values = {}
        for g, members in groups.items():
            values[g] = np.array([stats.mean_pairwise_correlation(traces[:, [position[c] for c in m]]) for m in members])
            for node, v in enumerate(values[g]):
                corr_rows["layer"].append(name)
                corr_rows["group"].append(g)
                corr_rows["node"].append(node)
                corr_rows["mean_correlation"].append(v)
        summary = {g: finite(np.nanmean(v)) if np.isfinite(v).any() else None for g, v in values.items()}
        for g in ("same_output", "same_input"):
            a, b = values[g][np.isfinite(values[g])], values["baseline"][np.isfinite(values["baseline"])]
            ks = sps.ks_2samp(a, b) if a.size and b.size else None
            summary[f"ks_{g}_vs_baseline_statistic"] = float(ks.statistic) if ks else None
            summary[f"ks_{g}_vs_baseline_p"] = float(ks.pvalue) if ks else None
        corr_summary[name] = summary
    write_tsv(out_correlation, {k: np.array(v) for k, v in corr_rows.items()})

    return corr_summary


def specialization_table(
    neuron_class: dict, with_units, classes, layout: Layout, totals, out_specialization
) -> tuple[dict, dict]:
    """S21/S22: how much each neuron's help concentrates on its top 1, 2, 3 classes; the first layer's most
    specialised neurons."""
    spec_rows = {k: [] for k in ("layer", "neuron", "help_total", "top1_share", "top2_share", "top3_share", "top_classes")}
    spec_summary = {}
    examples = {}
    for name in with_units:
        help_by_class = np.clip(-neuron_class[name].T, 0, None)  # (neurons, C) amount helped
        shares = stats.top_class_shares(help_by_class, 3)
        order = np.argsort(-help_by_class, axis=1, kind="stable")[:, :3]
        for n in range(help_by_class.shape[0]):
            spec_rows["layer"].append(name)
            spec_rows["neuron"].append(n)
            spec_rows["help_total"].append(help_by_class[n].sum())
            for k in range(3):
                spec_rows[f"top{k + 1}_share"].append(shares[n, k])
            spec_rows["top_classes"].append(",".join(classes[c] for c in order[n]))
        valid = np.isfinite(shares[:, 0])
        spec_summary[name] = {
            f"pct_neurons_top{k + 1}_over_80pct": finite(100 * (shares[valid, k] > 0.8).mean()) if valid.any() else None
            for k in range(3)
        }
        if name == with_units[0]:
            # S22: the first layer's most specialised neurons (among the half that helped most)
            helped = help_by_class.sum(1)
            candidates = np.flatnonzero(helped >= np.median(helped))
            chosen_neurons = []
            for k in (1, 2):
                pool = [c for c in candidates if c not in chosen_neurons] or list(candidates)
                if k == 2:  # a neuron on two classes: not one that the top class alone explains
                    pool = [c for c in pool if not shares[c, 0] > 0.8] or pool
                n = int(pool[int(np.argmax(np.nan_to_num(shares[pool, k - 1])))])
                chosen_neurons.append(n)
                kernel = kernel_of(layout, name)
                a = layout.offsets[kernel]
                per_unit = int(np.prod(layout.shapes[kernel][1:]))
                examples[f"top{k}"] = {
                    "neuron": n,
                    "help_by_class": help_by_class[n],
                    "incoming_lca": totals[a + n * per_unit : a + (n + 1) * per_unit],
                    "incoming_shape": list(layout.shapes[kernel][1:]),
                }
    write_tsv(out_specialization, {k: np.array(v) for k, v in spec_rows.items()})

    return spec_summary, examples


def write_neurons_h5(
    out_h5, neuron_lca, chosen_traces, chosen, best, random, examples, with_units, classes, layout, skipped, source
) -> None:
    tmp = Path(str(out_h5) + ".partial")
    with h5py.File(tmp, "w") as out:
        g = out.create_group("neuron_lca")
        for name, values in neuron_lca.items():
            g.create_dataset(name, data=values)
        out.create_dataset("param_traces", data=chosen_traces)
        out.create_dataset("param_index", data=chosen)
        out.create_dataset("most_helpful", data=best)
        out.create_dataset("random", data=random)
        ex = out.create_group("example_neurons")
        for key, d in examples.items():
            e = ex.create_group(key)
            e.attrs["neuron"] = d["neuron"]
            e.attrs["incoming_shape"] = d["incoming_shape"]
            e.create_dataset("help_by_class", data=d["help_by_class"])
            e.create_dataset("incoming_lca", data=d["incoming_lca"])
        out.attrs["layers"] = json.dumps(with_units)
        out.attrs["classes"] = json.dumps(classes)
        out.attrs["first_layer"] = layout.layers[0]
        out.attrs["first_neuron_layer"] = with_units[0] if with_units else ""
        out.attrs["skipped"] = json.dumps(skipped)
        out.attrs["followed_from"] = source
    tmp.replace(out_h5)


def neurons(lca_path, out_h5, out_correlation, out_specialization, out_json, n_top=50, nodes=30, per_node=12, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    with open_lca(lca_path) as f:
        require(f, NEEDS, lca_path, "assemble")
        layout = layout_of(f, lca_path)
        classes = list(f["classes"].asstr()[()])
        per_class = has_classes(f)
        lca = matrix(f, "lca", lca_path)
        units = {name: units_of(layout, name) for name in layout.layers}
        with_units = [name for name in layout.layers if units[name][0] is not None]
        skipped = {name: f"skipped: {why}" for name, (n, why) in units.items() if n is None}
        neuron_lca = {name: f[f"lca_neuron/{name}"][()] for name in with_units}
        neuron_class = {name: f[f"lca_class_neuron/{name}"][()] for name in with_units}
        totals = f["lca_total"][()]
        corr_cols = followed_columns(layout, lca, rng, nodes, per_node)
        followed = np.unique(
            np.concatenate([np.concatenate(v) for d in corr_cols.values() for v in d.values() if v] or [np.empty(0, int)])
        ).astype(np.int64)
        traces = read_columns(lca, followed)
        # S2: cumulative LCA of the most helpful and of random parameters of the first layer (among those stored)
        first = lca.columns[layout.layer_index()[lca.columns] == 0]
        best = first[np.argsort(totals[first], kind="stable")[:n_top]]
        random = np.sort(rng.choice(first, min(n_top, first.size), replace=False))
        chosen = np.unique(np.concatenate([best, random]))
        chosen_traces = read_columns(lca, chosen).astype(np.float64)
        source = source_of(lca, layout.num_params)

    corr_summary = correlation_table(traces, followed, corr_cols, out_correlation)
    spec_summary, examples = specialization_table(
        neuron_class if per_class else {}, with_units if per_class else [], classes, layout, totals, out_specialization
    )
    write_neurons_h5(
        out_h5, neuron_lca, chosen_traces, chosen, best, random, examples, with_units, classes, layout, skipped, source
    )
    result = {
        "correlation": corr_summary,
        "specialization": spec_summary,
        "n_top": n_top,
        "skipped_layers": skipped,
        "followed_from": source,  # the correlation test and Fig. S2's parameters
    }
    if not per_class:
        result["specialization_skipped"] = f"skipped: {NO_CLASSES_REASON}"
    write_json(out_json, result)
    return result
