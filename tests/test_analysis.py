"""The analysis stages on lca.h5 / trajectory.h5 files built with known answers planted in them."""

import json

import h5py
import numpy as np
import pytest
from conftest import plant_reductions

from lcaflow import analysis, experiments, plots
from lcaflow.layout import Layout
from lcaflow.tables import read_tsv

T, C = 240, 3
LAYOUT = Layout(
    names=("l1.weight", "l1.bias", "l2.weight", "l2.bias"),
    shapes=((4, 6), (4,), (3, 4), (3,)),
    offsets=(0, 24, 28, 40),
    layer_of_param=("l1", "l1", "l2", "l2"),
    layers=("l1", "l2"),
)
K = 43
SYNC = np.arange(20, 220, 10)  # 20 planted moments shared by both layers
PERIOD = 12  # l1 weights move back and forth with this period


def make_run(tmp_path, seed=0, hurt=1e-3, final_loss=0.5):
    """A run whose second layer hurts (LCA +hurt per parameter per iteration), whose first layer's
    weights oscillate with period PERIOD, and whose per-layer (and per-class) LCA dips together at SYNC."""
    rng = np.random.default_rng(seed)
    layer_index = LAYOUT.layer_index()
    lca = rng.normal(0, 1e-4, size=(T, K))
    lca[:, layer_index == 1] += hurt
    lca[:, layer_index == 0] -= 2 * hurt
    lca[SYNC] -= 0.01  # deep, shared dips: moments of learning in every layer at once
    lca_layer = np.stack([lca[:, layer_index == j].sum(1) for j in range(2)], axis=1)
    class_layer = np.repeat(lca_layer[:, None, :] / C, C, axis=1) + rng.normal(0, 1e-5, size=(T, C, 2))
    t = np.arange(T + 1)
    params = np.zeros((T + 1, K))
    params[:, layer_index == 0] = np.sin(2 * np.pi * (t[:, None] + 0.5) / PERIOD)  # turns every PERIOD/2 steps
    params[:, layer_index == 1] = 0.01 * t[:, None]  # moves one way only: never turns
    grad = np.zeros((T + 1, K))
    grad[:, layer_index == 0] = np.cos(2 * np.pi * (t[:, None] + 0.25) / PERIOD)
    grad[:, layer_index == 1] = 1.0  # never crosses zero
    loss = final_loss + np.linspace(2.0, 0.0, T + 1)
    error = rng.normal(0, 1e-5, T)
    lca_path, traj_path = tmp_path / f"lca{seed}.h5", tmp_path / f"traj{seed}.h5"
    with h5py.File(lca_path, "w") as f:
        f["lca"] = lca.astype(np.float32)
        f["lca_val"] = (0.5 * lca).astype(np.float32)
        f["grad"] = grad.astype(np.float32)
        f["loss"], f["loss_val"] = loss, loss + 0.1
        f["error"], f["error_val"] = error, error
        f["lca_first_order"], f["lca_first_order_val"] = np.diff(loss) * 2, np.diff(loss) * 2
        f["num_splits"] = np.ones(T, dtype=np.int32)
        f["lca_layer"], f["lca_val_layer"] = lca_layer, 0.5 * lca_layer
        f["lca_class_layer"] = class_layer
        plant_reductions(f, LAYOUT, lca, grad, np.repeat(lca.sum(0)[None] / C, C, axis=0), params)
        f["grad_norm_layer"] = rng.uniform(1, 2, size=(T + 1, 2))
        f["grad_norm_class_layer"] = rng.uniform(1, 2, size=(T + 1, C, 2))
        f["classes"] = np.array(["a", "b", "c"], dtype=object)
        LAYOUT.to_h5(f.create_group("layout"))
        f.attrs["lca_config"] = json.dumps({"tolerance": 1e-3})
    with h5py.File(traj_path, "w") as f:
        f["params"] = params.astype(np.float32)
    grounding = tmp_path / f"grounding{seed}.json"
    grounding.write_text(json.dumps({"train": {"loss_final": final_loss}, "val": {"loss_final": final_loss + 0.1}}))
    return lca_path, traj_path, grounding


def test_grounding_table_s1_quantities(tmp_path):
    lca, _, _ = make_run(tmp_path)
    g = analysis.grounding(lca, tmp_path / "g.tsv")
    # first order = 2 x the real change: total error -100% of |ΔL|... with the sign of "LCA says lower"
    assert g["train"]["first_order_cumulative_error_pct"] == pytest.approx(-100.0)
    assert abs(g["train"]["cumulative_error_pct"]) < 0.1
    rows = read_tsv(tmp_path / "g.tsv")
    assert rows["lca_sum"] == pytest.approx(rows["loss_change"] + rows["error"])


def test_layers_planted_hurting_layer(tmp_path):
    lca, _, _ = make_run(tmp_path, hurt=1e-3)
    totals = analysis.layers(lca, tmp_path / "l.tsv", tmp_path / "c.tsv")
    n2 = 15
    assert totals["l2"] == pytest.approx(T * n2 * 1e-3 - 20 * 0.01 * n2, rel=0.02)  # hurts overall despite the dips
    assert totals["l2"] > 0
    assert totals["l1"] < 0
    rows = read_tsv(tmp_path / "l.tsv")
    assert rows["lca_val"] == pytest.approx(0.5 * rows["lca"], rel=1e-5)
    cum = read_tsv(tmp_path / "c.tsv")
    assert cum["train_l2"][-1] == pytest.approx(totals["l2"])


def test_oscillation_counts_known_periods(tmp_path):
    lca, traj, _ = make_run(tmp_path)
    o = analysis.oscillation(lca, tmp_path / "o.json", tmp_path / "o.tsv", tmp_path / "tr.tsv", window=(50, 200))
    rows = read_tsv(tmp_path / "o.tsv")
    turns = T // (PERIOD // 2)  # the sine peaks at t = 2.5 + 6k: 40 turns inside 0..T
    assert rows["weight_direction_changes"].tolist() == pytest.approx([turns, 0])
    assert rows["gradient_sign_changes"][0] == pytest.approx(2 * (T + 1) // PERIOD, abs=1)
    assert rows["gradient_sign_changes"][1] == 0
    share = 28 / K  # l1 holds 28 of the K parameters
    assert o["iterations_per_weight_direction_change"] == pytest.approx(T / (turns * share))
    assert o["traces"]["layer"] == "l2" and o["traces"]["window"] == [50, 200]
    traces = read_tsv(tmp_path / "tr.tsv")
    assert len(traces["iteration"]) == 150
    with h5py.File(lca, "a") as f:  # the same matrix as a run of checkpoints every 10 steps: segments, not steps
        f.attrs["steps"] = json.dumps(list(range(0, 10 * T + 1, 10)))
    o = analysis.oscillation(lca, tmp_path / "o.json", tmp_path / "o.tsv", tmp_path / "tr.tsv", window=(50, 200))
    assert o["skipped"].startswith("skipped: checkpoints every 10 steps") and o["traces"]["window"] == [0, T]  # every segment


def test_synchronization_finds_planted_moments(tmp_path):
    lca, traj, _ = make_run(tmp_path)
    s = analysis.synchronization(lca, tmp_path / "s.json", tmp_path / "m.tsv", top=20, max_shift=2, repeats=500)
    assert s["signals"]["lca"]["synchronized_total"] == 20
    # planted moments are 10 iterations apart: layers shifted apart by 1..4 never meet again
    assert s["signals"]["lca"]["p_value"] == pytest.approx(1 / 501)
    assert s["signals"]["lca"]["baseline_mean_per_group"] < 1
    assert s["signals"]["lca_by_class"]["synchronized_per_group"] == 20
    assert s["signals"]["lca_by_class"]["p_value"] == pytest.approx(1 / 501)
    # gradient norms are independent noise: no more synchronised than chance
    assert s["signals"]["gradient"]["p_value"] > 0.01
    moments = read_tsv(tmp_path / "m.tsv")
    lca_rows = moments["signal"] == "lca"
    assert sorted(set(moments["iteration"][lca_rows].astype(int))) == SYNC.tolist()


def test_noise_statistics(tmp_path):
    lca, _, _ = make_run(tmp_path, hurt=0.0)
    n = analysis.noise(lca, *(tmp_path / name for name in ("n.json", "i.tsv", "l.tsv", "h.tsv", "f.tsv")), sample_size=5000)
    with h5py.File(lca) as f:
        x = f["lca"][()].astype(np.float64)
    assert n["pct_helping_of_nonzero"] == pytest.approx(100 * (x < 0).sum() / (x != 0).sum())
    from scipy import stats as sps

    assert n["distribution"]["kurtosis"] == pytest.approx(sps.kurtosis(x[x != 0], fisher=False), rel=1e-6)
    # the planted dips are extreme outliers: a heavy-tailed sample
    assert n["distribution"]["kurtosis_test_p"] < 1e-6
    hist = read_tsv(tmp_path / "f.tsv")
    assert hist["parameters"].sum() == K


def test_the_neuron_figure_says_why_groups_have_none_in_lines_that_fit():
    """One line per reason, with its groups, wrapped: a Hugging Face model's long names ran off the figure."""
    from lcaflow.plots.neurons import skipped_note

    why = "skipped: its tensors do not share an output-unit axis (transformer.h.0.attn.c_attn.weight has 64 rows, transformer.h.0.attn.c_attn.bias 192)"
    note = skipped_note({"norms": "skipped: no weight with an output-unit axis (only vectors)", "attention": why, "mlp": why})
    assert note.startswith("no neurons in norms: no weight with an output-unit axis (only vectors)\nno neurons in attention, mlp: its")
    assert max(map(len, note.splitlines())) <= 130 and note.count("c_attn.bias 192") == 1


def test_neurons_and_specialization(tmp_path):
    lca, _, _ = make_run(tmp_path)
    out = [tmp_path / name for name in ("n.h5", "c.tsv", "s.tsv", "n.json")]
    result = analysis.neurons(lca, *out, n_top=5, nodes=3, per_node=3)
    with h5py.File(out[0]) as f, h5py.File(lca) as g:
        x = g["lca"][()].astype(np.float64)
        # neuron 1 of l1: its 6 weights (row 1) and its bias
        expected = x[:, 6:12].sum(1) + x[:, 25]
        assert f["neuron_lca/l1"][:, 1] == pytest.approx(expected, rel=1e-6, abs=1e-9)
        best = f["most_helpful"][()]
        totals = x[:, :28].sum(0)
        assert sorted(best.tolist()) == sorted(np.argsort(totals)[:5].tolist())
    # every neuron helps all 3 classes equally: top class holds a third of its help
    spec = read_tsv(out[2])
    helping = spec["help_total"] > 0
    assert spec["top1_share"][helping] == pytest.approx(1 / 3)
    assert result["specialization"]["l1"]["pct_neurons_top1_over_80pct"] == 0


def test_experiment_detects_a_planted_hurting_layer(tmp_path):
    runs = [make_run(tmp_path, seed=s, hurt=1e-3, final_loss=0.5 + 0.01 * s) for s in range(4)]
    frozen = [make_run(tmp_path, seed=10 + s, hurt=1e-3, final_loss=0.3 + 0.01 * s) for s in range(4)]
    layer_tsvs = []
    for k, (lca, _, _) in enumerate(runs + frozen):
        analysis.layers(lca, tmp_path / f"layers{k}.tsv", tmp_path / f"cum{k}.tsv")
        layer_tsvs.append(tmp_path / f"layers{k}.tsv")
    names = [f"r{k}" for k in range(4)]
    e = experiments.experiment("normal", names, layer_tsvs[:4], [r[2] for r in runs], tmp_path / "e.tsv", tmp_path / "e.json")
    assert e["layers"]["l2"]["verdict"] == "hurts" and e["layers"]["l2"]["p_value"] < 1e-4
    assert e["layers"]["l1"]["verdict"] == "helps"
    a = experiments.collect(names, layer_tsvs[:4], [r[2] for r in runs])
    b = experiments.collect([f"f{k}" for k in range(4)], layer_tsvs[4:], [r[2] for r in frozen])
    rows = experiments.compare("normal", "frozen", a, b, tmp_path / "cmp.tsv")
    i = rows["metric"].index("final_train_loss")
    assert rows["p_value"][i] < 1e-4 and rows["mean_a"][i] > rows["mean_b"][i]
    plots.experiment_figure(tmp_path / "e.tsv", tmp_path / "e.json", tmp_path / "e.png", "normal", tmp_path / "cmp.tsv")
    assert (tmp_path / "e.png").stat().st_size > 10_000


def _all_outputs(tmp_path, lca, traj):
    tmp_path.mkdir()
    out = {}
    out["grounding"] = analysis.grounding(lca, tmp_path / "g.tsv")
    (tmp_path / "grounding.json").write_text(json.dumps(out["grounding"]))  # as the assemble stage writes it
    out["noise"] = analysis.noise(lca, *(tmp_path / n for n in ("n.json", "i.tsv", "l.tsv", "h.tsv", "f.tsv")), sample_size=500)
    out["oscillation"] = analysis.oscillation(lca, tmp_path / "o.json", tmp_path / "o.tsv", tmp_path / "tr.tsv")
    out["sync"] = analysis.synchronization(lca, tmp_path / "s.json", tmp_path / "m.tsv", repeats=200)
    out["neurons"] = analysis.neurons(lca, tmp_path / "n.h5", tmp_path / "c.tsv", tmp_path / "s.tsv", tmp_path / "nn.json", n_top=5, nodes=3, per_node=3)
    out["tables"] = {name: read_tsv(tmp_path / name) for name in ("i.tsv", "l.tsv", "f.tsv", "o.tsv", "tr.tsv", "m.tsv", "c.tsv", "s.tsv")}
    with h5py.File(tmp_path / "n.h5") as f:
        out["neuron_lca"] = f["neuron_lca"][json.loads(f.attrs["layers"])[0]][()]
        out["traces"] = f["param_traces"][()]
    return out


def _assert_close(a, b, path="result"):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_close(a[k], b[k], f"{path}.{k}")
    elif (isinstance(a, np.ndarray) and a.dtype.kind in "US") or (isinstance(a, list) and a and isinstance(a[0], str)):
        assert list(a) == list(b), path
    elif isinstance(a, (float, int, np.ndarray, list)) and not isinstance(a, bool):
        np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=1e-9, atol=1e-15, err_msg=path)
    else:
        assert a == b, path


def test_streaming_in_small_blocks_gives_the_same_results(tmp_path, monkeypatch):
    """Analyses read T x K matrices in blocks: tiny blocks (7 rows) must give what one block gives."""
    import lcaflow.io

    lca, traj, _ = make_run(tmp_path)
    whole = _all_outputs(tmp_path / "whole", lca, traj)
    monkeypatch.setattr(lcaflow.io, "BLOCK_BYTES", 7 * K * 4)
    blocks = _all_outputs(tmp_path / "blocks", lca, traj)
    # the uniform sample (and the Weibull fit on it) depends on how the stream is cut; the rest must not
    for result in (whole, blocks):
        result["noise"]["distribution"].pop("weibull")
    _assert_close(whole, blocks)


CONV_LAYOUT = Layout(
    names=("conv.weight", "conv.bias", "bn.weight", "bn.bias", "fc.weight"),
    shapes=((4, 3, 2, 2), (4,), (4,), (4,), (2, 64)),
    offsets=(0, 48, 52, 56, 60),
    layer_of_param=("conv", "conv", "conv", "conv", "fc"),
    layers=("conv", "fc"),
)
ONE_LAYER = Layout(names=("w", "b"), shapes=((3, 4), (3,)), offsets=(0, 12), layer_of_param=("w", "w"), layers=("w",))


def write_generic(tmp_path, layout, T, lca):
    """A complete lca.h5 + trajectory.h5 pair for any layout and LCA matrix (values otherwise simple)."""
    K, L, C = layout.num_params, len(layout.layers), 2
    index = layout.layer_index()
    per_layer = np.stack([lca[:, index == j].sum(1) for j in range(L)], axis=1) if T else np.zeros((0, L))
    lca_path, traj_path = tmp_path / "lca.h5", tmp_path / "traj.h5"
    with h5py.File(lca_path, "w") as f:
        f["lca"], f["lca_val"] = lca.astype(np.float32), lca.astype(np.float32)
        loss = np.concatenate([[1.0], 1.0 + np.cumsum(lca.sum(1))])
        f["loss"], f["loss_val"] = loss, loss
        f["error"], f["error_val"] = np.zeros(T), np.zeros(T)
        f["lca_first_order"], f["lca_first_order_val"] = np.diff(loss), np.diff(loss)
        f["num_splits"] = np.ones(T, dtype=np.int32)
        f["lca_layer"], f["lca_val_layer"] = per_layer, per_layer
        f["lca_class_layer"] = np.repeat(per_layer[:, None] / C, C, axis=1)
        plant_reductions(f, layout, lca, np.zeros((T + 1, K)), np.repeat(lca.sum(0)[None] / C, C, axis=0), np.zeros((T + 1, K)))
        f["grad_norm_layer"] = np.ones((T + 1, L))
        f["grad_norm_class_layer"] = np.ones((T + 1, C, L))
        f["classes"] = np.array(["a", "b"], dtype=object)
        layout.to_h5(f.create_group("layout"))
        f.attrs["lca_config"] = json.dumps({"tolerance": 1e-3})
    with h5py.File(traj_path, "w") as f:
        f["params"] = np.zeros((T + 1, K), dtype=np.float32)  # nothing ever moves: no turns at all
    return lca_path, traj_path


@pytest.mark.parametrize(
    ("layout", "T", "kind"),
    [(CONV_LAYOUT, 6, "random"), (ONE_LAYER, 2, "random"), (ONE_LAYER, 1, "random"), (CONV_LAYOUT, 5, "zeros")],
    ids=["conv", "one-layer-T2", "one-layer-T1", "all-zero"],
)
def test_every_analysis_and_figure_survives_edge_cases(tmp_path, layout, T, kind):
    rng = np.random.default_rng(0)
    lca_values = rng.normal(0, 1e-3, (T, layout.num_params)) if kind == "random" else np.zeros((T, layout.num_params))
    lca, traj = write_generic(tmp_path, layout, T, lca_values)
    out = _all_outputs(tmp_path / "out", lca, traj)
    analysis.layers(lca, tmp_path / "out" / "layers.tsv", tmp_path / "out" / "cum.tsv")
    if kind == "zeros":
        assert out["noise"]["pct_helping_of_nonzero"] is None  # no parameter ever helped or hurt: no share, not 0%
    assert out["oscillation"]["iterations_per_weight_direction_change"] is None  # never turned
    d, f = tmp_path / "out", tmp_path / "fig"
    f.mkdir()
    plots.grounding_figure(d / "g.tsv", d / "grounding.json", f / "g.png", "r")
    plots.noise_figure(d / "i.tsv", d / "l.tsv", d / "h.tsv", d / "f.tsv", d / "n.json", f / "n.png", "r")
    plots.heavy_tail_figure(d / "h.tsv", d / "n.json", f / "h.png", "r")
    plots.oscillation_figure(d / "o.tsv", d / "tr.tsv", d / "o.json", f / "o.png", "r")
    plots.layers_figure(d / "layers.tsv", d / "cum.tsv", f / "l.png", "r")
    plots.sync_figure(d / "m.tsv", d / "s.json", f / "s.png", "r")
    plots.sync_classes_figure(d / "m.tsv", d / "s.json", f / "sc.png", "r")
    plots.neurons_figure(d / "n.h5", f / "nn.png", "r")
    plots.params_figure(d / "n.h5", f / "p.png", "r")
    plots.correlation_figure(d / "nn.json", f / "c.png", "r")
    plots.specialization_figure(d / "nn.json", d / "n.h5", f / "sp.png", "r")
    for png in f.iterdir():
        assert png.read_bytes()[:4] == b"\x89PNG", png
    for path in set(d.glob("*.json")) - {d / "grounding.json"}:  # the assemble stage's file writes NaN for a zero loss change
        assert not any(word in path.read_text() for word in ("NaN", "Infinity")), path.name  # JSON has no NaN


def test_grounding_of_an_adaptive_run_reports_the_trapezoid(tmp_path):
    """An lca.h5 of adaptive quadrature: iterations by the trapezoid (num_splits 0) with their removed error,
    the validation split's own panel counts; the table, summary and figure show them."""
    lca, _, _ = make_run(tmp_path)
    rng = np.random.default_rng(5)
    splits = np.where(np.arange(T) % 4 == 0, 1, 0).astype(np.int32)  # every 4th iteration needed its midpoint
    trapezoid = rng.uniform(-4e-4, 4e-4, T)
    trapezoid[splits == 1] = 3e-3
    with h5py.File(lca, "r+") as f:
        f["num_splits"][...] = splits
        f["num_splits_val"] = np.where(np.arange(T) % 2 == 0, 1, 0).astype(np.int32)
        f["trapezoid_error"], f["trapezoid_error_val"] = trapezoid, trapezoid / 2
        f.attrs["lca_config"] = json.dumps({"tolerance": 1e-3, "quadrature": "adaptive"})
    g = analysis.grounding(lca, tmp_path / "g.tsv")
    assert g["quadrature"] == "adaptive" and g["iterations_trapezoid"] == 180
    assert g["evaluations_per_iteration"] == pytest.approx(1.25) and g["val_evaluations_per_iteration"] == pytest.approx(1.5)
    assert g["train"]["trapezoid_error_removed"] == pytest.approx(trapezoid[splits == 0].sum())
    assert g["val"]["trapezoid_error_removed"] == pytest.approx(trapezoid[1::2].sum() / 2)
    rows = read_tsv(tmp_path / "g.tsv")
    assert np.allclose(rows["trapezoid_error"], trapezoid, rtol=1e-6) and np.array_equal(rows["num_splits_val"], np.arange(T) % 2 == 0)
    (tmp_path / "grounding.json").write_text(json.dumps({**g, "train_passes_per_iteration": 1.25}))
    plots.grounding_figure(tmp_path / "g.tsv", tmp_path / "grounding.json", tmp_path / "g.png", "r")
    assert (tmp_path / "g.png").stat().st_size > 10_000


def test_the_grounding_figure_titles_fit_with_a_long_run_name(tmp_path, monkeypatch):
    """A run name as long as `gpt2_trainer_checkpoints` pushed the left panel's title past the figure's edge."""
    from lcaflow.plots import style

    lca, _, _ = make_run(tmp_path)
    g = analysis.grounding(lca, tmp_path / "g.tsv")
    (tmp_path / "grounding.json").write_text(json.dumps(g))
    outside = []

    def check(fig, path, dpi=None):
        fig.canvas.draw()
        box = fig.bbox
        for text in [ax.title for ax in fig.axes]:
            extent = text.get_window_extent()
            if extent.x0 < box.x0 - 1 or extent.x1 > box.x1 + 1:
                outside.append(text.get_text())

    monkeypatch.setattr(style, "save", check)
    plots.grounding_figure(tmp_path / "g.tsv", tmp_path / "grounding.json", tmp_path / "g.png", "gpt2_trainer_checkpoints")
    assert not outside, outside
