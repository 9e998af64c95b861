"""The summary stage's first look at a run: the loss rebuilt from LCA, LCA per layer, and the share of
parameters helping and hurting."""

from __future__ import annotations

import numpy as np

from .style import HELP_COLOR, HURT_COLOR, REBUILT_COLOR, TRAIN_COLOR, VAL_LIGHT_COLOR, ZERO_COLOR, figure, sign_colors
from .timeaxis import ITERATIONS, TimeAxis


def overview_figure(path, loss, loss_val, grounding, rows, layers, layer_lca, layer_lca_val, time: TimeAxis = ITERATIONS) -> None:
    T = len(loss) - 1
    with figure(path, 1, 3, (15, 4.2)) as (fig, axes):
        t = time.thetas(np.arange(T + 1))
        ax = axes[0, 0]
        # validation underneath, so the rebuilt curve stays visible on top of the measured one
        ax.plot(t, loss_val, color=VAL_LIGHT_COLOR, lw=1, alpha=0.8, label="validation loss")
        ax.plot(t, loss, color=TRAIN_COLOR, lw=2, label="train loss (measured)")
        rebuilt = loss[0] + np.concatenate([[0.0], np.cumsum(rows["lca_sum"])])
        ax.plot(t, rebuilt, color=REBUILT_COLOR, lw=1.2, ls="--", label="L(θ₀) + cumulative LCA")
        g = grounding["train"]
        ax.set_title(
            f"Loss, grounded: cumulative error {g['cumulative_error_pct']:.2g}%\n"
            f"(first order {g['first_order_cumulative_error_pct']:.3g}%)",
            fontsize=10,
        )
        time.name(ax)
        ax.set_ylabel("full-set cross-entropy (nats)")
        ax.legend(frameon=False)

        ax = axes[0, 1]
        x = np.arange(len(layers))
        ax.bar(x - 0.2, layer_lca, 0.4, color=sign_colors(layer_lca), label="train")
        ax.bar(x + 0.2, layer_lca_val, 0.4, color="none", edgecolor="black", hatch="//", label="validation")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(x, layers, rotation=30, ha="right")
        ax.set_ylabel("LCA summed over training (nats)")
        ax.set_title("LCA per layer (negative = helped)", fontsize=10)
        ax.legend(frameon=False)

        ax = axes[0, 2]
        it = time.iterations(np.arange(T))
        ax.stackplot(
            it,
            rows["pct_helping"],
            rows["pct_zero"],
            rows["pct_hurting"],
            colors=[HELP_COLOR, ZERO_COLOR, HURT_COLOR],
            labels=["helping", "zero", "hurting"],
            alpha=0.85,
        )
        ax.axhline(50, color="white", lw=0.8, ls=":")
        ax.set_xlim(*time.limits((0, T - 1 if T > 1 else 1)))
        ax.set_ylim(0, 100)
        time.name(ax)
        ax.set_ylabel("parameters (%)")
        ax.set_title(f"Parameters helping / hurting (helping {rows['pct_helping_of_nonzero'].mean():.1f}% of non-zero)", fontsize=10)
        ax.legend(loc="lower right", fontsize=8)
