"""Moments of learning synchronised across layers: all classes together, and per class."""

from __future__ import annotations

import math

import numpy as np

from ..tables import read_tsv
from .common import fmt_p, read_json
from .style import MOMENT_COLOR, SYNC_COLOR, figure, skipped_figure
from .timeaxis import ITERATIONS, TimeAxis

SIGNAL_TITLES = {
    "lca": "LCA per layer (moments = local minima)",
    "gradient": "gradient norm per layer (local maxima)",
    "motion": "weight motion ‖Δθ‖ per layer (local maxima)",
    "lca_by_class": "LCA per layer and class",
    "gradient_by_class": "gradient norm per layer and class",
}


def _raster(ax, moments, signal, group, layers, T, time: TimeAxis) -> None:
    rows = (moments["signal"] == signal) & (moments["group"] == group)
    for j, layer in enumerate(layers):
        sel = rows & (moments["layer"] == layer)
        it, sync = time.iterations(moments["iteration"][sel]), moments["synchronized"][sel] > 0
        ax.plot(it[~sync], np.full((~sync).sum(), j), "o", color=MOMENT_COLOR, ms=3.5)
        ax.plot(it[sync], np.full(sync.sum(), j), "o", color=SYNC_COLOR, ms=4.5)
    ax.set_yticks(range(len(layers)), layers)
    ax.set_ylim(-0.6, len(layers) - 0.4)
    ax.set_xlim(*time.limits((-1, T), pad=0.03))


def sync_figure(moments_tsv, json_path, out_png, run: str, time: TimeAxis = ITERATIONS) -> None:
    moments, s = read_tsv(moments_tsv), read_json(json_path)
    layers = s["layers"]
    T = int(moments["iteration"].max()) + 2 if len(moments["iteration"]) else 2
    with figure(out_png, 3, 1, (12, 2.2 + 1.1 * len(layers) * 3 / 2)) as (fig, axes):
        for ax, signal in zip(axes[:, 0], ("lca", "gradient", "motion")):
            _raster(ax, moments, signal, "all classes", layers, T, time)
            st = s["signals"][signal]
            ax.set_title(
                f"{SIGNAL_TITLES[signal]}: top {s['top']} moments; {st['synchronized_total']} in {_layers_phrase(s)} at once (red) vs "
                f"{st['baseline_mean_per_group']:.2f} when layers are shifted by ±{s['max_shift']}, p = {fmt_p(st['p_value'])}"
            )
            ax.set_ylabel("layer")
        time.name(axes[-1, 0])
        fig.suptitle(f"{run}: moments of learning are synchronised across layers", fontsize=11)
        fig.legend(
            handles=[_dot(MOMENT_COLOR, "moment in this layer"), _dot(SYNC_COLOR, f"same iteration in {_layers_phrase(s)}")],
            loc="outside lower center",
            ncol=2,
            frameon=False,
        )


def _layers_phrase(s) -> str:
    need, total = s.get("min_layers", len(s["layers"])), len(s["layers"])
    return "all layers" if need >= total else f"at least {need} of {total} layers"


def _dot(color, label):
    from matplotlib.lines import Line2D

    return Line2D([], [], marker="o", ls="", color=color, label=label)


def sync_classes_figure(moments_tsv, json_path, out_png, run: str, signal: str = "lca_by_class", time: TimeAxis = ITERATIONS) -> None:
    moments, s = read_tsv(moments_tsv), read_json(json_path)
    if signal in s.get("skipped", {}):
        return skipped_figure(out_png, run, "synchronisation per class", f"skipped: {s['skipped'][signal]}")
    layers = s["layers"]
    groups = list(dict.fromkeys(moments["group"][moments["signal"] == signal]))
    T = int(moments["iteration"].max()) + 2 if len(moments["iteration"]) else 2
    ncols = 2
    nrows = max(1, math.ceil(len(groups) / ncols))
    with figure(out_png, nrows, ncols, (14, 1.0 + nrows * (0.35 * len(layers) + 0.9))) as (fig, axes):
        for ax, group in zip(axes.ravel(), groups):
            _raster(ax, moments, signal, group, layers, T, time)
            rows = (moments["signal"] == signal) & (moments["group"] == group)
            n_sync = len(set(moments["iteration"][rows & (moments["synchronized"] > 0)]))
            ax.set_title(f"class {group}: {n_sync} synchronised", fontsize=9)
        for ax in axes.ravel()[len(groups) :]:
            ax.axis("off")
        for ax in axes[-1]:
            time.name(ax)
        st = s["signals"][signal]
        fig.suptitle(
            f"{run}: {SIGNAL_TITLES[signal]}, top {s['top']} moments per class and layer. Synchronised (red): "
            f"{st['synchronized_per_group']:.1f} per class vs {st['baseline_mean_per_group']:.2f} with layers shifted ±{s['max_shift']}, "
            f"p = {fmt_p(st['p_value'])}",
            fontsize=10,
        )
