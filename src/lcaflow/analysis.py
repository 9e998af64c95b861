"""The paper's measurements of one run, computed from lca.h5 (and trajectory.h5) into small tables.

Every function streams the T x K datasets in blocks of rows, so memory is bounded by K (and by the
handful of parameter columns an analysis follows), never by T x K."""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
from scipy import stats as sps

from . import stats
from .errors import CorruptFileError
from .grounding import ADAPTIVE_ONLY, grounding_report
from .io import finite, open_h5, require, write_json
from .layout import Layout
from .summary import iter_row_blocks, write_tsv

TAIL_SIGMAS = 3.0  # "tail" = |LCA| beyond 3 standard deviations, for the heavy-tail share


def _open_lca(path):
    return open_h5(path, "LCA file (assemble stage)")


def _layout(f: h5py.File, path) -> Layout:
    try:
        return Layout.from_h5(f["layout"])
    except (KeyError, ValueError) as err:
        raise CorruptFileError(f"{path}: layout metadata incomplete ({err}); delete it and rerun assemble") from err


def _nanmean0(x: np.ndarray):
    """Mean over axis 0 ignoring NaN; NaN (not a warning) where everything is NaN."""
    x = np.asarray(x, dtype=np.float64)
    n = np.isfinite(x).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.nansum(x, 0) / n, np.nan)


# ----------------------------------------------------------------------------------------------
# Grounding (Table S1)


def grounding(lca_path, out_tsv) -> dict:
    """Per-iteration table of real loss change, LCA and first-order sums and their errors (with adaptive
    quadrature also the trapezoid's error before its removal); returns the run's summary (the numbers of the
    assemble stage's grounding.json)."""
    keys = ("loss", "loss_val", "error", "error_val", "lca_first_order", "lca_first_order_val", "num_splits")
    with _open_lca(lca_path) as f:
        require(f, keys, lca_path, "assemble")
        d = {k: f[k][()] for k in keys + ADAPTIVE_ONLY if k in f}
        lca_config = json.loads(f.attrs["lca_config"])
    rows = {"iteration": np.arange(len(d["error"]))}
    for sfx in ("", "_val"):
        d_loss = np.diff(d["loss" + sfx])
        rows.update(
            {
                f"loss{sfx}": d["loss" + sfx][:-1],
                f"loss_change{sfx}": d_loss,
                f"lca_sum{sfx}": d_loss + d["error" + sfx],
                f"error{sfx}": d["error" + sfx],
                f"first_order_sum{sfx}": d["lca_first_order" + sfx],
                f"first_order_error{sfx}": d["lca_first_order" + sfx] - d_loss,
            }
        )
        if "trapezoid_error" + sfx in d:
            rows[f"trapezoid_error{sfx}"] = d["trapezoid_error" + sfx]
    rows["num_splits"] = d["num_splits"]
    if "num_splits_val" in d:
        rows["num_splits_val"] = d["num_splits_val"]
    write_tsv(out_tsv, rows)
    # lca.h5 files written before lca.quadrature existed were all Simpson
    return grounding_report(d, lca_config["tolerance"], lca_config.get("quadrature", "simpson"))


# ----------------------------------------------------------------------------------------------
# Noise (section 3, Table 1, Fig. 3, Fig. S10)


def count_signs(block: np.ndarray, layer_index: np.ndarray, n_layers: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of an LCA block: the number of helping (< 0) and hurting (> 0) parameters per layer, (rows, L)."""
    helping = np.stack([(block[:, layer_index == layer] < 0).sum(1) for layer in range(n_layers)], axis=1)
    hurting = np.stack([(block[:, layer_index == layer] > 0).sum(1) for layer in range(n_layers)], axis=1)
    return helping, hurting


def noise(lca_path, out_json, out_iterations, out_layers, out_histogram, out_help_fraction, sample_size=200_000, seed=0) -> dict:
    with _open_lca(lca_path) as f:
        require(f, ("lca", "loss", "layout"), lca_path, "assemble")
        layout = _layout(f, lca_path)
        layer_index = layout.layer_index()
        L = len(layout.layers)
        dset = f["lca"]
        T, K = dset.shape
        loss = f["loss"][()]
        helping = np.zeros((T, L), dtype=np.int64)
        hurting = np.zeros((T, L), dtype=np.int64)
        helped_count = np.zeros(K, dtype=np.int64)
        hurt_count = np.zeros(K, dtype=np.int64)
        moments = stats.StreamingMoments()
        sample = stats.Reservoir(sample_size, seed)
        smallest, largest = math.inf, 0.0
        kurtosis_t = np.full(T, np.nan)
        sigma_t = np.full(T, np.nan)
        tail_t = np.full(T, np.nan)
        # pass 1: counts, moments of the non-zero values, a uniform sample, the range of |LCA|
        for start, block in iter_row_blocks(dset):
            stop = start + len(block)
            helping[start:stop], hurting[start:stop] = count_signs(block, layer_index, L)
            helped_count += (block < 0).sum(0)
            sigma_t[start:stop], kurtosis_t[start:stop] = row_moments(block)
            hurt_count += (block > 0).sum(0)
            nonzero = block[block != 0].astype(np.float64)
            moments.update(nonzero)
            sample.update(nonzero)
            if nonzero.size:
                mags = np.abs(nonzero)
                smallest, largest = min(smallest, mags.min()), max(largest, mags.max())
        sigma = moments.std if moments.n else math.nan
        # pass 2: the share of the total |LCA| from the tails, and the two histograms
        tail_mass = total_mass = 0.0
        q_lo, q_hi = np.quantile(sample.values, [0.005, 0.995]) if sample.values.size else (-1.0, 1.0)
        zoom_edges = np.linspace(min(q_lo, -1e-30), max(q_hi, 1e-30), 201)
        log_edges = (
            np.geomspace(max(smallest, 1e-30), max(largest, 2e-30) * (1 + 1e-9), 121)
            if moments.n
            else np.geomspace(1e-30, 1e-29, 121)
        )
        zoom = {"helping": np.zeros(200, dtype=np.int64), "hurting": np.zeros(200, dtype=np.int64)}
        logh = {"helping": np.zeros(120, dtype=np.int64), "hurting": np.zeros(120, dtype=np.int64)}
        for start, block in iter_row_blocks(dset):
            # within each iteration: the share of its sum |LCA| beyond 3 of its own standard deviations
            row_mags = np.abs(block.astype(np.float64))
            row_tail = np.where(row_mags > TAIL_SIGMAS * sigma_t[start : start + len(block), None], row_mags, 0.0).sum(1)
            with np.errstate(invalid="ignore", divide="ignore"):
                tail_t[start : start + len(block)] = np.where(
                    np.isfinite(sigma_t[start : start + len(block)]), row_tail / row_mags.sum(1), np.nan
                )
            values = block[block != 0].astype(np.float64)
            mags = np.abs(values)
            total_mass += mags.sum()
            tail_mass += mags[mags > TAIL_SIGMAS * sigma].sum()
            for name, part in (("helping", values[values < 0]), ("hurting", values[values > 0])):
                zoom[name] += np.histogram(part, zoom_edges)[0]
                logh[name] += np.histogram(np.abs(part), log_edges)[0]

    zero = layout.num_params - helping.sum(1) - hurting.sum(1)
    nonzero_t = helping.sum(1) + hurting.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):  # an all-zero iteration / layer has no share: NaN, not 0%
        pct_help_nonzero = 100 * helping.sum(1) / nonzero_t
        layer_pct = 100 * helping / (helping + hurting)
    layer_sizes = np.bincount(layer_index, minlength=L)
    iteration_rows = {
        "iteration": np.arange(T),
        "loss": loss[:-1],
        "pct_helping": 100 * helping.sum(1) / K,
        "pct_hurting": 100 * hurting.sum(1) / K,
        "pct_zero": 100 * zero / K,
        "pct_helping_of_nonzero": pct_help_nonzero,
        "kurtosis": kurtosis_t,
        "tail_share": tail_t,
    }
    for layer, name in enumerate(layout.layers):
        iteration_rows[f"pct_helping_of_nonzero_{name}"] = layer_pct[:, layer]
    write_tsv(out_iterations, iteration_rows)
    write_tsv(
        out_layers,
        {
            "layer": np.array(layout.layers),
            "n_params": layer_sizes,
            "pct_helping_of_nonzero": _nanmean0(layer_pct),
            "pct_helping": (100 * helping / layer_sizes).mean(0),
            "pct_hurting": (100 * hurting / layer_sizes).mean(0),
        },
    )
    write_tsv(
        out_histogram,
        {
            "kind": np.array(["zoomed"] * 200 + ["log_magnitude"] * 120),
            "bin_left": np.concatenate([zoom_edges[:-1], log_edges[:-1]]),
            "bin_right": np.concatenate([zoom_edges[1:], log_edges[1:]]),
            "helping": np.concatenate([zoom["helping"], logh["helping"]]),
            "hurting": np.concatenate([zoom["hurting"], logh["hurting"]]),
        },
    )
    # per parameter: the fraction of its non-zero iterations in which it helped (Fig. 3d)
    active = (helped_count + hurt_count) > 0
    fraction = helped_count[active] / (helped_count + hurt_count)[active]
    edges = np.linspace(0, 1, 51)
    write_tsv(out_help_fraction, {"bin_left": edges[:-1], "bin_right": edges[1:], "parameters": np.histogram(fraction, edges)[0]})

    z, p = stats.kurtosis_test(moments.kurtosis, moments.n)
    weibull = {}
    for name, part in (
        ("helping", -sample.values[sample.values < 0]),
        ("hurting", sample.values[sample.values > 0]),
        ("all", np.abs(sample.values)),
    ):
        k, scale = stats.weibull_fit(part)
        weibull[name] = {"shape_k": finite(k), "scale": finite(scale), "sample_size": int(part.size)}
    observed_tail = tail_mass / total_mass if total_mass else math.nan
    result = {
        "iterations": int(T),
        "num_params": int(K),
        "pct_helping_of_nonzero": finite(_nanmean0(pct_help_nonzero)),  # Table 1
        "pct_helping": float(iteration_rows["pct_helping"].mean()),
        "pct_hurting": float(iteration_rows["pct_hurting"].mean()),
        "pct_zero": float(iteration_rows["pct_zero"].mean()),
        "pct_helping_of_nonzero_by_layer": {n: finite(v) for n, v in zip(layout.layers, _nanmean0(layer_pct))},
        "distribution": {
            "nonzero_values": int(moments.n),
            "mean": finite(moments.mean),
            "std": finite(sigma),
            "skewness": finite(moments.skewness),
            "kurtosis": finite(moments.kurtosis),
            "excess_kurtosis": finite(moments.kurtosis - 3),
            "kurtosis_per_iteration_mean": finite(np.nanmean(kurtosis_t)) if np.isfinite(kurtosis_t).any() else None,
            "kurtosis_per_iteration_median": finite(np.nanmedian(kurtosis_t)) if np.isfinite(kurtosis_t).any() else None,
            "kurtosis_test_z": finite(z),
            "kurtosis_test_p": finite(p),
            "weibull": weibull,
            "tail_sigmas": TAIL_SIGMAS,
            "tail_share_observed": finite(observed_tail),
            "tail_share_gaussian": stats.gaussian_tail_share(TAIL_SIGMAS),
            "tail_share_ratio": finite(observed_tail / stats.gaussian_tail_share(TAIL_SIGMAS)),
            # pooled values mix iterations whose LCA differs by orders of magnitude; within one
            # iteration the share measures the shape alone
            "tail_share_within_iteration_mean": finite(_nanmean0(tail_t)),
            "tail_share_within_iteration_ratio": finite(_nanmean0(tail_t) / stats.gaussian_tail_share(TAIL_SIGMAS)),
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


def row_moments(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standard deviation and Pearson kurtosis of the non-zero values of each row (NaN for rows with
    fewer than 4).
    LCA shrinks by orders of magnitude during training, so the pooled kurtosis mostly measures that
    drift; the kurtosis within one iteration measures the shape (the paper averages over intervals)."""
    x = block.astype(np.float64)
    mask = x != 0
    n = mask.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = x.sum(1) / n
        d = np.where(mask, x - mean[:, None], 0.0)
        m2 = (d**2).sum(1) / n
        m4 = (d**4).sum(1) / n
        ok = (n >= 4) & (m2 > 0)
        return np.where(ok, np.sqrt(m2), np.nan), np.where(ok, m4 / m2**2, np.nan)


# ----------------------------------------------------------------------------------------------
# Oscillation (Table S2, Fig. S7, S8)


def iter_steps(params):
    """Blocks of theta_t+1 - theta_t (float64) over a streamed (T+1, K) trajectory, T rows in all."""
    previous = None
    for _, block in iter_row_blocks(params):
        block = block.astype(np.float64)
        rows = block if previous is None else np.vstack([previous, block])
        if len(rows) > 1:
            yield np.diff(rows, axis=0)
        previous = block[-1:]


def kernel_of(layout: Layout, layer: str) -> int:
    """Index of the layer's kernel tensor: its first tensor with 2 or more dimensions (else its first)."""
    members = [j for j, owner in enumerate(layout.layer_of_param) if owner == layer]
    return next((j for j in members if len(layout.shapes[j]) >= 2), members[0])


def oscillation(trajectory_path, lca_path, out_json, out_layers, out_traces, window=(50, 200)) -> dict:
    with _open_lca(lca_path) as f:
        layout = _layout(f, lca_path)
        has_grad = "grad" in f
        T, K = f["lca"].shape
        layer_index = layout.layer_index()
        L = len(layout.layers)
        turns = stats.SignChangeCounter(K)
        with open_h5(trajectory_path, "trajectory (train stage)") as tf:
            require(tf, ("params",), trajectory_path, "train")
            params = tf["params"]
            for steps in iter_steps(params):
                turns.update(steps)
            crossings = None
            if has_grad:
                crossings = stats.SignChangeCounter(K)
                for _, block in iter_row_blocks(f["grad"]):
                    crossings.update(block)
            # Fig. S8: the last layer's kernel weights that hurt and helped most in the window
            w0 = min(window[0], max(T - 2, 0))
            w1 = max(min(window[1], T), w0 + 1)
            kernel = kernel_of(layout, layout.layers[-1])
            a, b = layout.offsets[kernel], layout.offsets[kernel] + layout.sizes[kernel]
            window_lca = f["lca"][w0:w1, a:b].astype(np.float64)
            net = window_lca.sum(0)
            chosen = {"most_hurting": int(np.argmax(net)), "most_helping": int(np.argmin(net))}
            traces = {"iteration": np.arange(w0, w1)}
            for role, j in chosen.items():
                col = a + j
                traces[f"{role}_weight"] = params[w0:w1, col].astype(np.float64)
                traces[f"{role}_grad"] = f["grad"][w0:w1, col].astype(np.float64) if has_grad else np.full(w1 - w0, np.nan)
                traces[f"{role}_lca"] = window_lca[:, j]
    write_tsv(out_traces, traces)

    def per_layer(changes):
        return np.bincount(layer_index, weights=changes, minlength=L) / np.bincount(layer_index, minlength=L)

    def every(mean_changes):
        return T / mean_changes if mean_changes > 0 else math.inf

    weight_layer = per_layer(turns.changes)
    grad_layer = per_layer(crossings.changes) if crossings is not None else np.full(L, np.nan)
    write_tsv(
        out_layers,
        {
            "layer": np.array(layout.layers),
            "weight_direction_changes": weight_layer,
            "iterations_per_weight_direction_change": np.array([every(v) for v in weight_layer]),
            "gradient_sign_changes": grad_layer,
            "iterations_per_gradient_sign_change": np.array([every(v) if np.isfinite(v) else np.nan for v in grad_layer]),
        },
    )
    mean_turns = float(turns.changes.mean())
    result = {
        "iterations": int(T),
        # Table S2's convention: T over the mean number of changes per parameter (all parameters)
        "weight_direction_changes_mean": mean_turns,
        "iterations_per_weight_direction_change": finite(every(mean_turns)),
        "gradient_stored": has_grad,
        "gradient_sign_changes_mean": float(crossings.changes.mean()) if crossings is not None else None,
        "iterations_per_gradient_sign_change": finite(every(float(crossings.changes.mean()))) if crossings is not None else None,
        "gradient_note": None if has_grad else "not measured: set lca.store_gradients: true and rerun the gradient jobs",
        "traces": {
            "layer": layout.layers[-1],
            "tensor": layout.names[kernel],
            "window": [int(w0), int(w1)],
            **{role: {"index_in_tensor": j, "net_lca": float(net[j])} for role, j in chosen.items()},
        },
    }
    write_json(out_json, result)
    return result


# ----------------------------------------------------------------------------------------------
# Layers (section 4, Fig. 4, S11) and validation vs training LCA


def layers(lca_path, out_tsv, out_cumulative) -> dict:
    with _open_lca(lca_path) as f:
        require(f, ("lca_layer", "lca_val_layer", "layout"), lca_path, "assemble")
        layout = _layout(f, lca_path)
        train, val = f["lca_layer"][()], f["lca_val_layer"][()]
    sizes = np.bincount(layout.layer_index(), minlength=len(layout.layers))
    total, total_val = train.sum(0), val.sum(0)
    rows = {
        "layer": np.array(layout.layers),
        "n_params": sizes,
        "lca": total,
        "lca_per_param": total / sizes,
        "lca_val": total_val,
        "lca_val_per_param": total_val / sizes,
        "share_of_total_lca": total / total.sum() if total.sum() else np.full(len(sizes), np.nan),
    }
    write_tsv(out_tsv, rows)
    cumulative = {"iteration": np.arange(1, len(train) + 1)}
    for j, name in enumerate(layout.layers):
        cumulative[f"train_{name}"] = np.cumsum(train[:, j])
        cumulative[f"val_{name}"] = np.cumsum(val[:, j])
    write_tsv(out_cumulative, cumulative)
    return {name: float(v) for name, v in zip(layout.layers, total)}


# ----------------------------------------------------------------------------------------------
# Synchronisation (section 5, Fig. 6, S15-S19)


def layer_motion(trajectory_path, layout: Layout) -> np.ndarray:
    """(T, L): the Euclidean length of each layer's step theta_t+1 - theta_t."""
    layer_index = layout.layer_index()
    with open_h5(trajectory_path, "trajectory (train stage)") as tf:
        out = [
            np.stack([(steps[:, layer_index == j] ** 2).sum(1) for j in range(len(layout.layers))], axis=1)
            for steps in iter_steps(tf["params"])
        ]
    return np.sqrt(np.concatenate(out))


def synchronization(
    lca_path, trajectory_path, out_json, out_moments, top=20, max_shift=2, repeats=10000, seed=0, min_fraction=1.0
) -> dict:
    with _open_lca(lca_path) as f:
        require(f, ("lca_layer", "lca_class_layer", "grad_norm_layer", "grad_norm_class_layer", "classes"), lca_path, "assemble")
        layout = _layout(f, lca_path)
        T = f["lca_layer"].shape[0]
        classes = list(f["classes"].asstr()[()])
        per_class = has_classes(f)
        signals = {
            # name: (series (groups, T, L), kind of extremum, group names)
            "lca": (f["lca_layer"][()][None], "min", ["all classes"]),
            "lca_by_class": (f["lca_class_layer"][()].transpose(1, 0, 2), "min", classes),
            "gradient": (f["grad_norm_layer"][:T][None], "max", ["all classes"]),
            "gradient_by_class": (f["grad_norm_class_layer"][:T].transpose(1, 0, 2), "max", classes),
        }
        if not per_class:
            del signals["lca_by_class"], signals["gradient_by_class"]
    signals["motion"] = (layer_motion(trajectory_path, layout)[None], "max", ["all classes"])
    rows = {k: [] for k in ("signal", "group", "layer", "iteration", "value", "synchronized")}
    need = stats.required_layers(len(layout.layers), min_fraction)
    result = {
        "top": top,
        "max_shift": max_shift,
        "repeats": repeats,
        "min_fraction": min_fraction,
        "min_layers": need,
        "layers": list(layout.layers),
        "signals": {},
        **({} if per_class else {"skipped": {"lca_by_class": NO_CLASSES_REASON, "gradient_by_class": NO_CLASSES_REASON}}),
    }
    for k, (name, (series, kind, groups)) in enumerate(signals.items()):
        moment_groups = []
        for g, group in enumerate(groups):
            sets = [stats.top_moments(series[g][:, j], top, kind) for j in range(len(layout.layers))]
            moment_groups.append(sets)
            counts = np.bincount(np.concatenate([s for s in sets] + [np.empty(0, np.int64)]).astype(np.int64))
            synced = set(np.flatnonzero(counts >= need).tolist())
            for j, s in enumerate(sets):
                for t in s:
                    rows["signal"].append(name)
                    rows["group"].append(group)
                    rows["layer"].append(layout.layers[j])
                    rows["iteration"].append(int(t))
                    rows["value"].append(float(series[g][t, j]))
                    rows["synchronized"].append(int(t in synced))
        observed, baseline, p = stats.shift_baseline(moment_groups, max_shift, repeats, seed + k, min_fraction)
        result["signals"][name] = {
            "extremum": "local minima" if kind == "min" else "local maxima",
            "groups": len(groups),
            "synchronized_total": int(observed),
            "synchronized_per_group": observed / len(groups),
            "baseline_mean_per_group": float(baseline.mean() / len(groups)),
            "baseline_max_total": int(baseline.max()),
            "p_value": p,
            "p_smallest_possible": 1 / (repeats + 1),
        }
    write_tsv(out_moments, {k: np.array(v) for k, v in rows.items()})
    write_json(out_json, result)
    return result


# ----------------------------------------------------------------------------------------------
# Neurons and classes (S6, Fig. S1, S2, S20-S22)


NO_CLASSES_REASON = "the run's loss has no classes (per-class LCA needs cross_entropy on class indices)"


def has_classes(f: h5py.File) -> bool:
    """Whether a run's lca.h5 has per-class LCA (runs made before the attribute existed all do)."""
    return bool(f.attrs.get("per_class", True))


def units_of(layout: Layout, layer: str) -> tuple[int | None, str]:
    """(number of output units, "") of a group whose tensors all share their first axis with its kernel
    (a Linear, Conv or Embedding weight with its bias and norm), else (None, why not)."""
    members = [j for j, owner in enumerate(layout.layer_of_param) if owner == layer]
    kernel = kernel_of(layout, layer)
    if len(layout.shapes[kernel]) < 2:
        return None, "no weight with an output-unit axis (only vectors)"
    units = layout.shapes[kernel][0]
    odd = [j for j in members if not layout.shapes[j] or layout.shapes[j][0] != units]
    if odd:
        j = odd[0]
        rows = layout.shapes[j][0] if layout.shapes[j] else "none (a scalar)"
        return (
            None,
            f"its tensors do not share an output-unit axis ({layout.names[kernel]} has {units} rows, {layout.names[j]} {rows})",
        )
    return units, ""


def neuron_sums(rows: np.ndarray, layout: Layout, layer: str) -> np.ndarray:
    """(n, units): a (n, K) matrix summed over the parameters of each output neuron / channel of a layer
    (kernel rows plus their bias and norm entries)."""
    total = None
    for j, owner in enumerate(layout.layer_of_param):
        if owner == layer:
            a, b = layout.offsets[j], layout.offsets[j] + layout.sizes[j]
            part = rows[:, a:b].reshape(len(rows), layout.shapes[j][0], -1).sum(2, dtype=np.float64)
            total = part if total is None else total + part
    return total


def _correlation_groups(shape, rng, nodes: int, per_node: int) -> dict[str, list[np.ndarray]]:
    """Flat indices into a kernel: groups of weights sharing an output, sharing an input, and baseline
    "fake nodes" of weights that pairwise share neither (S20)."""
    n_out, n_in = shape[0], shape[1]
    rest = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    flat = np.arange(int(np.prod(shape))).reshape(n_out, n_in, rest)
    groups = {"same_output": [], "same_input": [], "baseline": []}
    for o in rng.permutation(n_out)[:nodes]:
        members = flat[o].ravel()
        groups["same_output"].append(rng.choice(members, min(per_node, members.size), replace=False))
    for i in rng.permutation(n_in)[:nodes]:
        members = flat[:, i].ravel()
        groups["same_input"].append(rng.choice(members, min(per_node, members.size), replace=False))
    m = min(per_node, n_out, n_in)
    for _ in range(nodes):
        outs, ins = rng.permutation(n_out)[:m], rng.permutation(n_in)[:m]
        groups["baseline"].append(flat[outs, ins, rng.integers(rest, size=m)])
    return groups


def neurons(lca_path, out_h5, out_correlation, out_specialization, out_json, n_top=50, nodes=30, per_node=12, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    with _open_lca(lca_path) as f:
        require(f, ("lca", "lca_class_param", "layout", "classes"), lca_path, "assemble")
        layout = _layout(f, lca_path)
        classes = list(f["classes"].asstr()[()])
        per_class = has_classes(f)
        dset = f["lca"]
        T, K = dset.shape
        units = {name: units_of(layout, name) for name in layout.layers}
        with_units = [name for name in layout.layers if units[name][0] is not None]
        skipped = {name: f"skipped: {why}" for name, (n, why) in units.items() if n is None}
        layer_index = layout.layer_index()
        cols = {name: np.flatnonzero(layer_index == j) for j, name in enumerate(layout.layers)}
        # which kernel weights to follow for the correlation test
        corr_cols = {}
        for name in layout.layers:
            kernel = kernel_of(layout, name)
            if len(layout.shapes[kernel]) < 2:
                continue
            groups = _correlation_groups(layout.shapes[kernel], rng, nodes, per_node)
            corr_cols[name] = {g: [layout.offsets[kernel] + idx for idx in v] for g, v in groups.items()}
        followed = np.unique(
            np.concatenate([np.concatenate(v) for d in corr_cols.values() for v in d.values()] or [np.empty(0, int)])
        )
        neuron_lca = {name: np.zeros((T, units[name][0])) for name in with_units}
        totals = np.zeros(K)
        traces = np.zeros((T, followed.size), dtype=np.float32)  # T x (a few thousand): float32 halves it
        for start, block in iter_row_blocks(dset):
            stop = start + len(block)
            block64 = block.astype(np.float64)
            totals += block64.sum(0)
            traces[start:stop] = block[:, followed]
            for name in with_units:
                neuron_lca[name][start:stop] = neuron_sums(block64, layout, name)
        # S2: cumulative LCA of the most helpful and of random parameters of the first layer
        first = cols[layout.layers[0]]
        best = first[np.argsort(totals[first], kind="stable")[:n_top]]
        random = np.sort(rng.choice(first, min(n_top, first.size), replace=False))
        chosen = np.unique(np.concatenate([best, random]))
        chosen_traces = np.zeros((T, chosen.size))
        for start, block in iter_row_blocks(dset):
            chosen_traces[start : start + len(block)] = block[:, chosen]
        class_param = f["lca_class_param"][()]

    # S20: mean pairwise correlation of LCA over iterations within each group; KS test against baseline
    position = {c: i for i, c in enumerate(followed.tolist())}
    corr_rows = {k: [] for k in ("layer", "group", "node", "mean_correlation")}
    corr_summary = {}
    for name, groups in corr_cols.items():
        values = {}
        for g, members in groups.items():
            values[g] = np.array([stats.mean_pairwise_correlation(traces[:, [position[c] for c in m]]) for m in members])
            for node, v in enumerate(values[g]):
                corr_rows["layer"].append(name)
                corr_rows["group"].append(g)
                corr_rows["node"].append(node)
                corr_rows["mean_correlation"].append(v)
        summary = {g: finite(np.nanmean(v)) if np.isfinite(v).any() else None for g, v in values.items()}
        for g in ("same_output", "same_input"):
            a, b = values[g][np.isfinite(values[g])], values["baseline"][np.isfinite(values["baseline"])]
            ks = sps.ks_2samp(a, b) if a.size and b.size else None
            summary[f"ks_{g}_vs_baseline_statistic"] = float(ks.statistic) if ks else None
            summary[f"ks_{g}_vs_baseline_p"] = float(ks.pvalue) if ks else None
        corr_summary[name] = summary
    write_tsv(out_correlation, {k: np.array(v) for k, v in corr_rows.items()})

    # S21/S22: how much each neuron's help concentrates on its top 1, 2, 3 classes
    spec_rows = {k: [] for k in ("layer", "neuron", "help_total", "top1_share", "top2_share", "top3_share", "top_classes")}
    spec_summary = {}
    examples = {}
    for name in with_units if per_class else []:
        help_by_class = np.clip(-neuron_sums(class_param, layout, name).T, 0, None)  # (neurons, C) amount helped
        shares = stats.top_class_shares(help_by_class, 3)
        order = np.argsort(-help_by_class, axis=1, kind="stable")[:, :3]
        for n in range(help_by_class.shape[0]):
            spec_rows["layer"].append(name)
            spec_rows["neuron"].append(n)
            spec_rows["help_total"].append(help_by_class[n].sum())
            for k in range(3):
                spec_rows[f"top{k + 1}_share"].append(shares[n, k])
            spec_rows["top_classes"].append(",".join(classes[c] for c in order[n]))
        valid = np.isfinite(shares[:, 0])
        spec_summary[name] = {
            f"pct_neurons_top{k + 1}_over_80pct": finite(100 * (shares[valid, k] > 0.8).mean()) if valid.any() else None
            for k in range(3)
        }
        if name == with_units[0]:
            # S22: the first layer's most specialised neurons (among the half that helped most)
            helped = help_by_class.sum(1)
            candidates = np.flatnonzero(helped >= np.median(helped))
            chosen_neurons = []
            for k in (1, 2):
                pool = [c for c in candidates if c not in chosen_neurons] or list(candidates)
                if k == 2:  # a neuron on two classes: not one that the top class alone explains
                    pool = [c for c in pool if not shares[c, 0] > 0.8] or pool
                n = int(pool[int(np.argmax(np.nan_to_num(shares[pool, k - 1])))])
                chosen_neurons.append(n)
                kernel = kernel_of(layout, name)
                a = layout.offsets[kernel]
                per_unit = int(np.prod(layout.shapes[kernel][1:]))
                examples[f"top{k}"] = {
                    "neuron": n,
                    "help_by_class": help_by_class[n],
                    "incoming_lca": totals[a + n * per_unit : a + (n + 1) * per_unit],
                    "incoming_shape": list(layout.shapes[kernel][1:]),
                }
    write_tsv(out_specialization, {k: np.array(v) for k, v in spec_rows.items()})

    tmp = Path(str(out_h5) + ".partial")
    with h5py.File(tmp, "w") as out:
        g = out.create_group("neuron_lca")
        for name, matrix in neuron_lca.items():
            g.create_dataset(name, data=matrix)
        out.create_dataset("param_traces", data=chosen_traces)
        out.create_dataset("param_index", data=chosen)
        out.create_dataset("most_helpful", data=best)
        out.create_dataset("random", data=random)
        ex = out.create_group("example_neurons")
        for key, d in examples.items():
            e = ex.create_group(key)
            e.attrs["neuron"] = d["neuron"]
            e.attrs["incoming_shape"] = d["incoming_shape"]
            e.create_dataset("help_by_class", data=d["help_by_class"])
            e.create_dataset("incoming_lca", data=d["incoming_lca"])
        out.attrs["layers"] = json.dumps(with_units)
        out.attrs["classes"] = json.dumps(classes)
        out.attrs["first_layer"] = layout.layers[0]
        out.attrs["first_neuron_layer"] = with_units[0] if with_units else ""
        out.attrs["skipped"] = json.dumps(skipped)
    tmp.replace(out_h5)
    result = {"correlation": corr_summary, "specialization": spec_summary, "n_top": n_top, "skipped_layers": skipped}
    if not per_class:
        result["specialization_skipped"] = f"skipped: {NO_CLASSES_REASON}"
    write_json(out_json, result)
    return result
