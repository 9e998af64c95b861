"""Synchronisation (section 5, Fig. 6, S15-S19): do layers (and classes) learn at the same moments? From
the per-iteration group sums of LCA, gradient norms and step lengths that the gradient jobs reduce."""

from __future__ import annotations

import numpy as np

from .. import stats
from ..io import require, write_json
from ..tables import write_tsv
from .common import NO_CLASSES_REASON, has_classes, layout_of, open_lca

NEEDS = ("lca_layer", "lca_class_layer", "grad_norm_layer", "grad_norm_class_layer", "layer_motion", "classes")


def synchronization(
    lca_path, out_json, out_moments, top=20, max_shift=2, repeats=10000, seed=0, min_fraction=1.0
) -> dict:
    with open_lca(lca_path) as f:
        require(f, NEEDS, lca_path, "assemble")
        layout = layout_of(f, lca_path)
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
        signals["motion"] = (f["layer_motion"][()][None], "max", ["all classes"])
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
