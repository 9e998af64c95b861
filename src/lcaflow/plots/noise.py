"""LCA is noisy and heavy-tailed: the share of parameters helping, the distribution of LCA values, its tails."""

from __future__ import annotations

import numpy as np

from ..tables import read_tsv
from .common import fmt_p, num, read_json, sampled_note
from .style import FIRST_ORDER_COLOR, HELP_COLOR, HURT_COLOR, MOMENT_COLOR, ZERO_COLOR, figure
from .timeaxis import ITERATIONS, TimeAxis


def noise_figure(iterations_tsv, layers_tsv, hist_tsv, fraction_tsv, json_path, out_png, run: str, time: TimeAxis = ITERATIONS) -> None:
    rows, layers, hist, frac, n = (read_tsv(iterations_tsv), read_tsv(layers_tsv), read_tsv(hist_tsv), read_tsv(fraction_tsv), read_json(json_path))
    with figure(out_png, 1, 4, (19, 4.4)) as (fig, axes):
        fig.get_layout_engine().set(wspace=0.06)
        ax = axes[0, 0]
        it = time.iterations(rows["iteration"])
        ax.stackplot(it, rows["pct_helping"], rows["pct_zero"], rows["pct_hurting"], colors=[HELP_COLOR, ZERO_COLOR, HURT_COLOR], labels=["helping", "zero", "hurting"], alpha=0.85)
        ax.axhline(50, color="white", lw=0.8, ls=":")
        ax.set_ylim(0, 100)
        ax.set_xlim(it[0], max(it[-1], 1))
        time.name(ax)
        ax.set_ylabel("parameters (%)")
        ax.set_title(f"(a) {run}: {num(n['pct_helping_of_nonzero'], '.2f', '%')} of non-zero help (mean)")
        twin = ax.twinx()
        twin.plot(it, rows["loss"], color="white", lw=2.5)
        twin.plot(it, rows["loss"], color="black", lw=1.2, label="train loss")
        twin.set_ylabel("train loss (nats)")
        handles, labels = ax.get_legend_handles_labels()
        h2, l2 = twin.get_legend_handles_labels()
        ax.legend(handles + h2, labels + l2, loc="upper right", fontsize=8, framealpha=0.9)

        ax = axes[0, 1]
        zoom = hist["kind"] == "zoomed"
        left, right = hist["bin_left"][zoom], hist["bin_right"][zoom]
        ax.bar(left, hist["helping"][zoom], right - left, align="edge", color=HELP_COLOR, label="helping (LCA < 0)")
        ax.bar(left, hist["hurting"][zoom], right - left, align="edge", color=HURT_COLOR, label="hurting (LCA > 0)")
        ax.set_yscale("log")
        ax.set_xlabel("LCA of one parameter in one iteration (nats)")
        ax.set_ylabel("count (log)")
        d = n["distribution"]
        k_it = d.get("kurtosis_per_iteration_mean")
        title = f"(b) LCA values, 1% tails cut\nkurtosis within an iteration {k_it:.3g} (Gaussian 3)" if k_it else "(b) LCA values, 1% tails cut"
        ax.set_title(title + sampled_note(n["distribution"].get("pooled_from")))
        ax.legend(frameon=False, fontsize=8)

        ax = axes[0, 2]
        x = np.arange(len(layers["layer"]))
        ax.bar(x, layers["pct_helping_of_nonzero"], color=HELP_COLOR)
        ax.axhline(50, color="black", ls=":", lw=1, label="50%")
        for xi, v in zip(x, layers["pct_helping_of_nonzero"]):
            ax.text(xi, v + 0.5, f"{v:.1f}", ha="center", fontsize=8)
        ax.set_xticks(x, layers["layer"], rotation=30, ha="right")
        lo = min(40.0, float(np.nanmin(layers["pct_helping_of_nonzero"])) - 2)
        ax.set_ylim(lo, max(65.0, float(np.nanmax(layers["pct_helping_of_nonzero"])) + 3))
        ax.set_ylabel("helping, of non-zero (%)")
        ax.set_title("(c) Parameters helping per layer (mean over iterations)")
        ax.legend(frameon=False, fontsize=8)

        ax = axes[0, 3]
        ax.bar(frac["bin_left"], frac["parameters"], frac["bin_right"] - frac["bin_left"], align="edge", color=HELP_COLOR, edgecolor="white", lw=0.3)
        ax.axvline(0.5, color="black", ls=":", lw=1)
        ax.set_xlabel("fraction of its non-zero iterations a parameter helped")
        ax.set_ylabel("parameters")
        f = n["help_fraction_per_param"]
        ax.set_title(f"(d) Parameters alternate: median {f['median']:.2f}" if f["median"] is not None else "(d) Parameters alternate")


def heavy_tail_figure(hist_tsv, json_path, out_png, run: str) -> None:
    from scipy import stats as sps

    hist, n = read_tsv(hist_tsv), read_json(json_path)
    d = n["distribution"]
    keep = hist["kind"] == "log_magnitude"
    right = hist["bin_right"][keep]
    counts = hist["helping"][keep] + hist["hurting"][keep]
    total = counts.sum()
    with figure(out_png, 1, 2, (12, 4.4), gridspec_kw={"width_ratios": [3, 2]}) as (fig, axes):
        ax = axes[0, 0]
        sigma = d["std"] or 1.0
        # complementary CDF: the share of values with |LCA| above x, x in standard deviations
        x = right / sigma
        for key, color, label in (("helping", HELP_COLOR, "helping"), ("hurting", HURT_COLOR, "hurting")):
            c = hist[key][keep]
            ccdf = (c.sum() - np.cumsum(c)) / max(c.sum(), 1)
            show = (ccdf > 0) & (x >= 1e-3)
            ax.loglog(x[show], ccdf[show], color=color, lw=2, label=f"|LCA| of {label} entries")
        grid = np.geomspace(1e-3, max(float(x.max()), 10.0), 400)
        gauss = 2 * sps.norm.sf(grid)
        ax.loglog(grid[gauss > 1e-12], gauss[gauss > 1e-12], color="black", lw=1.2, label="Gaussian of the same variance")
        w = d["weibull"]["all"]
        if w["shape_k"]:
            weib = sps.weibull_min.sf(grid * sigma, w["shape_k"], scale=w["scale"])
            ax.loglog(grid[weib > 1e-12], weib[weib > 1e-12], color=FIRST_ORDER_COLOR, lw=1.2, ls="--", label=f"Weibull fit, shape k = {w['shape_k']:.2f}")
        ax.axvline(d["tail_sigmas"], color=MOMENT_COLOR, lw=0.8, ls=":")
        ax.set_ylim(max(1.0 / max(total, 1), 1e-12) / 2, 1.5)
        ax.set_xlabel(f"|LCA| in standard deviations (σ = {sigma:.3g} nats)")
        ax.set_ylabel("share of non-zero values above x")
        ax.set_title(f"{run}: LCA is heavy-tailed (tail probability, log-log)" + sampled_note(d.get("pooled_from")))
        ax.legend(frameon=False, fontsize=8, loc="lower left")
        ax = axes[0, 1]
        ax.axis("off")
        lines = [
            "Heavy-tail statistics (all non-zero LCA values)",
            "",
            f"values: {d['nonzero_values']:,}",
            f"standard deviation σ: {d['std']:.3g} nats" if d["std"] else "σ: n/a",
            f"kurtosis, pooled: {d['kurtosis']:.4g} (Gaussian: 3)" if d["kurtosis"] else "kurtosis: n/a",
            f"kurtosis within an iteration, mean: {d['kurtosis_per_iteration_mean']:.4g}" if d.get("kurtosis_per_iteration_mean") else "",
            f"excess kurtosis: {d['excess_kurtosis']:.4g}" if d["excess_kurtosis"] is not None else "",
            f"kurtosis test vs Gaussian: z = {d['kurtosis_test_z']:.3g}, p = {fmt_p(d['kurtosis_test_p'])}" if d["kurtosis_test_z"] is not None else "",
            f"Weibull shape k: all {_k(d, 'all')},",
            f"    helping {_k(d, 'helping')}, hurting {_k(d, 'hurting')}",
            "    (k < 1: heavier tail than exponential)",
            f"share of Σ|LCA| from |LCA| > {d['tail_sigmas']:g}σ: {_pct(d['tail_share_observed'])}",
            f"    a Gaussian would give {_pct(d['tail_share_gaussian'])}: ratio {d['tail_share_ratio']:.2f}" if d["tail_share_ratio"] else "",
            f"    within an iteration, mean: {_pct(d['tail_share_within_iteration_mean'])}: ratio {d['tail_share_within_iteration_ratio']:.2f}"
            if d.get("tail_share_within_iteration_ratio")
            else "",
        ]
        ax.text(0.02, 0.95, "\n".join(line for line in lines), va="top", family="monospace", fontsize=9)


def _k(d, key) -> str:
    k = d["weibull"][key]["shape_k"]
    return f"{k:.2f}" if k else "n/a"


def _pct(v) -> str:
    return f"{100 * v:.2f}%" if v is not None else "n/a"
