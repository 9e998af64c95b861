"""Parameters oscillate: how often weights turn and gradients change sign, and the most helping and hurting weights' traces."""

from __future__ import annotations

import textwrap

import numpy as np

from ..tables import read_tsv
from .common import read_json
from .style import FIRST_ORDER_COLOR, MOMENT_COLOR, VAL_COLOR, figure, sign_colors
from .timeaxis import ITERATIONS, TimeAxis


def oscillation_figure(layers_tsv, traces_tsv, json_path, out_png, run: str, time: TimeAxis = ITERATIONS) -> None:
    layers, traces, o = read_tsv(layers_tsv), read_tsv(traces_tsv), read_json(json_path)
    with figure(out_png, 1, 3, (17, 4.4)) as (fig, axes):
        ax = axes[0, 0]
        x = np.arange(len(layers["layer"]))
        ax.bar(x - 0.2, layers["weight_direction_changes"], 0.4, color=FIRST_ORDER_COLOR, label="weight movement turns")
        measured = o.get("gradient_measured", o.get("gradient_stored"))
        if measured:
            ax.bar(x + 0.2, layers["gradient_sign_changes"], 0.4, color=VAL_COLOR, label="gradient crosses zero")
        ax.set_xticks(x, layers["layer"], rotation=30, ha="right")
        ax.set_ylabel(f"changes per parameter, out of {o['iterations']} iterations")
        ax.set_title(
            textwrap.fill(f"{run}: oscillation {o['skipped']}", 60)  # a run of checkpoints: segments, not optimizer steps
            if "skipped" in o
            else f"{run}: one turn every {_every(o['iterations_per_weight_direction_change'])},\none gradient sign change every "
            f"{_every(o['iterations_per_gradient_sign_change']) if measured else '(not measured)'} (layer means)",
            fontsize=9 if "skipped" in o else None,
        )
        ax.legend(frameon=False, fontsize=8)
        tr = o["traces"]
        for ax, role in zip(axes[0, 1:], ("most_hurting", "most_helping")):
            it = time.iterations(traces["iteration"])
            lca = traces[f"{role}_lca"]
            ax.bar(it, lca, 1.0, color=sign_colors(lca), alpha=0.6)
            ax.axhline(0, color="black", lw=0.6)
            time.name(ax)
            ax.set_ylabel("LCA per iteration (nats); bars")
            twin = ax.twinx()
            w = traces[f"{role}_weight"]
            twin.plot(it, w - w.mean(), color=FIRST_ORDER_COLOR, lw=1.4, label="weight − its mean")
            g = traces[f"{role}_grad"]
            if np.isfinite(g).any():
                scale = np.abs(w - w.mean()).max() / max(np.abs(g).max(), 1e-30)
                twin.plot(it, g * scale, color=VAL_COLOR, lw=1.2, label=f"full-set gradient × {scale:.2g}")
            twin.axhline(0, color=MOMENT_COLOR, lw=0.5, ls=":")
            twin.set_ylabel("weight (centred) and scaled gradient")
            twin.legend(loc="upper right", fontsize=7, frameon=False)
            info = tr[role]
            ax.set_title(
                f"{role.replace('_', ' ')} weight of {tr['tensor']} (index {info['index_in_tensor']}):\n"
                f"net LCA {info['net_lca']:+.3g} nats over iterations {tr['window'][0]}-{tr['window'][1] - 1}"
            )


def _every(iterations) -> str:
    return f"{iterations:.3g} it." if iterations is not None else "(never)"
