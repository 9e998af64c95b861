"""An experiment's explorer page: its runs side by side (losses, cumulative LCA per group, LCA per group
with the experiment's tests), from the runs' tables and the experiment's. Clicking a run in the legend
(shift-click for more) highlights it in every view."""

from __future__ import annotations

import html
from pathlib import Path

import altair as alt
import numpy as np

from ..io import write_text
from ..plots.style import OKABE_ITO
from ..tables import read_tsv
from .data import columns
from .page import page, table_html
from .views import NARROW, WIDE

HEIGHT = 200


def experiment_tables(run_names, grounding_tsvs, cumulative_tsvs, layer_tsvs) -> dict:
    """The runs' losses, cumulative LCA per group and LCA per group, in columns, run by run."""
    curves, cumulative, totals = [], [], []
    for name, g, c, lt in zip(run_names, grounding_tsvs, cumulative_tsvs, layer_tsvs):
        g, c, lt = read_tsv(g), read_tsv(c), read_tsv(lt)
        for split, key in (("train", "loss"), ("validation", "loss_val")):
            curves.append({"run": np.full(len(g["iteration"]), name), "split": split, "t": g["iteration"], "loss": g[key]})
        for split, prefix in (("train", "train_"), ("validation", "val_")):
            for group in lt["layer"]:
                n = len(c["iteration"])
                cumulative.append({"run": np.full(n, name), "split": split, "group": group, "t": c["iteration"], "lca": c[prefix + group]})
        totals.append({"run": np.full(len(lt["layer"]), name), "group": lt["layer"], "lca": lt["lca"], "lca_val": lt["lca_val"]})
    return {"curves": _stack(curves), "cumulative": _stack(cumulative), "totals": _stack(totals)}


def _stack(parts: list[dict]) -> dict:
    n = [len(np.atleast_1d(p["t"] if "t" in p else p["lca"])) for p in parts]
    return columns(**{k: np.concatenate([np.broadcast_to(p[k], (m,)) for p, m in zip(parts, n)]) for k in parts[0]})


def experiment_spec(run_names: list[str], groups: list[str]) -> dict:
    pick = alt.selection_point(name="pick", fields=["run"], bind="legend")
    colours = [OKABE_ITO[i % len(OKABE_ITO)] for i in range(len(run_names))]
    runs = alt.Color("run:N", scale=alt.Scale(domain=list(run_names), range=colours), title="run (click)")
    seen = alt.condition(pick, alt.value(1.0), alt.value(0.12))
    dash = alt.StrokeDash("split:N", scale=alt.Scale(domain=["train", "validation"], range=[[1, 0], [4, 3]]), title="split")
    loss = (
        alt.Chart(alt.NamedData(name="curves"), name="loss", title="Loss over training, each run (validation dashed)")
        .mark_line()
        .encode(x=alt.X("t:Q", title="iteration"), y=alt.Y("loss:Q", title="loss (nats)"), color=runs, strokeDash=dash, opacity=seen)
        .add_params(pick)
        .properties(width=WIDE, height=HEIGHT)
    )
    totals = (
        alt.Chart(alt.NamedData(name="totals"), name="totals", title="LCA per group over training, each run")
        .mark_point(filled=True, size=60)
        .encode(x=alt.X("group:N", sort=groups), y=alt.Y("lca:Q", title="LCA (nats; < 0 helped)"), color=runs, opacity=seen)
        .properties(width=max(NARROW // 2, 50 * len(groups)), height=HEIGHT)
    )
    cumulative = (
        alt.Chart(alt.NamedData(name="cumulative"), name="cumulative")
        .mark_line()
        .encode(x=alt.X("t:Q", title="iteration"), y=alt.Y("lca:Q", title="cumulative LCA (nats)"), color=runs, strokeDash=dash, opacity=seen)
        .properties(width=NARROW, height=HEIGHT - 40)
        .facet(column=alt.Column("group:N", sort=groups, title="cumulative LCA per group"))
    )
    chart = alt.vconcat(alt.hconcat(loss, totals), cumulative)
    return chart.configure_view(stroke=None).configure_title(anchor="start", fontSize=12).to_dict(validate=True)


def experiment_explorer(name, run_names, grounding_tsvs, cumulative_tsvs, layer_tsvs, experiment_tsv, out_html, comparison_tsv=None):
    """Write the explorer page of the experiment `name` over its runs' tables to `out_html`."""
    tables = experiment_tables(run_names, grounding_tsvs, cumulative_tsvs, layer_tsvs)
    layers = read_tsv(experiment_tsv)
    groups = [str(g) for g in layers["layer"]]
    sections = [("The experiment's test per group (mean over runs, one-sample t-test)", _tsv_html(layers))]
    absent = []
    if comparison_tsv and Path(comparison_tsv).is_file():
        sections.append(("Against the experiment it is compared with (Welch t-tests)", _tsv_html(read_tsv(comparison_tsv))))
    else:
        absent.append("a comparison with another experiment (the experiment has no compare_with)")
    facts = html.escape(f"{len(run_names)} runs: {', '.join(run_names)}; groups {', '.join(groups)}.")
    write_text(out_html, page(f"LCA explorer: experiment {name}", facts, experiment_spec(run_names, groups), tables, sections, absent))


def _tsv_html(table: dict) -> str:
    return table_html(list(table), [list(row) for row in zip(*(v.tolist() for v in table.values()))])
