"""The linked views of a run's explorer, as one Vega-Lite specification built with Altair.

The brush (`window`: an interval of iterations drawn on the LCA-per-group chart) filters every windowed
view: both neuron heat maps' sums, the per-class table and the top parameters; with no brush they show the
whole run. The slider (`iteration`) picks the frame of the second heat map, the menu (`group`) its group,
the radio buttons (`split`) the split of the LCA charts. Data come as named datasets (`data.NAMES`),
filled in by the page's script. Colours are lcaflow.plots.style's."""

from __future__ import annotations

import json

import altair as alt

from ..plots.style import DIVERGING_MID, HELP_COLOR, HURT_COLOR, OKABE_ITO, SYNC_COLOR, TRAIN_COLOR, VAL_COLOR

WIDE, NARROW, HEIGHT = 560, 300, 170  # pixels of the views
DIVERGING = alt.Scale(range=[HELP_COLOR, DIVERGING_MID, HURT_COLOR], domainMid=0, zero=True)  # zero kept in every domain
SPLITS = alt.Scale(domain=["train", "validation"], range=[TRAIN_COLOR, VAL_COLOR])
CONTROLS = "#controls"  # where the page (page.py) puts the radio buttons, the menu and the slider
NAMES = ("curves", "groups", "neurons", "classes", "params", "moments")  # the datasets the page fills in


def time_x(meta: dict, domain: list, **scale) -> alt.X:
    """The time axis of the views (field t, whole ticks the thetas: iteration t spans t to t + 1): the
    iteration; for a run whose rows are segments between kept thetas (meta["steps"]: checkpoints, or a
    recording with every=k) the optimizer step, each whole tick labelled with its theta's step."""
    steps = meta.get("steps")
    if steps is None:
        return alt.X("t:Q", title="iteration", scale=alt.Scale(domain=domain, **scale))
    label = f"datum.value == floor(datum.value) && datum.value >= 0 && datum.value < {len(steps)} ? {json.dumps(steps)}[datum.value] : ''"
    return alt.X("t:Q", title="optimizer step", scale=alt.Scale(domain=domain, **scale), axis=alt.Axis(labelExpr=label, tickMinStep=1))


def data(name: str) -> alt.NamedData:
    return alt.NamedData(name=name)


def _params(meta: dict) -> dict:
    """The brush, and the controls: the split of the LCA charts, the heat maps' group and frame."""
    splits = ["train", "validation"] if meta["has_val"] else ["train"]
    last_frame = meta["iterations"] - 1 - (meta["iterations"] - 1) % meta["frame"]
    split = alt.binding_radio(options=splits, name="LCA of the split: ", element=CONTROLS)
    out = {"window": alt.selection_interval(name="window", encodings=["x"]), "split": alt.param(name="split", value="train", bind=split)}
    if meta["neuron_groups"]:
        groups = meta["neuron_groups"]
        menu = alt.binding_select(options=groups, name="neurons of: ", element=CONTROLS)
        slider = alt.binding_range(min=0, max=max(last_frame, 0), step=meta["frame"], name="iteration: ", element=CONTROLS)
        out["group"] = alt.param(name="group", value=groups[0], bind=menu)
        out["iteration"] = alt.param(name="iteration", value=0, bind=slider)
    return out


def _groups_scale(meta: dict) -> alt.Scale:
    colours = [OKABE_ITO[i % len(OKABE_ITO)] for i in range(len(meta["groups"]))]
    return alt.Scale(domain=meta["groups"], range=colours)


def _moment_rules() -> alt.Chart:
    """The synchronised moments of learning (every layer at once) as vertical rules on a time axis; the
    page's script moves the slider to a moment clicked (a datum with `layers`). Unnamed: a named layer
    would get the brush of the layer it is drawn over, twice."""
    return (
        alt.Chart(data("moments"))
        .transform_filter("datum.synchronized == 1")
        .transform_aggregate(layers="count()", groupby=["t"])
        .mark_rule(color=SYNC_COLOR, strokeDash=[3, 2], opacity=0.8, strokeWidth=2, cursor="pointer")
        .encode(x="t:Q", tooltip=[alt.Tooltip("t:Q", title="synchronised moment at iteration"), "layers:Q"])
    )


def loss_view(meta: dict) -> alt.LayerChart:
    x = time_x(meta, [0, meta["iterations"]])
    lines = (
        alt.Chart(data("curves"), name="loss", title="Loss over training (synchronised moments of learning dashed)")
        .mark_line()
        .encode(x=x, y=alt.Y("loss:Q", title="full-set loss (nats)"), color=alt.Color("split:N", scale=SPLITS, title="split"))
    )
    layers = [lines, _moment_rules()] if meta["has_moments"] else [lines]
    return alt.layer(*layers).properties(width=WIDE, height=HEIGHT)


def error_view(meta: dict) -> alt.Chart:
    return (
        alt.Chart(data("curves"), name="error", title="Grounding error |sum of LCA - loss change| per iteration")
        .transform_filter("isValid(datum.error)")
        .mark_line(strokeWidth=1)
        .encode(
            x=time_x(meta, [0, meta["iterations"]]),
            y=alt.Y("error:Q", title="|error| (nats)"),
            color=alt.Color("split:N", scale=SPLITS, title="split"),  # one legend with the loss view's
        )
        .properties(width=NARROW, height=HEIGHT)
    )


def lca_view(meta: dict, p: dict) -> alt.LayerChart:
    """LCA per group and iteration, stacked (negative = helped), where the window is brushed."""
    bars = (
        alt.Chart(data("groups"), name="lca", title="LCA per group per iteration, stacked: drag to select a window")
        .transform_filter(alt.datum.split == p["split"])
        .mark_bar(width=max(0.5, 0.9 * WIDE / meta["iterations"]))  # one bar an iteration, however many
        .encode(
            x=time_x(meta, [-0.5, meta["iterations"]], nice=False, padding=0),
            y=alt.Y("lca:Q", title="LCA (nats; < 0 helped)", stack="zero"),
            color=alt.Color("group:N", scale=_groups_scale(meta), title="group"),
            tooltip=["t:Q", "group:N", alt.Tooltip("lca:Q", format=".3g")],
        )
        .add_params(p["window"], p["split"])
    )
    layers = [bars, _moment_rules()] if meta["has_moments"] else [bars]
    return alt.layer(*layers).properties(width=WIDE, height=HEIGHT)


def cumulative_view(meta: dict) -> alt.Chart:
    return (
        alt.Chart(data("groups"), name="cumulative", title="Cumulative LCA per group (validation dashed)")
        .mark_line()
        .encode(
            x=time_x(meta, [0, meta["iterations"]]),
            y=alt.Y("cumulative:Q", title="cumulative LCA (nats)"),
            color=alt.Color("group:N", scale=_groups_scale(meta), title="group"),  # one legend with the LCA view's
            strokeDash=alt.StrokeDash("split:N", scale=alt.Scale(domain=["train", "validation"], range=[[1, 0], [4, 3]]), legend=None),
            tooltip=["t:Q", "group:N", "split:N", alt.Tooltip("cumulative:Q", format=".4g")],
        )
        .properties(width=NARROW, height=HEIGHT)
    )


def _heatmap(name: str, title: str, when, p: dict) -> alt.Chart:
    """The chosen group's neurons in a grid, coloured by their LCA summed over the frames `when` keeps;
    `title` follows the group's name in the title (a Vega expression's string, which may name a parameter)."""
    return (
        alt.Chart(data("neurons"), name=name, title=alt.Title(alt.ExprRef(expr=f"'Per-neuron LCA of ' + group + '{title}'")))
        .transform_filter(alt.datum.group == p["group"])
        .transform_filter(when)
        .transform_aggregate(lca="sum(lca)", groupby=["unit", "x", "y"])
        .mark_rect()
        .encode(
            x=alt.X("x:O", axis=None),
            y=alt.Y("y:O", axis=None),
            color=alt.Color("lca:Q", scale=DIVERGING, title="LCA (nats)"),
            tooltip=["unit:Q", alt.Tooltip("lca:Q", format=".3g")],
        )
        .properties(width=NARROW - 40, height=NARROW - 40)
        .resolve_scale(color="independent")
    )


def neuron_views(meta: dict, p: dict) -> alt.HConcatChart:
    frame = meta["frame"]
    at = "" if frame == 1 else f" (frames of {frame} iterations)"
    window = _heatmap("neurons_window", ", summed over the brushed window (all of training when none)", p["window"], p)
    slider = _heatmap("neurons_at", f" at iteration ' + iteration + '{at}", alt.datum.t == p["iteration"], p)
    return alt.hconcat(window, slider.add_params(p["group"], p["iteration"])).resolve_scale(color="independent")


def class_view(meta: dict, p: dict) -> alt.LayerChart:
    """Each class's LCA per group over the window, as a table coloured by sign."""
    base = (
        alt.Chart(data("classes"), title="LCA per class and group in the window")
        .transform_filter(p["window"])
        .transform_aggregate(lca="sum(lca)", groupby=["cls", "group"])
        .encode(x=alt.X("group:N", title="group", sort=meta["groups"], axis=alt.Axis(orient="top")), y=alt.Y("cls:N", title=None))
    )
    cells = base.mark_rect().properties(name="classes").encode(color=alt.Color("lca:Q", scale=DIVERGING, legend=None), tooltip=["cls:N", "group:N", "lca:Q"])
    text = base.mark_text(fontSize=10).encode(text=alt.Text("lca:Q", format=".3f"))
    return alt.layer(cells, text).properties(width=60 * len(meta["groups"]), height=18 * len(meta["classes"]))


def parameter_view(meta: dict, p: dict, top: int = 10) -> alt.Chart:
    """The window's most helping and hurting parameters among the candidates (data.TOP_PER_GROUP per group and sign)."""
    return (
        alt.Chart(data("params"), name="parameters", title=f"Top {top} helping and hurting parameters in the window")
        .transform_filter(p["window"])
        .transform_aggregate(lca="sum(lca)", groupby=["param", "group"])
        .transform_window(helping="row_number()", sort=[alt.SortField("lca", order="ascending")])
        .transform_window(hurting="row_number()", sort=[alt.SortField("lca", order="descending")])
        .transform_filter(f"(datum.helping <= {top} && datum.lca < 0) || (datum.hurting <= {top} && datum.lca > 0)")
        .mark_bar()
        .encode(
            x=alt.X("lca:Q", title="LCA in the window (nats)"),
            y=alt.Y("param:N", sort=alt.EncodingSortField("lca", order="ascending"), title=None),
            color=alt.condition("datum.lca < 0", alt.value(HELP_COLOR), alt.value(HURT_COLOR)),
            tooltip=["param:N", "group:N", alt.Tooltip("lca:Q", format=".3g")],
        )
        .properties(width=NARROW, height=alt.Step(12))
    )


def run_spec(meta: dict) -> dict:
    """The Vega-Lite specification of a run's linked views (as a dict)."""
    p = _params(meta)
    rows = [
        alt.hconcat(loss_view(meta), error_view(meta)),
        alt.hconcat(lca_view(meta, p), cumulative_view(meta)),
    ]
    if meta["neuron_groups"]:
        rows.append(neuron_views(meta, p))
    lower = ([class_view(meta, p)] if meta["classes"] else []) + ([parameter_view(meta, p)] if meta["has_params"] else [])
    if lower:
        rows.append(alt.hconcat(*lower).resolve_scale(color="independent"))
    chart = alt.vconcat(*rows).resolve_scale(color="independent", strokeDash="independent")
    spec = chart.configure_view(stroke=None).configure_title(anchor="start", fontSize=12).to_dict(validate=True)
    return spec | {"usermeta": {"frame": meta["frame"]}}  # for the page's script: a moment clicked -> its frame
