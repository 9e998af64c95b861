"""Neurons and parameters: LCA per neuron, single parameters' cumulative LCA, the correlation of parameters
sharing a neuron, and the class specialisation of neurons."""

from __future__ import annotations

import json
import math
import textwrap

import h5py
import numpy as np

from .common import fmt_p, read_json, sampled_note
from .style import (
    HELP_COLOR,
    PERCENTILE,
    TOP_CLASSES_COLORS,
    VAL_COLOR,
    ZERO_COLOR,
    diverging_cmap,
    figure,
    skipped_figure,
    symmetric_limit,
)
from .timeaxis import ITERATIONS, TimeAxis


def neurons_figure(neurons_h5, out_png, run: str, time: TimeAxis = ITERATIONS) -> None:
    with h5py.File(neurons_h5, "r") as f:
        layers = json.loads(f.attrs["layers"])
        mats = {name: f["neuron_lca"][name][()] for name in layers}
        skipped = json.loads(f.attrs.get("skipped", "{}"))
    if not layers:
        return skipped_figure(out_png, run, "LCA per neuron", "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    heights = [max(1.0, min(3.0, m.shape[1] / 40)) for m in mats.values()]
    with figure(out_png, len(layers), 1, (12, 1.2 + sum(heights) * 1.1), gridspec_kw={"height_ratios": heights}) as (fig, axes):
        for ax, name in zip(axes[:, 0], layers):
            m = mats[name].T  # (neurons, T)
            lim = symmetric_limit(m)
            im = ax.imshow(m, aspect="auto", cmap=diverging_cmap(), vmin=-lim, vmax=lim, interpolation="nearest")
            ax.set_ylabel(f"{name}\nneuron / channel")
            ax.yaxis.get_major_locator().set_params(integer=True)
            fig.colorbar(im, ax=ax, label=f"LCA (nats)\nclipped at {PERCENTILE:.0f}th pct", shrink=0.9)
            time.columns(ax)
        time.name(axes[-1, 0])
        note = f"\n{skipped_note(skipped)}" if skipped else ""
        fig.suptitle(f"{run}: LCA summed over each neuron's parameters, per iteration (green helped, purple hurt){note}", fontsize=11)


def skipped_note(skipped: dict[str, str], width: int = 130) -> str:
    """Why groups have no neurons, one reason per line with the groups it applies to, wrapped to fit the
    figure's width (long parameter names, e.g. a Hugging Face model's, ran off both sides of one line)."""
    by_reason: dict[str, list[str]] = {}
    for group, reason in skipped.items():
        by_reason.setdefault(reason.removeprefix("skipped: "), []).append(group)
    lines = [f"no neurons in {', '.join(groups)}: {reason}" for reason, groups in by_reason.items()]
    return "\n".join(textwrap.fill(line, width) for line in lines)


def params_figure(neurons_h5, out_png, run: str, time: TimeAxis = ITERATIONS) -> None:
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
                ax.plot(time.thetas(np.arange(1, len(cum) + 1)), cum[:, column[int(c)]], color=color, lw=0.7, alpha=0.7)
            ax.axhline(0, color="black", lw=0.6)
            time.name(ax)
            ax.set_title(f"{run}, layer {first}: {title}" + sampled_note(source))
            ax.set_ylabel("cumulative LCA of one parameter (nats)")


def correlation_figure(json_path, out_png, run: str) -> None:
    result = read_json(json_path)
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
        labels = [f"{n}\nKS p out {fmt_p(c[n]['ks_same_output_vs_baseline_p'])}\nin {fmt_p(c[n]['ks_same_input_vs_baseline_p'])}" for n in names]
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_ylabel("mean pairwise correlation of per-iteration LCA")
        ax.set_title(f"{run}: parameters sharing a neuron learn together (KS test against the baseline)" + sampled_note(result.get("followed_from")))
        ax.legend(frameon=False, fontsize=8)


def specialization_figure(spec_json, neurons_h5, out_png, run: str) -> None:
    summary = read_json(spec_json)
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
    with figure(out_png, 1, 1 + 2 * len(examples), (5 + 4.2 * len(examples) * 2 * 0.8, 4.4)) as (fig, axes):
        ax = axes[0, 0]
        x = np.arange(len(names))
        for k, color in zip(range(3), TOP_CLASSES_COLORS):
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
            lim = symmetric_limit(image)
            im = ax.imshow(image, cmap=diverging_cmap(), vmin=-lim, vmax=lim, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"LCA of its {incoming.size} incoming weights")
            fig.colorbar(im, ax=ax, label="LCA (nats)", shrink=0.8)


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
