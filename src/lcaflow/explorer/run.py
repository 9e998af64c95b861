"""A run's explorer page: its data (data.read_run), its linked views (views.run_spec) and its summaries."""

from __future__ import annotations

import html

from ..io import write_text
from .data import RunData, read_run
from .page import page, table_html
from .views import NAMES, run_spec

GROUNDING_ROWS = (
    ("loss_initial", "loss at theta_0 (nats)"),
    ("loss_final", "loss at theta_T (nats)"),
    ("total_loss_change", "total loss change (nats)"),
    ("lca_total", "sum of all LCA (nats)"),
    ("cumulative_error_pct", "cumulative error, % of the change"),
    ("first_order_cumulative_error_pct", "first order's cumulative error, %"),
    ("max_abs_iteration_error", "largest |error| of one iteration (nats)"),
    ("iterations_over_tolerance", "iterations over tolerance"),
)


def run_explorer(run_dir, out_html, claims_tsv=None) -> RunData:
    """Write the explorer page of the run folder `run_dir` to `out_html` (claims_tsv: the workflow's claims)."""
    data = read_run(run_dir, claims_tsv)
    meta = data.meta
    meta["has_val"] = "validation" in data.tables["curves"]["split"]["levels"]
    meta["has_moments"] = bool(data.tables["moments"])
    meta["has_params"] = bool(data.tables["params"])
    tables = {name: data.tables.get(name, {}) for name in NAMES}
    sections = [("Grounding: does the LCA add up to the loss change?", grounding_html(data.grounding))]
    sections.append(("The paper's claims, checked on every run of the workflow", claims_html(data.claims)))
    text = page(f"LCA explorer: run {meta['run']}", facts_html(meta), run_spec(meta), tables, sections, data.absent)
    write_text(out_html, text)
    return data


def facts_html(meta: dict) -> str:
    classes = f"{len(meta['classes'])} classes" if meta["classes"] else "no classes"
    frames = "" if meta["frame"] == 1 else f"; windowed views in frames of {meta['frame']} iterations"
    return html.escape(
        f"{meta['iterations']:,} iterations, {meta['parameters']:,} parameters in groups {', '.join(meta['groups'])}, {classes}; "
        f"top parameters chosen from {meta['parameters_from']}{frames}. Negative LCA helped (green), positive hurt (purple)."
    )


def grounding_html(grounding: dict) -> str:
    if not grounding:
        return "<p>No grounding summary (grounding.json is missing).</p>"
    splits = [s for s in ("train", "val") if s in grounding]
    rows = [[label, *(grounding[s].get(key) for s in splits)] for key, label in GROUNDING_ROWS]
    rows += [["quadrature", grounding.get("quadrature"), ""], ["iterations refined", grounding.get("iterations_refined"), ""]]
    return table_html(["", *("training" if s == "train" else "validation" for s in splits)], rows)


def claims_html(claims: dict | None) -> str:
    if not claims:
        return "<p>No claims table: build it with <code>snakemake --cores all claims</code>.</p>"
    header = list(claims)
    return table_html(header, [list(row) for row in zip(*claims.values())])
