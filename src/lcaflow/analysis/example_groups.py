"""Who helped whom, interference and clusters of examples: the per-example-group LCA (and the per-example
curves, lca.example_curves) of a run grouped by runs.<run>.example_groups (docs/example-groups.md).

- who helped whom: the LCA of each parameter group on each example group's loss, over training and per
  window of iterations;
- interference: per iteration, how much of the groups' (and the sampled examples') loss changes cancel,
  1 - |sum_g dL_g| / sum_g |dL_g|; the pairs of groups whose losses move in opposite directions most often,
  and the parameter groups that carry the opposition;
- clusters of examples: the sampled examples clustered by their cumulative loss curves (Ward's hierarchical
  clustering, scipy; scikit-learn's HDBSCAN would add a dependency), each cluster's mean curve, its
  "breakthroughs" (the iterations where its mean loss drops most) and the parameter groups that carry them."""

from __future__ import annotations

import numpy as np

from ..io import require, write_json
from ..tables import write_tsv
from .common import layout_of, open_lca

NEEDS = ("lca_class_layer", "layout", "classes")
WINDOWS = 10  # windows of iterations of the who-helped-whom table over time
MAX_CLUSTERS = 4
BREAKTHROUGHS = 3  # iterations per cluster where its mean loss drops most
NO_CURVES = "no per-example curves (set lca.example_curves, e.g. 1000)"


def example_groups(lca_path, out: dict) -> dict:
    """The tables named in `out` (keys: whom, whom_time, interference, pairs, clusters, members, curves, json)."""
    with open_lca(lca_path) as f:
        require(f, NEEDS, lca_path, "assemble")
        layers = list(layout_of(f, lca_path).layers)
        tokens = "token_lca" in f  # token groups have their own datasets
        lca = f["token_lca" if tokens else "lca_class_layer"][()]  # (T, E, L)
        groups = [str(c) for c in f["token_groups" if tokens else "classes"].asstr()[()]]
        curves = (f["curve_lca"][()], f["curve_index"][()]) if "curve_lca" in f else None
    write_tsv(out["whom"], who_helped_whom(lca, layers, groups))
    write_tsv(out["whom_time"], who_helped_whom_over_time(lca, layers, groups))
    per_iteration = interference(lca, None if curves is None else curves[0])
    write_tsv(out["interference"], per_iteration)
    pairs = opposed_pairs(lca, layers, groups)
    write_tsv(out["pairs"], pairs)
    clusters = cluster_examples(*curves, layers) if curves is not None else None
    for key in ("clusters", "members", "curves"):
        write_tsv(out[key], clusters[key] if clusters else {"skipped": np.array([], dtype=str)})
    summary = _summary(per_iteration, pairs, clusters, groups)
    write_json(out["json"], summary, allow_nan=True)
    return summary


def who_helped_whom(lca: np.ndarray, layers: list[str], groups: list[str]) -> dict:
    """One row per (parameter group, example group): its LCA over training and its share of the group's."""
    total = lca.sum(0)  # (E, L)
    per_group = total.sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(per_group != 0, total / per_group, np.nan)
    return {
        "layer": np.array([layer for _ in groups for layer in layers]),
        "group": np.array([g for g in groups for _ in layers]),
        "lca": total.reshape(-1),
        "share_of_group": share.reshape(-1),
    }


def who_helped_whom_over_time(lca: np.ndarray, layers: list[str], groups: list[str]) -> dict:
    """The same per window of iterations (WINDOWS near-equal windows)."""
    rows = {k: [] for k in ("window_start", "window_stop", "layer", "group", "lca")}
    for window in np.array_split(np.arange(len(lca)), min(WINDOWS, len(lca))):
        total = lca[window].sum(0)
        for e, g in enumerate(groups):
            for j, layer in enumerate(layers):
                for key, value in zip(rows, (window[0], window[-1] + 1, layer, g, total[e, j])):
                    rows[key].append(value)
    return {k: np.array(v) for k, v in rows.items()}


def cancelled(changes: np.ndarray) -> np.ndarray:
    """Per row (iteration): the share of the parts' summed |change| that cancels, 1 - |sum| / sum |.|."""
    magnitude = np.abs(changes).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(magnitude > 0, 1 - np.abs(changes.sum(1)) / magnitude, np.nan)


def interference(lca: np.ndarray, curve_lca: np.ndarray | None) -> dict:
    changes = lca.sum(2)  # (T, E): each group's LCA per iteration (its loss change, up to the grounding error)
    rows = {
        "iteration": np.arange(len(lca)),
        "groups_sum_abs": np.abs(changes).sum(1),
        "groups_abs_sum": np.abs(changes.sum(1)),
        "groups_cancelled": cancelled(changes),
    }
    if curve_lca is not None:
        examples = curve_lca.sum(2)  # (T, M)
        rows.update(
            examples_sum_abs=np.abs(examples).sum(1),
            examples_abs_sum=np.abs(examples.sum(1)),
            examples_cancelled=cancelled(examples),
        )
    return rows


def opposed_pairs(lca: np.ndarray, layers: list[str], groups: list[str]) -> dict:
    """Every pair of groups: the iterations their losses moved in opposite directions, and per parameter group
    the LCA that opposes them then (where its parts on the two groups have opposite signs: the smaller |part|);
    the parameter group that carries most of it."""
    changes = lca.sum(2)
    rows = {k: [] for k in ("group_a", "group_b", "iterations_opposed", "share_opposed", "opposed_lca", "top_layer", "top_layer_share")}
    for a in range(len(groups)):
        for b in range(a + 1, len(groups)):
            opposed = changes[:, a] * changes[:, b] < 0
            pa, pb = lca[opposed, a], lca[opposed, b]  # (n, L)
            per_layer = np.where(pa * pb < 0, np.minimum(np.abs(pa), np.abs(pb)), 0.0).sum(0)
            top = int(np.argmax(per_layer))
            values = (
                groups[a], groups[b], int(opposed.sum()), float(opposed.mean()), float(per_layer.sum()), layers[top],
                float(per_layer[top] / per_layer.sum()) if per_layer.sum() > 0 else np.nan,
            )  # fmt: skip
            for key, value in zip(rows, values):
                rows[key].append(value)
    order = np.argsort(-np.array(rows["iterations_opposed"]), kind="stable")
    return {k: np.array(v)[order] if len(v) else np.array(v) for k, v in rows.items()}


def cluster_examples(curve_lca: np.ndarray, index: np.ndarray, layers: list[str]) -> dict:
    """The sampled examples clustered by their cumulative loss-change curves (Ward, at most MAX_CLUSTERS)."""
    from scipy.cluster.hierarchy import fcluster, linkage

    changes = curve_lca.sum(2).T  # (M, T)
    cumulative = np.cumsum(changes, axis=1)
    m = len(cumulative)
    labels = fcluster(linkage(cumulative, "ward"), t=min(MAX_CLUSTERS, m), criterion="maxclust") - 1 if m > 1 else np.zeros(1, int)
    clusters = {k: [] for k in ("cluster", "size", "final_change", "breakthroughs", "breakthrough_change", "breakthrough_share", "carrying_layer", "carrying_share")}
    curves = {"iteration": np.arange(1, changes.shape[1] + 1)}
    for c in np.unique(labels):
        members = labels == c
        mean = changes[members].mean(0)  # (T,) the cluster's mean loss change per iteration
        drops = np.argsort(mean, kind="stable")[:BREAKTHROUGHS]
        carried = curve_lca[drops][:, members].mean(1).sum(0)  # (L,) each layer's part of the breakthroughs
        top = int(np.argmin(carried))
        values = (
            int(c), int(members.sum()), float(mean.sum()), ",".join(str(int(t)) for t in sorted(drops)), float(mean[drops].sum()),
            float(mean[drops].sum() / mean.sum()) if mean.sum() else np.nan, layers[top],
            float(carried[top] / carried.sum()) if carried.sum() else np.nan,
        )  # fmt: skip
        for key, value in zip(clusters, values):
            clusters[key].append(value)
        curves[f"cluster_{int(c)}"] = np.cumsum(mean)
    members = {"example": np.asarray(index), "cluster": labels.astype(np.int64), "final_change": cumulative[:, -1]}
    return {"clusters": {k: np.array(v) for k, v in clusters.items()}, "members": members, "curves": curves}


def _summary(per_iteration: dict, pairs: dict, clusters: dict | None, groups: list[str]) -> dict:
    summary = {
        "groups": groups,
        "mean_groups_cancelled": float(np.nanmean(per_iteration["groups_cancelled"])) if len(groups) > 1 else None,
        "most_opposed_pair": [str(pairs["group_a"][0]), str(pairs["group_b"][0])] if len(pairs["group_a"]) else None,
        "most_opposed_share": float(pairs["share_opposed"][0]) if len(pairs["group_a"]) else None,
    }
    if "examples_cancelled" in per_iteration:
        summary["mean_examples_cancelled"] = float(np.nanmean(per_iteration["examples_cancelled"]))
    if clusters is None:
        summary["clusters_skipped"] = NO_CURVES
    else:
        summary["clusters"] = int(len(clusters["clusters"]["cluster"]))
    return summary
