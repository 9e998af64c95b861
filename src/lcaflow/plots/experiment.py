"""One experiment across seeds (and against another experiment): per-layer LCA and the final losses."""

from __future__ import annotations

import numpy as np

from ..tables import read_tsv
from .common import fmt_p, read_json
from .style import TRAIN_COLOR, VAL_COLOR, figure, sign_colors


def experiment_figure(layers_tsv, json_path, out_png, name: str, comparison_tsv=None) -> None:
    layers, e = read_tsv(layers_tsv), read_json(json_path)
    names = list(layers["layer"])
    x = np.arange(len(names))
    comp = read_tsv(comparison_tsv) if comparison_tsv else None
    with figure(out_png, 1, 2, (14, 4.6), gridspec_kw={"width_ratios": [3, 1]}) as (fig, axes):
        ax = axes[0, 0]
        width = 0.4 if comp else 0.6
        ax.bar(x - (0.2 if comp else 0), layers["mean_lca"], width, yerr=layers["std_lca"], color=sign_colors(layers["mean_lca"]), capsize=3, label=f"{name} (n = {int(layers['runs'][0])})")
        if comp:
            other = comp["experiment_b"][0]
            b = {m[4:]: (mb, sb) for m, mb, sb in zip(comp["metric"], comp["mean_b"], comp["std_b"]) if m.startswith("lca_")}
            ax.bar(x + 0.2, [b.get(n, (np.nan, 0))[0] for n in names], width, yerr=[b.get(n, (0, np.nan))[1] for n in names], color="none", edgecolor="black", hatch="//", capsize=3, label=other)
        ax.axhline(0, color="black", lw=0.8)
        ticks = [f"{n}\n{v}, p {fmt_p(p)}" for n, v, p in zip(names, layers["verdict"], layers["p_value"])]
        ax.set_xticks(x, ticks, rotation=30 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center", fontsize=8)
        ax.set_ylabel("LCA summed over training (nats), mean ± s.d.")
        ax.set_title(f"Experiment {name}: per-layer LCA over seeds (one-sample t-test against 0)")
        ax.legend(frameon=False, fontsize=8)
        ax = axes[0, 1]
        bars = [("train", e["final_train_loss"]), ("validation", e["final_val_loss"])]
        ax.bar([0, 1], [b["mean"] for _, b in bars], 0.35 if comp else 0.6, yerr=[b["std"] or 0 for _, b in bars], color=[TRAIN_COLOR, VAL_COLOR], capsize=3, label=f"{name} (filled)")
        title = "Final loss, mean ± s.d."
        if comp:
            rows = {m: (mb, sb, p) for m, mb, sb, p in zip(comp["metric"], comp["mean_b"], comp["std_b"], comp["p_value"])}
            ax.bar([0.4, 1.4], [rows["final_train_loss"][0], rows["final_val_loss"][0]], 0.35, yerr=[rows["final_train_loss"][1], rows["final_val_loss"][1]], color="none", edgecolor="black", hatch="//", capsize=3, label=f"{comp['experiment_b'][0]} (hatched)")
            title += f"\nWelch p: train {fmt_p(rows['final_train_loss'][2])}, val {fmt_p(rows['final_val_loss'][2])}"
            ax.legend(frameon=False, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
        ax.set_xticks([0.2 if comp else 0, 1.2 if comp else 1], ["train", "validation"])
        ax.set_ylabel("full-set loss at the end (nats)")
        ax.set_title(title)
