"""LCA per layer: summed, per parameter, and each layer's own loss curve."""

from __future__ import annotations

import numpy as np

from ..tables import read_tsv
from .style import figure, palette, sign_colors
from .timeaxis import ITERATIONS, TimeAxis


def layers_figure(layers_tsv, cumulative_tsv, out_png, run: str, time: TimeAxis = ITERATIONS) -> None:
    layers, cum = read_tsv(layers_tsv), read_tsv(cumulative_tsv)
    names = list(layers["layer"])
    x = np.arange(len(names))
    with figure(out_png, 1, 3, (17, 4.4)) as (fig, axes):
        for ax, suffix, ylabel, title in (
            (axes[0, 0], "", "LCA summed over training (nats)", f"{run}: LCA per layer (negative = helped)"),
            (axes[0, 1], "_per_param", "LCA per parameter (nats)", "Normalised by layer size"),
        ):
            train = layers[f"lca{suffix}"]
            ax.bar(x - 0.2, train, 0.4, color=sign_colors(train), label="training split")
            ax.bar(x + 0.2, layers[f"lca_val{suffix}"], 0.4, color="none", edgecolor="black", hatch="//", label="validation split")
            ax.axhline(0, color="black", lw=0.8)
            ax.set_xticks(x, names, rotation=30, ha="right")
            ax.set_ylabel(ylabel)
            ax.set_title(title)
            ax.legend(frameon=False, fontsize=8)
        ax = axes[0, 2]
        colors = palette(len(names))
        at = time.thetas(cum["iteration"])  # the cumulative LCA after t iterations: at theta t
        for name, color in zip(names, colors):
            ax.plot(at, cum[f"train_{name}"], color=color, lw=1.5, label=f"{name}, train")
            ax.plot(at, cum[f"val_{name}"], color=color, lw=1, ls="--", label=f"{name}, validation")
        ax.axhline(0, color="black", lw=0.6)
        time.name(ax)
        ax.set_ylabel("cumulative LCA (nats)")
        ax.set_title("Each layer's own loss curve (validation dashed)")
        ax.legend(frameon=False, fontsize=7, ncol=1 if len(names) <= 6 else 2)
