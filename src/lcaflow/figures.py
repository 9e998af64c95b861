"""Figures of one run's (and one experiment's) measurements, drawn from the analysis tables.

Every figure is readable without the paper: a title saying what it shows, axes with units (LCA and
losses are in nats), a legend where colours carry meaning. Helping (negative LCA) is green and
hurting (positive LCA) purple throughout, distinguishable with red-green colour blindness. The same
tables give the same bytes (no timestamps in the files)."""

from __future__ import annotations

import json
import math
import os
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from .integrate import QUADRATURE_NAMES, TRAPEZOID
from .summary import HELP_COLOR, HURT_COLOR
from .tables import read_tsv

ZERO_COLOR, SYNC_COLOR, TRAIN_COLOR, VAL_COLOR = "#d9d9d9", "#d55e00", "black", "#0072b2"
FIRST_ORDER_COLOR, MOMENT_COLOR, TRAPEZOID_COLOR = "#e69f00", "#7f7f7f", "#7f7f7f"
DIVERGING = "PRGn_r"  # green = negative (helped), purple = positive (hurt)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "lcaflow", "font.size": 9, "axes.titlesize": 10})
    return plt


@contextmanager
def figure(path, nrows=1, ncols=1, size=(12, 4), **kw):
    """A figure saved deterministically and atomically to `path` when the block ends."""
    plt = _plt()
    fig, axes = plt.subplots(nrows, ncols, figsize=size, layout="constrained", squeeze=False, **kw)
    try:
        yield fig, axes
        tmp = f"{path}.partial.png"
        fig.savefig(tmp, dpi=110, metadata={"Software": None})
        os.replace(tmp, path)
    finally:
        plt.close(fig)


def skipped_figure(out_png, run: str, title: str, reason: str) -> None:
    """A figure that says why its analysis does not apply to this run (the DAG still gets its file)."""
    with figure(out_png, 1, 1, (8, 2.2)) as (fig, axes):
        ax = axes[0, 0]
        ax.axis("off")
        ax.text(0.5, 0.6, f"{run}: {title}", ha="center", va="center", fontsize=12)
        ax.text(0.5, 0.3, reason, ha="center", va="center", fontsize=10, color="#555555", wrap=True)


def _sampled(source: str | None) -> str:
    """A title's note when its numbers come from the stored sample of the parameters (lca.store: sampled)."""
    return f"\n(from {source})" if source and "sample" in source else ""


def _json(path) -> dict:
    return json.loads(Path(path).read_text())


def _num(value, spec: str = ".3g", suffix: str = "") -> str:
    """A number for a title; 'n/a' where the analysis could not measure it (null in its JSON)."""
    return "n/a" if value is None or not np.isfinite(value) else f"{value:{spec}}{suffix}"


def _fmt_p(p) -> str:
    return "n/a" if p is None or not np.isfinite(p) else f"{p:.2g}"


def _sign_colors(values):
    return [HELP_COLOR if v < 0 else HURT_COLOR for v in values]


def _symmetric_limit(matrix) -> float:
    finite = np.abs(matrix[np.isfinite(matrix)])
    lim = float(np.percentile(finite, 99)) if finite.size else 1.0
    return lim if lim > 0 else 1.0


# ----------------------------------------------------------------------------------------------


def grounding_figure(tsv, json_path, out_png, run: str) -> None:
    rows, g = read_tsv(tsv), _json(json_path)
    T = len(rows["iteration"])
    t = np.arange(T + 1)
    loss0 = rows["loss"][0]
    measured = np.concatenate([rows["loss"], [rows["loss"][-1] + rows["loss_change"][-1]]])
    with figure(out_png, 1, 2, (12, 4.2)) as (fig, axes):
        ax = axes[0, 0]
        ax.plot(t, measured, color=TRAIN_COLOR, lw=2.2, label="measured L(θ_t)")
        rule = QUADRATURE_NAMES[g.get("quadrature", "simpson")]
        ax.plot(t, loss0 + np.concatenate([[0], np.cumsum(rows["lca_sum"])]), color=HELP_COLOR, lw=1.2, ls="--", label=f"L(θ_0) + cumulative LCA ({rule})")
        ax.plot(t, loss0 + np.concatenate([[0], np.cumsum(rows["first_order_sum"])]), color=FIRST_ORDER_COLOR, lw=1.2, label="L(θ_0) + cumulative first order")
        ax.set_xlabel("iteration")
        ax.set_ylabel("full training-set loss (nats)")
        tr = g["train"]
        ax.set_title(
            f"{run}: loss rebuilt from LCA. Total error: {rule} {_num(tr['cumulative_error_pct'], '.3g', '%')}, "
            f"first order {_num(tr['first_order_cumulative_error_pct'], '.4g', '%')}"
        )
        ax.legend(frameon=False)
        ax = axes[0, 1]
        curves = [("error", f"{rule}, train", HELP_COLOR), ("error_val", f"{rule}, validation", VAL_COLOR)]
        if "trapezoid_error" in rows:
            curves.append(("trapezoid_error", "trapezoid before its error's removal, train", TRAPEZOID_COLOR))
        curves.append(("first_order_error", "first order, train", FIRST_ORDER_COLOR))
        for key, label, color in curves:
            error = np.maximum(np.abs(rows[key]), 1e-12)
            splits = rows.get("num_splits_val" if key == "error_val" else "num_splits")
            if "trapezoid_error" in rows and key in ("error", "error_val"):
                # adaptive: an iteration allocated by the trapezoid has no error left (it was removed); the
                # Simpson iterations, scattered among them, are drawn as points
                simpson = splits != TRAPEZOID
                ax.semilogy(rows["iteration"][simpson], error[simpson], ".", color=color, ms=3, label=f"{label} (Simpson iterations)")
            else:
                ax.semilogy(rows["iteration"], error, color=color, lw=0.8, label=label)
        ax.axhline(g["tolerance"], color="black", ls=":", lw=1, label=f"tolerance {g['tolerance']:g}")
        refined = rows["iteration"][rows["num_splits"] > 1]
        if refined.size:
            ax.plot(refined, np.full(refined.size, g["tolerance"]), "v", color="black", ms=4, label="refined iterations")
        ax.set_xlabel("iteration")
        ax.set_ylabel("|Σ LCA − ΔL| per iteration (nats)")
        by_trapezoid = f",\n{g['iterations_trapezoid']} of {len(rows['iteration'])} by the trapezoid" if "iterations_trapezoid" in g else ""
        ax.set_title(
            f"Per-iteration error: mean {rule} {tr['mean_abs_iteration_error']:.2g}, first order "
            f"{tr['first_order_mean_abs_iteration_error']:.2g} nats; {g['iterations_refined']} refined{by_trapezoid}"
        )
        ax.legend(frameon=bool(by_trapezoid), framealpha=0.85, fontsize=8)  # framed over the trapezoid's curve


def noise_figure(iterations_tsv, layers_tsv, hist_tsv, fraction_tsv, json_path, out_png, run: str) -> None:
    rows, layers, hist, frac, n = (read_tsv(iterations_tsv), read_tsv(layers_tsv), read_tsv(hist_tsv), read_tsv(fraction_tsv), _json(json_path))
    with figure(out_png, 1, 4, (19, 4.4)) as (fig, axes):
        fig.get_layout_engine().set(wspace=0.06)
        ax = axes[0, 0]
        it = rows["iteration"]
        ax.stackplot(it, rows["pct_helping"], rows["pct_zero"], rows["pct_hurting"], colors=[HELP_COLOR, ZERO_COLOR, HURT_COLOR], labels=["helping", "zero", "hurting"], alpha=0.85)
        ax.axhline(50, color="white", lw=0.8, ls=":")
        ax.set_ylim(0, 100)
        ax.set_xlim(it[0], max(it[-1], 1))
        ax.set_xlabel("iteration")
        ax.set_ylabel("parameters (%)")
        ax.set_title(f"(a) {run}: {_num(n['pct_helping_of_nonzero'], '.2f', '%')} of non-zero help (mean)")
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
        ax.set_title(title + _sampled(n["distribution"].get("pooled_from")))
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

    hist, n = read_tsv(hist_tsv), _json(json_path)
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
        ax.set_title(f"{run}: LCA is heavy-tailed (tail probability, log-log)" + _sampled(d.get("pooled_from")))
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
            f"kurtosis test vs Gaussian: z = {d['kurtosis_test_z']:.3g}, p = {_fmt_p(d['kurtosis_test_p'])}" if d["kurtosis_test_z"] is not None else "",
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


def oscillation_figure(layers_tsv, traces_tsv, json_path, out_png, run: str) -> None:
    layers, traces, o = read_tsv(layers_tsv), read_tsv(traces_tsv), _json(json_path)
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
            f"{run}: one turn every {_every(o['iterations_per_weight_direction_change'])},\none gradient sign change every "
            f"{_every(o['iterations_per_gradient_sign_change']) if measured else '(not measured)'} (layer means)"
        )
        ax.legend(frameon=False, fontsize=8)
        tr = o["traces"]
        for ax, role in zip(axes[0, 1:], ("most_hurting", "most_helping")):
            it = traces["iteration"]
            lca = traces[f"{role}_lca"]
            ax.bar(it, lca, 1.0, color=_sign_colors(lca), alpha=0.6)
            ax.axhline(0, color="black", lw=0.6)
            ax.set_xlabel("iteration")
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


def layers_figure(layers_tsv, cumulative_tsv, out_png, run: str) -> None:
    layers, cum = read_tsv(layers_tsv), read_tsv(cumulative_tsv)
    names = list(layers["layer"])
    x = np.arange(len(names))
    with figure(out_png, 1, 3, (17, 4.4)) as (fig, axes):
        for ax, suffix, ylabel, title in (
            (axes[0, 0], "", "LCA summed over training (nats)", f"{run}: LCA per layer (negative = helped)"),
            (axes[0, 1], "_per_param", "LCA per parameter (nats)", "Normalised by layer size"),
        ):
            train = layers[f"lca{suffix}"]
            ax.bar(x - 0.2, train, 0.4, color=_sign_colors(train), label="training split")
            ax.bar(x + 0.2, layers[f"lca_val{suffix}"], 0.4, color="none", edgecolor="black", hatch="//", label="validation split")
            ax.axhline(0, color="black", lw=0.8)
            ax.set_xticks(x, names, rotation=30, ha="right")
            ax.set_ylabel(ylabel)
            ax.set_title(title)
            ax.legend(frameon=False, fontsize=8)
        ax = axes[0, 2]
        colors = _palette(len(names))
        for name, color in zip(names, colors):
            ax.plot(cum["iteration"], cum[f"train_{name}"], color=color, lw=1.5, label=f"{name}, train")
            ax.plot(cum["iteration"], cum[f"val_{name}"], color=color, lw=1, ls="--", label=f"{name}, validation")
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xlabel("iteration")
        ax.set_ylabel("cumulative LCA (nats)")
        ax.set_title("Each layer's own loss curve (validation dashed)")
        ax.legend(frameon=False, fontsize=7, ncol=1 if len(names) <= 6 else 2)


def _palette(n: int):
    """Okabe-Ito colours (colour-blind safe), cycled; a perceptual map when there are many layers."""
    base = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000"]
    if n <= len(base):
        return base[:n]
    plt = _plt()
    return [plt.get_cmap("viridis")(v) for v in np.linspace(0, 0.95, n)]


SIGNAL_TITLES = {
    "lca": "LCA per layer (moments = local minima)",
    "gradient": "gradient norm per layer (local maxima)",
    "motion": "weight motion ‖Δθ‖ per layer (local maxima)",
    "lca_by_class": "LCA per layer and class",
    "gradient_by_class": "gradient norm per layer and class",
}


def _raster(ax, moments, signal, group, layers, T) -> None:
    rows = (moments["signal"] == signal) & (moments["group"] == group)
    for j, layer in enumerate(layers):
        sel = rows & (moments["layer"] == layer)
        it, sync = moments["iteration"][sel], moments["synchronized"][sel] > 0
        ax.plot(it[~sync], np.full((~sync).sum(), j), "o", color=MOMENT_COLOR, ms=3.5)
        ax.plot(it[sync], np.full(sync.sum(), j), "o", color=SYNC_COLOR, ms=4.5)
    ax.set_yticks(range(len(layers)), layers)
    ax.set_ylim(-0.6, len(layers) - 0.4)
    ax.set_xlim(-1, T)


def sync_figure(moments_tsv, json_path, out_png, run: str) -> None:
    moments, s = read_tsv(moments_tsv), _json(json_path)
    layers = s["layers"]
    T = int(moments["iteration"].max()) + 2 if len(moments["iteration"]) else 2
    with figure(out_png, 3, 1, (12, 2.2 + 1.1 * len(layers) * 3 / 2)) as (fig, axes):
        for ax, signal in zip(axes[:, 0], ("lca", "gradient", "motion")):
            _raster(ax, moments, signal, "all classes", layers, T)
            st = s["signals"][signal]
            ax.set_title(
                f"{SIGNAL_TITLES[signal]}: top {s['top']} moments; {st['synchronized_total']} in {_layers_phrase(s)} at once (red) vs "
                f"{st['baseline_mean_per_group']:.2f} when layers are shifted by ±{s['max_shift']}, p = {_fmt_p(st['p_value'])}"
            )
            ax.set_ylabel("layer")
        axes[-1, 0].set_xlabel("iteration")
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


def sync_classes_figure(moments_tsv, json_path, out_png, run: str, signal: str = "lca_by_class") -> None:
    moments, s = read_tsv(moments_tsv), _json(json_path)
    if signal in s.get("skipped", {}):
        return skipped_figure(out_png, run, "synchronisation per class", f"skipped: {s['skipped'][signal]}")
    layers = s["layers"]
    groups = list(dict.fromkeys(moments["group"][moments["signal"] == signal]))
    T = int(moments["iteration"].max()) + 2 if len(moments["iteration"]) else 2
    ncols = 2
    nrows = max(1, math.ceil(len(groups) / ncols))
    with figure(out_png, nrows, ncols, (14, 1.0 + nrows * (0.35 * len(layers) + 0.9))) as (fig, axes):
        for ax, group in zip(axes.ravel(), groups):
            _raster(ax, moments, signal, group, layers, T)
            rows = (moments["signal"] == signal) & (moments["group"] == group)
            n_sync = len(set(moments["iteration"][rows & (moments["synchronized"] > 0)]))
            ax.set_title(f"class {group}: {n_sync} synchronised", fontsize=9)
        for ax in axes.ravel()[len(groups) :]:
            ax.axis("off")
        for ax in axes[-1]:
            ax.set_xlabel("iteration")
        st = s["signals"][signal]
        fig.suptitle(
            f"{run}: {SIGNAL_TITLES[signal]}, top {s['top']} moments per class and layer. Synchronised (red): "
            f"{st['synchronized_per_group']:.1f} per class vs {st['baseline_mean_per_group']:.2f} with layers shifted ±{s['max_shift']}, "
            f"p = {_fmt_p(st['p_value'])}",
            fontsize=10,
        )


def neurons_figure(neurons_h5, out_png, run: str) -> None:
    with h5py.File(neurons_h5, "r") as f:
        layers = json.loads(f.attrs["layers"])
        mats = {name: f["neuron_lca"][name][()] for name in layers}
        skipped = json.loads(f.attrs.get("skipped", "{}"))
    if not layers:
        return skipped_figure(out_png, run, "LCA per neuron", "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    plt = _plt()
    heights = [max(1.0, min(3.0, m.shape[1] / 40)) for m in mats.values()]
    with figure(out_png, len(layers), 1, (12, 1.2 + sum(heights) * 1.1), gridspec_kw={"height_ratios": heights}) as (fig, axes):
        for ax, name in zip(axes[:, 0], layers):
            m = mats[name].T  # (neurons, T)
            lim = _symmetric_limit(m)
            im = ax.imshow(m, aspect="auto", cmap=DIVERGING, vmin=-lim, vmax=lim, interpolation="nearest")
            ax.set_ylabel(f"{name}\nneuron / channel")
            ax.yaxis.get_major_locator().set_params(integer=True)
            fig.colorbar(im, ax=ax, label="LCA (nats)\nclipped at 99th pct", shrink=0.9)
        axes[-1, 0].set_xlabel("iteration")
        note = f"\nno neurons in {', '.join(skipped)} ({'; '.join(v.removeprefix('skipped: ') for v in dict.fromkeys(skipped.values()))})" if skipped else ""
        fig.suptitle(f"{run}: LCA summed over each neuron's parameters, per iteration (green helped, purple hurt){note}", fontsize=11)
    del plt


def params_figure(neurons_h5, out_png, run: str) -> None:
    with h5py.File(neurons_h5, "r") as f:
        traces, index = f["param_traces"][()], f["param_index"][()]
        best, random = f["most_helpful"][()], f["random"][()]
        first = f.attrs["first_layer"]
        source = str(f.attrs.get("followed_from", ""))
    cum = np.cumsum(traces, axis=0)
    column = {int(c): j for j, c in enumerate(index)}
    with figure(out_png, 1, 2, (12, 4.2)) as (fig, axes):
        for ax, chosen, title, color in (
            (axes[0, 0], best, f"the {len(best)} most helpful parameters", HELP_COLOR),
            (axes[0, 1], random, f"{len(random)} random parameters", VAL_COLOR),
        ):
            for c in chosen:
                ax.plot(np.arange(1, len(cum) + 1), cum[:, column[int(c)]], color=color, lw=0.7, alpha=0.7)
            ax.axhline(0, color="black", lw=0.6)
            ax.set_xlabel("iteration")
            ax.set_title(f"{run}, layer {first}: {title}" + _sampled(source))
            ax.set_ylabel("cumulative LCA of one parameter (nats)")


def correlation_figure(json_path, out_png, run: str) -> None:
    result = _json(json_path)
    c = result["correlation"]
    names = list(c)
    x = np.arange(len(names))
    with figure(out_png, 1, 1, (max(6, 1.5 * len(names) + 3), 4.4)) as (fig, axes):
        ax = axes[0, 0]
        for k, (group, color, label) in enumerate(
            (("same_output", HELP_COLOR, "weights into the same neuron"), ("same_input", VAL_COLOR, "weights from the same input"), ("baseline", ZERO_COLOR, "baseline: share neither"))
        ):
            values = [c[n][group] if c[n][group] is not None else np.nan for n in names]
            ax.bar(x + (k - 1) * 0.27, values, 0.27, color=color, label=label, edgecolor="black", lw=0.3)
        ax.axhline(0, color="black", lw=0.6)
        labels = [f"{n}\nKS p out {_fmt_p(c[n]['ks_same_output_vs_baseline_p'])}\nin {_fmt_p(c[n]['ks_same_input_vs_baseline_p'])}" for n in names]
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_ylabel("mean pairwise correlation of per-iteration LCA")
        ax.set_title(f"{run}: parameters sharing a neuron learn together (KS test against the baseline)" + _sampled(result.get("followed_from")))
        ax.legend(frameon=False, fontsize=8)


def specialization_figure(spec_json, neurons_h5, out_png, run: str) -> None:
    summary = _json(spec_json)
    if "specialization_skipped" in summary or not summary["specialization"]:
        reason = summary.get("specialization_skipped", "skipped: no group has neurons")
        return skipped_figure(out_png, run, "class specialisation of neurons", reason)
    spec = summary["specialization"]
    names = list(spec)
    with h5py.File(neurons_h5, "r") as f:
        classes = json.loads(f.attrs["classes"])
        first = f.attrs.get("first_neuron_layer", f.attrs["first_layer"])
        examples = {
            key: (int(g.attrs["neuron"]), g["help_by_class"][()], g["incoming_lca"][()], list(g.attrs["incoming_shape"]))
            for key, g in f["example_neurons"].items()
        }
    plt = _plt()
    with figure(out_png, 1, 1 + 2 * len(examples), (5 + 4.2 * len(examples) * 2 * 0.8, 4.4)) as (fig, axes):
        ax = axes[0, 0]
        x = np.arange(len(names))
        for k, color in zip(range(3), ("#0072b2", "#56b4e9", "#cde5f5")):
            values = [spec[n][f"pct_neurons_top{k + 1}_over_80pct"] for n in names]
            ax.bar(x + (k - 1) * 0.27, [v if v is not None else np.nan for v in values], 0.27, color=color, edgecolor="black", lw=0.3, label=f"top {k + 1} class{'es' if k else ''}")
        ax.set_xticks(x, names, rotation=30, ha="right")
        ax.set_ylim(0, 100)
        ax.set_ylabel("neurons whose top classes get > 80% of their help (%)")
        ax.set_title(f"{run}: class specialisation")
        ax.legend(frameon=False, fontsize=8)
        for j, (key, (neuron, help_by_class, incoming, shape)) in enumerate(sorted(examples.items())):
            ax = axes[0, 1 + 2 * j]
            ax.bar(range(len(classes)), help_by_class, color=HELP_COLOR)
            ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=7)
            ax.set_ylabel("amount helped (nats, −LCA)")
            ax.set_title(f"{first} neuron {neuron}: help by class\n(most specialised on its {key.replace('top', 'top ')} class{'es' if key != 'top1' else ''})")
            ax = axes[0, 2 + 2 * j]
            image = _as_image(incoming, shape)
            lim = _symmetric_limit(image)
            im = ax.imshow(image, cmap=DIVERGING, vmin=-lim, vmax=lim, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"LCA of its {incoming.size} incoming weights")
            fig.colorbar(im, ax=ax, label="LCA (nats)", shrink=0.8)
    del plt


def _as_image(values: np.ndarray, shape: list[int]) -> np.ndarray:
    """Incoming weights of one neuron as a picture: a flattened image input back to its pixels (channels
    summed), a conv filter as its kernel tiles side by side."""
    n = values.size
    if len(shape) == 3:  # conv filter (in, kh, kw): tiles across
        return np.concatenate(list(values.reshape(shape)), axis=1)
    for channels in (1, 3):
        side = math.isqrt(n // channels)
        if side * side * channels == n:
            return values.reshape(channels, side, side).sum(0) if channels > 1 else values.reshape(side, side)
    return values.reshape(1, n)


def experiment_figure(layers_tsv, json_path, out_png, name: str, comparison_tsv=None) -> None:
    layers, e = read_tsv(layers_tsv), _json(json_path)
    names = list(layers["layer"])
    x = np.arange(len(names))
    comp = read_tsv(comparison_tsv) if comparison_tsv else None
    with figure(out_png, 1, 2, (14, 4.6), gridspec_kw={"width_ratios": [3, 1]}) as (fig, axes):
        ax = axes[0, 0]
        width = 0.4 if comp else 0.6
        ax.bar(x - (0.2 if comp else 0), layers["mean_lca"], width, yerr=layers["std_lca"], color=_sign_colors(layers["mean_lca"]), capsize=3, label=f"{name} (n = {int(layers['runs'][0])})")
        if comp:
            other = comp["experiment_b"][0]
            b = {m[4:]: (mb, sb) for m, mb, sb in zip(comp["metric"], comp["mean_b"], comp["std_b"]) if m.startswith("lca_")}
            ax.bar(x + 0.2, [b.get(n, (np.nan, 0))[0] for n in names], width, yerr=[b.get(n, (0, np.nan))[1] for n in names], color="none", edgecolor="black", hatch="//", capsize=3, label=other)
        ax.axhline(0, color="black", lw=0.8)
        ticks = [f"{n}\n{v}, p {_fmt_p(p)}" for n, v, p in zip(names, layers["verdict"], layers["p_value"])]
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
            title += f"\nWelch p: train {_fmt_p(rows['final_train_loss'][2])}, val {_fmt_p(rows['final_val_loss'][2])}"
            ax.legend(frameon=False, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
        ax.set_xticks([0.2 if comp else 0, 1.2 if comp else 1], ["train", "validation"])
        ax.set_ylabel("full-set loss at the end (nats)")
        ax.set_title(title)
