"""Noise (section 3, Table 1, Fig. 3, Fig. S10): how many parameters help, and how LCA is distributed.

Counts of helping and hurting parameters and the per-iteration moments come from the gradient jobs'
reductions (every parameter); the pooled distribution (histograms, Weibull fit, pooled moments) from the
stored matrix: every parameter, or the sample with lca.store: sampled (the table says which)."""

from __future__ import annotations

import math

import numpy as np

from .. import stats
from ..io import finite, iter_row_blocks, require, write_json
from ..stats import TAIL_SIGMAS
from ..storage import matrix
from ..tables import write_tsv
from .common import layout_of, nanmean0, open_lca, source_of

NEEDS = (
    "loss",
    "layout",
    "helping_layer",
    "hurting_layer",
    "helped_count",
    "hurt_count",
    "row_std",
    "row_kurtosis",
    "tail_share",
)


def noise(lca_path, out_json, out_iterations, out_layers, out_histogram, out_help_fraction, sample_size=200_000, seed=0) -> dict:
    with open_lca(lca_path) as f:
        require(f, NEEDS, lca_path, "assemble")
        layout = layout_of(f, lca_path)
        lca = matrix(f, "lca", lca_path)
        counts = {k: f[k][()] for k in ("helping_layer", "hurting_layer", "row_kurtosis", "tail_share", "loss")}
        per_param = {k: f[k][()].astype(np.int64) for k in ("helped_count", "hurt_count")}
        pooled = pooled_distribution(lca, sample_size, seed)
        source, encoding = source_of(lca, layout.num_params), lca.encoding
    shares = _shares(layout, counts)
    write_tsv(out_iterations, shares["iterations"])
    write_tsv(out_layers, shares["layers"])
    write_tsv(out_histogram, _histogram_rows(pooled))
    fraction, active = _help_fraction(per_param["helped_count"], per_param["hurt_count"])
    edges = np.linspace(0, 1, 51)
    write_tsv(out_help_fraction, {"bin_left": edges[:-1], "bin_right": edges[1:], "parameters": np.histogram(fraction, edges)[0]})
    rows = shares["iterations"]
    result = {
        "iterations": int(len(rows["iteration"])),
        "num_params": int(layout.num_params),
        "pct_helping_of_nonzero": finite(nanmean0(rows["pct_helping_of_nonzero"])),  # Table 1
        "pct_helping": float(rows["pct_helping"].mean()),
        "pct_hurting": float(rows["pct_hurting"].mean()),
        "pct_zero": float(rows["pct_zero"].mean()),
        "pct_helping_of_nonzero_by_layer": {n: finite(v) for n, v in zip(layout.layers, shares["layers"]["pct_helping_of_nonzero"])},
        "distribution": {
            **_distribution(pooled, counts["row_kurtosis"], counts["tail_share"]),
            "pooled_from": source,  # the pooled values, histograms and Weibull fit
            "storage": encoding,
        },
        "help_fraction_per_param": {
            "params_ever_nonzero": int(active.sum()),
            "mean": finite(fraction.mean() if fraction.size else math.nan),
            "median": finite(np.median(fraction) if fraction.size else math.nan),
            "pct_between_40_and_60": finite(100 * ((fraction >= 0.4) & (fraction <= 0.6)).mean() if fraction.size else math.nan),
        },
    }
    write_json(out_json, result)
    return result


def _shares(layout, counts: dict) -> dict:
    """Per iteration and per layer: the shares of parameters helping, hurting and not moving (Table 1, Fig. 3)."""
    helping, hurting = counts["helping_layer"], counts["hurting_layer"]
    K, (T, L) = layout.num_params, helping.shape
    with np.errstate(invalid="ignore", divide="ignore"):  # an all-zero iteration / layer has no share: NaN, not 0%
        pct_help_nonzero = 100 * helping.sum(1) / (helping.sum(1) + hurting.sum(1))
        layer_pct = 100 * helping / (helping + hurting)
    layer_sizes = np.bincount(layout.layer_index(), minlength=L)
    iterations = {
        "iteration": np.arange(T),
        "loss": counts["loss"][:-1],
        "pct_helping": 100 * helping.sum(1) / K,
        "pct_hurting": 100 * hurting.sum(1) / K,
        "pct_zero": 100 * (K - helping.sum(1) - hurting.sum(1)) / K,
        "pct_helping_of_nonzero": pct_help_nonzero,
        "kurtosis": counts["row_kurtosis"],
        "tail_share": counts["tail_share"],
    }
    for layer, name in enumerate(layout.layers):
        iterations[f"pct_helping_of_nonzero_{name}"] = layer_pct[:, layer]
    layers = {
        "layer": np.array(layout.layers),
        "n_params": layer_sizes,
        "pct_helping_of_nonzero": nanmean0(layer_pct),
        "pct_helping": (100 * helping / layer_sizes).mean(0),
        "pct_hurting": (100 * hurting / layer_sizes).mean(0),
    }
    return {"iterations": iterations, "layers": layers}


def _histogram_rows(pooled: dict) -> dict:
    zoom, logh, zoom_edges, log_edges = pooled["zoom"], pooled["log"], pooled["zoom_edges"], pooled["log_edges"]
    return {
        "kind": np.array(["zoomed"] * 200 + ["log_magnitude"] * 120),
        "bin_left": np.concatenate([zoom_edges[:-1], log_edges[:-1]]),
        "bin_right": np.concatenate([zoom_edges[1:], log_edges[1:]]),
        "helping": np.concatenate([zoom["helping"], logh["helping"]]),
        "hurting": np.concatenate([zoom["hurting"], logh["hurting"]]),
    }


def _help_fraction(helped: np.ndarray, hurt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per parameter: the fraction of its non-zero iterations in which it helped (Fig. 3d), and which moved."""
    active = (helped + hurt) > 0
    return helped[active] / (helped + hurt)[active], active


def _distribution(pooled: dict, kurtosis_t: np.ndarray, tail_t: np.ndarray) -> dict:
    """The pooled distribution of LCA (Fig. S10): moments, the kurtosis test, Weibull fits, tail shares."""
    moments, sample, sigma = pooled["moments"], pooled["sample"], pooled["sigma"]
    z, p = stats.kurtosis_test(moments.kurtosis, moments.n)
    weibull = {}
    for name, part in (
        ("helping", -sample.values[sample.values < 0]),
        ("hurting", sample.values[sample.values > 0]),
        ("all", np.abs(sample.values)),
    ):
        k, scale = stats.weibull_fit(part)
        weibull[name] = {"shape_k": finite(k), "scale": finite(scale), "sample_size": int(part.size)}
    observed_tail = pooled["tail_mass"] / pooled["total_mass"] if pooled["total_mass"] else math.nan
    gaussian = stats.gaussian_tail_share(TAIL_SIGMAS)
    measured = np.isfinite(kurtosis_t).any()
    return {
        "nonzero_values": int(moments.n),
        "mean": finite(moments.mean),
        "std": finite(sigma),
        "skewness": finite(moments.skewness),
        "kurtosis": finite(moments.kurtosis),
        "excess_kurtosis": finite(moments.kurtosis - 3),
        "kurtosis_per_iteration_mean": finite(np.nanmean(kurtosis_t)) if measured else None,
        "kurtosis_per_iteration_median": finite(np.nanmedian(kurtosis_t)) if measured else None,
        "kurtosis_test_z": finite(z),
        "kurtosis_test_p": finite(p),
        "weibull": weibull,
        "tail_sigmas": TAIL_SIGMAS,
        "tail_share_observed": finite(observed_tail),
        "tail_share_gaussian": gaussian,
        "tail_share_ratio": finite(observed_tail / gaussian),
        # pooled values mix iterations whose LCA differs by orders of magnitude; within one
        # iteration the share measures the shape alone
        "tail_share_within_iteration_mean": finite(nanmean0(tail_t)),
        "tail_share_within_iteration_ratio": finite(nanmean0(tail_t) / gaussian),
    }


def pooled_distribution(lca, sample_size: int, seed: int) -> dict:
    """The non-zero values of the stored matrix pooled over iterations: moments, a uniform sample (for the
    Weibull fit), two histograms and the share of sum |LCA| beyond TAIL_SIGMAS standard deviations.
    Two streamed passes; memory bounded by one block of rows."""
    moments = stats.StreamingMoments()
    sample = stats.Reservoir(sample_size, seed)
    smallest, largest = math.inf, 0.0
    for _, block in iter_row_blocks(lca):
        nonzero = block[block != 0].astype(np.float64)
        moments.update(nonzero)
        sample.update(nonzero)
        if nonzero.size:
            mags = np.abs(nonzero)
            smallest, largest = min(smallest, mags.min()), max(largest, mags.max())
    sigma = moments.std if moments.n else math.nan
    q_lo, q_hi = np.quantile(sample.values, [0.005, 0.995]) if sample.values.size else (-1.0, 1.0)
    zoom_edges = np.linspace(min(q_lo, -1e-30), max(q_hi, 1e-30), 201)
    log_edges = (
        np.geomspace(max(smallest, 1e-30), max(largest, 2e-30) * (1 + 1e-9), 121)
        if moments.n
        else np.geomspace(1e-30, 1e-29, 121)
    )
    zoom = {"helping": np.zeros(200, dtype=np.int64), "hurting": np.zeros(200, dtype=np.int64)}
    logh = {"helping": np.zeros(120, dtype=np.int64), "hurting": np.zeros(120, dtype=np.int64)}
    tail_mass = total_mass = 0.0
    for _, block in iter_row_blocks(lca):
        values = block[block != 0].astype(np.float64)
        mags = np.abs(values)
        total_mass += mags.sum()
        tail_mass += mags[mags > TAIL_SIGMAS * sigma].sum()
        for name, part in (("helping", values[values < 0]), ("hurting", values[values > 0])):
            zoom[name] += np.histogram(part, zoom_edges)[0]
            logh[name] += np.histogram(np.abs(part), log_edges)[0]
    return dict(
        moments=moments,
        sample=sample,
        sigma=sigma,
        zoom=zoom,
        log=logh,
        zoom_edges=zoom_edges,
        log_edges=log_edges,
        tail_mass=tail_mass,
        total_mass=total_mass,
    )
