"""Who helped whom, interference between example groups, and clusters of examples' loss curves."""

from __future__ import annotations

import json

import numpy as np

from ..tables import read_tsv
from .style import diverging_cmap, figure, palette, skipped_figure, symmetric_limit
from .timeaxis import ITERATIONS, TimeAxis


def who_helped_whom_figure(whom_tsv, windows_tsv, out_png, run: str, time: TimeAxis = ITERATIONS) -> None:
    whom, windows = read_tsv(whom_tsv), read_tsv(windows_tsv)
    layers, groups = list(dict.fromkeys(whom["layer"])), list(dict.fromkeys(whom["group"]))
    matrix = whom["lca"].reshape(len(groups), len(layers)).T  # (L, E)
    with figure(out_png, 1, 2, (15, 4.8)) as (fig, axes):
        ax = axes[0, 0]
        limit = symmetric_limit(matrix)
        image = ax.imshow(matrix, cmap=diverging_cmap(), vmin=-limit, vmax=limit, aspect="auto")
        ax.set_xticks(range(len(groups)), groups, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(layers)), layers, fontsize=8)
        ax.set_xlabel("example group (whose loss)")
        ax.set_ylabel("parameter group (who)")
        ax.set_title(f"{run}: who helped whom, LCA over training (green = lowered the loss)")
        fig.colorbar(image, ax=ax, label="LCA (nats)")
        ax = axes[0, 1]
        stops = np.unique(windows["window_stop"])
        for g, color in zip(groups, palette(len(groups))):
            mine = windows["group"] == g
            per_window = [windows["lca"][mine & (windows["window_stop"] == s)].sum() for s in stops]
            ax.plot(time.thetas(np.r_[0, stops]), np.r_[0, np.cumsum(per_window)], color=color, marker="o", ms=3, label=g)
        ax.axhline(0, color="black", lw=0.6)
        time.name(ax, " (end of window)")
        ax.set_ylabel("cumulative LCA of the group's loss (nats)")
        ax.set_title("Each example group's loss over training, rebuilt from LCA")
        ax.legend(frameon=False, fontsize=7, ncol=1 if len(groups) <= 10 else 2)


def interference_figure(interference_tsv, pairs_tsv, out_png, run: str, top: int = 8, time: TimeAxis = ITERATIONS) -> None:
    rows, pairs = read_tsv(interference_tsv), read_tsv(pairs_tsv)
    with figure(out_png, 1, 2, (15, 4.4)) as (fig, axes):
        ax = axes[0, 0]
        ax.plot(time.iterations(rows["iteration"]), rows["groups_cancelled"], lw=1, label="example groups")
        if "examples_cancelled" in rows:
            ax.plot(time.iterations(rows["iteration"]), rows["examples_cancelled"], lw=1, alpha=0.8, label="sampled examples")
        ax.set_ylim(0, 1)
        time.name(ax)
        ax.set_ylabel("1 - |sum of dL| / sum of |dL|")
        ax.set_title(f"{run}: share of the loss changes that cancel between groups")
        ax.legend(frameon=False, fontsize=8)
        ax = axes[0, 1]
        n = min(top, len(pairs["group_a"]))
        if n == 0:
            ax.axis("off")
            ax.text(0.5, 0.5, "one example group: no pairs", ha="center", va="center")
            return
        labels = [f"{a} vs {b}" for a, b in zip(pairs["group_a"][:n], pairs["group_b"][:n])]
        y = np.arange(n)[::-1]
        ax.barh(y, pairs["share_opposed"][:n], color="#999999")
        for yi, layer, share in zip(y, pairs["top_layer"][:n], pairs["top_layer_share"][:n]):
            ax.text(0.01, yi, f"carried by {layer} ({share:.0%})", va="center", fontsize=7)
        ax.set_yticks(y, labels, fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_xlabel("share of iterations the two groups' losses moved in opposite directions")
        ax.set_title("Pairs of groups that move against each other most often")


def clusters_figure(clusters_tsv, curves_tsv, json_path, out_png, run: str, time: TimeAxis = ITERATIONS) -> None:
    summary = json.loads(open(json_path).read())
    if "clusters_skipped" in summary:
        skipped_figure(out_png, run, "clusters of examples' loss curves", summary["clusters_skipped"])
        return
    clusters, curves = read_tsv(clusters_tsv), read_tsv(curves_tsv)
    with figure(out_png, 1, 1, (9, 4.6)) as (fig, axes):
        ax = axes[0, 0]
        for c, size, marks, layer, color in zip(
            clusters["cluster"], clusters["size"], clusters["breakthroughs"], clusters["carrying_layer"], palette(len(clusters["cluster"]))
        ):
            curve = curves[f"cluster_{int(c)}"]
            ax.plot(time.thetas(curves["iteration"]), curve, color=color, lw=1.6, label=f"cluster {int(c)}: {int(size)} examples; breakthroughs by {layer}")
            at = np.array([int(t) for t in str(marks).split(",") if t])
            ax.plot(time.thetas(at + 1), curve[at], "v", color=color, ms=7)
        ax.axhline(0, color="black", lw=0.6)
        time.name(ax)
        ax.set_ylabel("mean cumulative loss change (nats)")
        ax.set_title(f"{run}: examples clustered by their loss curves (v: breakthroughs, the largest drops)")
        ax.legend(frameon=False, fontsize=8)
