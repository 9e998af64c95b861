"""Statistics across the runs (seeds) of an experiment, and tests between two experiments."""

from __future__ import annotations

import json

import numpy as np

from . import stats
from .errors import ConfigError
from .io import finite, write_json
from .tables import read_tsv, write_tsv

ALPHA = 0.05


def _run_table(layer_tsv, grounding_json) -> tuple[dict, dict]:
    table = read_tsv(layer_tsv)
    grounding = json.loads(open(grounding_json).read())
    return table, grounding


def verdict(mean: float, p: float) -> str:
    if not np.isfinite(p) or p >= ALPHA:
        return "inconclusive"
    return "helps" if mean < 0 else "hurts"


def collect(run_names: list[str], layer_tsvs: list[str], grounding_jsons: list[str]) -> dict:
    """Per run: layer names, total LCA per layer, final train and validation loss."""
    runs = {}
    layer_names = None
    for name, tsv, gj in zip(run_names, layer_tsvs, grounding_jsons):
        table, grounding = _run_table(tsv, gj)
        names = list(table["layer"])
        if layer_names is not None and names != layer_names:
            raise ConfigError(f"experiment mixes architectures: run {name} has layers {names}, others {layer_names}")
        layer_names = names
        runs[name] = {
            "lca": np.asarray(table["lca"], dtype=np.float64),
            "lca_val": np.asarray(table["lca_val"], dtype=np.float64),
            "final_train_loss": grounding["train"]["loss_final"],
            "final_val_loss": grounding["val"]["loss_final"],
        }
    return {"layers": layer_names, "runs": runs}


def experiment(name: str, run_names, layer_tsvs, grounding_jsons, out_tsv, out_json) -> dict:
    data = collect(run_names, layer_tsvs, grounding_jsons)
    lca = np.stack([r["lca"] for r in data["runs"].values()])  # (runs, L)
    rows = {k: [] for k in ("layer", "runs", "mean_lca", "std_lca", "t", "p_value", "verdict")}
    for j, layer in enumerate(data["layers"]):
        t, p = stats.one_sample_t(lca[:, j])
        rows["layer"].append(layer)
        rows["runs"].append(len(lca))
        rows["mean_lca"].append(lca[:, j].mean())
        rows["std_lca"].append(lca[:, j].std(ddof=1) if len(lca) > 1 else np.nan)
        rows["t"].append(t)
        rows["p_value"].append(p)
        rows["verdict"].append(verdict(lca[:, j].mean(), p))
    write_tsv(out_tsv, {k: np.array(v) for k, v in rows.items()})
    final = np.array([r["final_train_loss"] for r in data["runs"].values()])
    final_val = np.array([r["final_val_loss"] for r in data["runs"].values()])
    result = {
        "experiment": name,
        "runs": list(run_names),
        "final_train_loss": {
            "mean": float(final.mean()),
            "std": finite(final.std(ddof=1)) if len(final) > 1 else None,
            "values": final,
        },
        "final_val_loss": {
            "mean": float(final_val.mean()),
            "std": finite(final_val.std(ddof=1)) if len(final) > 1 else None,
            "values": final_val,
        },
        "layers": {
            layer: {"mean_lca": rows["mean_lca"][j], "p_value": finite(rows["p_value"][j]), "verdict": rows["verdict"][j]}
            for j, layer in enumerate(data["layers"])
        },
    }
    write_json(out_json, result)
    return result


def compare(name_a: str, name_b: str, runs_a: dict, runs_b: dict, out_tsv) -> dict:
    """Welch t-tests between two experiments: final losses and every layer's total LCA (`runs_x` as from collect)."""
    common = [layer for layer in runs_a["layers"] if layer in runs_b["layers"]]
    metrics = ["final_train_loss", "final_val_loss"] + [f"lca_{layer}" for layer in common]

    def values(side: dict, metric: str) -> np.ndarray:
        if metric.startswith("lca_"):
            j = side["layers"].index(metric[4:])
            return np.array([r["lca"][j] for r in side["runs"].values()])
        return np.array([r[metric] for r in side["runs"].values()])

    rows = {k: [] for k in ("metric", "experiment_a", "mean_a", "std_a", "experiment_b", "mean_b", "std_b", "t", "p_value")}
    for metric in metrics:
        a, b = values(runs_a, metric), values(runs_b, metric)
        t, p = stats.welch_t(a, b)
        for key, value in (
            ("metric", metric),
            ("experiment_a", name_a),
            ("mean_a", a.mean()),
            ("std_a", a.std(ddof=1) if a.size > 1 else np.nan),
            ("experiment_b", name_b),
            ("mean_b", b.mean()),
            ("std_b", b.std(ddof=1) if b.size > 1 else np.nan),
            ("t", t),
            ("p_value", p),
        ):
            rows[key].append(value)
    write_tsv(out_tsv, {k: np.array(v) for k, v in rows.items()})
    return rows
