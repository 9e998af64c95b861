"""Gradients + assembly on a short real Fashion-MNIST run: grounding, per-class sums, bad inputs."""

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import SignChangeCounter, tiny_lca, tiny_run

from lcaflow.assemble import assemble
from lcaflow.chunkfile import n_chunks
from lcaflow.errors import ConfigError, CorruptFileError, GroundingError
from lcaflow.gradients import compute_chunk
from lcaflow.layout import Layout
from lcaflow.models import build_model, layout_of
from lcaflow.training import train


def run_lca(tmp, name, run, lca, trajectory, data):
    chunks = []
    for k in range(n_chunks(run["iterations"], lca["iterations_per_job"])):
        chunks.append(str(tmp / f"{name}_chunk{k}.h5"))
        compute_chunk("r", run, lca, k, str(trajectory), str(data), chunks[-1])
    out = tmp / f"{name}_lca.h5"
    report = assemble("r", run, lca, str(trajectory), chunks, str(out), str(tmp / f"{name}_grounding.json"))
    return out, report, chunks


@pytest.fixture(scope="module")
def lca_run(tmp_path_factory, fashion_data_file):
    import torch

    torch.set_num_threads(2)
    tmp = tmp_path_factory.mktemp("lca")
    run = tiny_run(optimizer={"name": "adam", "lr": 0.002, "weight_decay": 1e-4})
    lca = tiny_lca(store_gradients=True)
    trajectory = tmp / "trajectory.h5"
    train("r", run, str(fashion_data_file), str(trajectory), str(tmp / "ckpt"))
    out, report, chunks = run_lca(tmp, "a", run, lca, trajectory, fashion_data_file)
    return dict(tmp=tmp, run=run, lca=lca, trajectory=trajectory, out=out, report=report, chunks=chunks, data=fashion_data_file)


def test_lca_is_grounded_on_a_real_run(lca_run):
    report = lca_run["report"]
    tol = lca_run["lca"]["tolerance"]
    assert report["iterations_over_tolerance"] == 0
    assert report["train"]["max_abs_iteration_error"] <= tol and report["val"]["max_abs_iteration_error"] <= tol
    assert abs(report["train"]["cumulative_error_pct"]) < 1.0
    # first order is far worse, as in the paper's Table S1
    assert abs(report["train"]["first_order_cumulative_error_pct"]) > 10 * abs(report["train"]["cumulative_error_pct"])
    with h5py.File(lca_run["out"]) as f:
        lca, loss = f["lca"][()], f["loss"][()]
        assert lca.shape == (12, 84060) and lca.dtype == np.float32
        assert np.abs(lca.sum(1, dtype=np.float64) - np.diff(loss)).max() <= tol
        assert np.allclose(f["error"][()], lca.sum(1, dtype=np.float64) - np.diff(loss), atol=1e-6)
        assert f["grad"].shape == (13, 84060)
        assert json.loads(f.attrs["grounding"]) == report
    assert json.loads((lca_run["tmp"] / "a_grounding.json").read_text()) == report


def _neuron_sums(values, layout, group):
    """(n, K) -> (n, units) summed over each output unit's kernel row, bias and norm entries."""
    members = [j for j, owner in enumerate(layout.layer_of_param) if owner == group]
    return sum(values[:, layout.offsets[j] : layout.offsets[j] + layout.sizes[j]].reshape(len(values), layout.shapes[j][0], -1).sum(2) for j in members)


def test_per_class_lca_sums_to_the_data_loss_allocation(lca_run):
    with h5py.File(lca_run["out"]) as f:
        lca = f["lca"][()].astype(np.float64)
        class_layer = f["lca_class_layer"][()]
        class_neuron = {g: f[f"lca_class_neuron/{g}"][()] for g in ("fc1", "fc2", "fc3")}
        loss_class, loss = f["loss_class"][()], f["loss"][()]
        layout = Layout.from_h5(f["layout"])
    with h5py.File(lca_run["trajectory"]) as f:
        theta = f["params"][()].astype(np.float64)
        params_sq = (theta**2).sum(1)
    assert class_layer.shape == (12, 10, 3) and class_neuron["fc1"].shape == (10, 100)
    # the weight-decay term 0.5*wd*|theta|^2 belongs to no class: total = classes + regulariser
    reg_change = 0.5 * 1e-4 * np.diff(params_sq)
    assert np.allclose(class_layer.sum((1, 2)) + reg_change, lca.sum(1), atol=2e-6)
    reg_per_param = 1e-4 * 0.5 * (theta[1:] ** 2 - theta[:-1] ** 2)  # exact for the linear gradient wd*theta
    for g, per_class in class_neuron.items():
        expected = _neuron_sums(lca.sum(0, keepdims=True) - reg_per_param.sum(0, keepdims=True), layout, g)[0]
        assert np.allclose(per_class.sum(0), expected, atol=1e-6), g
    assert np.allclose(loss_class.sum(1) + 0.5 * 1e-4 * params_sq, loss, atol=1e-9)


def test_reductions_match_the_stored_matrices(lca_run):
    """What the gradient jobs reduce for every parameter equals what the old analyses computed from the
    stored float32 matrices."""

    with h5py.File(lca_run["out"]) as f:
        lca32, grad32 = f["lca"][()], f["grad"][()]
        r = {key: f[key][()] for key in ("helped_count", "hurt_count", "lca_total", "helping_layer", "hurting_layer", "stored_row_sum", "row_std", "row_kurtosis", "tail_share", "grad_sign_changes", "grad_trace", "trace_index")}
        neuron = {g: f[f"lca_neuron/{g}"][()] for g in ("fc1", "fc2", "fc3")}
        layout = Layout.from_h5(f["layout"])
    x = lca32.astype(np.float64)
    assert np.array_equal(r["helped_count"], (lca32 < 0).sum(0)) and np.array_equal(r["hurt_count"], (lca32 > 0).sum(0))
    assert np.allclose(r["lca_total"], x.sum(0), rtol=1e-6, atol=1e-12)
    layer_index = layout.layer_index()
    assert np.array_equal(r["helping_layer"][:, 2], (lca32[:, layer_index == 2] < 0).sum(1))
    assert np.array_equal(r["hurting_layer"][:, 0], (lca32[:, layer_index == 0] > 0).sum(1))
    assert np.allclose(r["stored_row_sum"], x.sum(1), rtol=1e-12, atol=0)
    for g in neuron:
        assert np.allclose(neuron[g], _neuron_sums(x, layout, g), rtol=1e-9, atol=1e-15)
    row = x[5][x[5] != 0]
    m2 = ((row - row.mean()) ** 2).mean()
    assert r["row_std"][5] == pytest.approx(np.sqrt(m2), rel=1e-9)
    assert r["row_kurtosis"][5] == pytest.approx(((row - row.mean()) ** 4).mean() / m2**2, rel=1e-9)
    assert r["tail_share"][5] == pytest.approx(np.abs(row)[np.abs(row) > 3 * np.sqrt(m2)].sum() / np.abs(row).sum(), rel=1e-9)
    counter = SignChangeCounter(grad32.shape[1])  # two chunks joined at their shared point
    counter.update(grad32)
    assert np.array_equal(r["grad_sign_changes"], counter.changes) and counter.changes.sum() > 0
    assert np.array_equal(r["grad_trace"], grad32[:, r["trace_index"]]) and r["trace_index"].size == 500
    with h5py.File(lca_run["trajectory"]) as f, h5py.File(lca_run["out"]) as g:
        theta = f["params"][()]
        steps = np.diff(theta.astype(np.float64), axis=0)
        turns = SignChangeCounter(steps.shape[1])
        turns.update(steps)
        assert np.array_equal(g["step_sign_changes"][()], turns.changes) and turns.changes.sum() > 0
        motion = np.sqrt(np.stack([(steps[:, layer_index == j] ** 2).sum(1) for j in range(3)], axis=1))
        assert np.allclose(g["layer_motion"][()], motion, rtol=1e-12)
        assert np.array_equal(g["param_trace"][()], theta[:, r["trace_index"]])


def test_job_size_does_not_change_the_result(lca_run):
    lca12 = dict(lca_run["lca"], iterations_per_job=12)
    out, report, _ = run_lca(lca_run["tmp"], "b", lca_run["run"], lca12, lca_run["trajectory"], lca_run["data"])
    with h5py.File(out) as one, h5py.File(lca_run["out"]) as two:
        for key in ("lca", "loss", "error", "num_splits", "lca_class_layer", "helped_count", "grad_sign_changes", "grad"):
            assert np.array_equal(one[key][()], two[key][()]), key


def _max_relative_difference(a, b) -> float:
    return float(np.abs(a.astype(np.float64) - b).max() / np.abs(b).max())


def _assert_same_lca(path_a, path_b, trajectory, sums_only=False):
    """Same to 1e-6 relative: LCA_i = delta_i * (mean gradient)_i, and the mean gradients agree to 1e-6 of
    their largest entry (comparing LCA_i to the largest LCA would amplify rounding wherever a parameter
    moved far on a small gradient); sums over layers, classes and iterations agree to 1e-6 of their largest.
    `sums_only`: a new memory layout picks other kernels, whose rounding can resolve a near-tie at a kink of
    ReLU or max pool the other way, moving one example's share (1/N, here N = 100) of a few parameters'
    gradients: sums then agree to 1e-5."""
    with h5py.File(trajectory) as f:
        delta = np.diff(f["params"][()].astype(np.float64), axis=0)
    with h5py.File(path_a) as a, h5py.File(path_b) as b:
        assert np.array_equal(a["num_splits"][()], b["num_splits"][()])
        for key in ("lca",):
            x, y = a[key][()].astype(np.float64), b[key][()].astype(np.float64)
            moved = delta != 0
            assert np.array_equal(x[~moved], y[~moved]), key  # exact zeros stay exact
            if not sums_only:
                assert _max_relative_difference(x[moved] / delta[moved], y[moved] / delta[moved]) <= 1e-6, key
        for key in ("lca_layer", "lca_val_layer", "lca_class_layer", "loss", "loss_val"):
            assert _max_relative_difference(a[key][()], b[key][()]) <= (1e-5 if sums_only else 1e-6), key


def test_speed_and_storage_settings_do_not_change_the_lca(lca_run):
    fast = dict(lca_run["lca"], compute_batch=16, channels_last=True, compression="lzf")
    out, report, chunks = run_lca(lca_run["tmp"], "fast", lca_run["run"], fast, lca_run["trajectory"], lca_run["data"])
    assert report["iterations_over_tolerance"] == 0
    _assert_same_lca(out, lca_run["out"], lca_run["trajectory"])
    with h5py.File(chunks[0]) as a, h5py.File(lca_run["chunks"][0]) as b:
        assert a["lca"].compression == "lzf" and b["lca"].compression is None  # the chunks hold the one copy
    with h5py.File(out) as a, h5py.File(lca_run["out"]) as b:
        assert _max_relative_difference(a["grad"][()], b["grad"][()]) <= 1e-6


def _one_line_error(exc_info, path):
    text = str(exc_info.value)
    assert "\n" not in text and str(path) in text
    return text


def test_truncated_trajectory_is_named(lca_run):
    bad = lca_run["tmp"] / "truncated.h5"
    data = lca_run["trajectory"].read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError) as err:
        compute_chunk("r", lca_run["run"], lca_run["lca"], 0, str(bad), str(lca_run["data"]), str(lca_run["tmp"] / "x.h5"))
    _one_line_error(err, bad)
    assert not (lca_run["tmp"] / "x.h5").exists()


def test_garbage_and_missing_files_are_named(lca_run):
    garbage = lca_run["tmp"] / "garbage.h5"
    garbage.write_bytes(b"not hdf5 at all" * 100)
    for path in (garbage, lca_run["tmp"] / "missing.h5"):
        with pytest.raises(CorruptFileError) as err:
            compute_chunk("r", lca_run["run"], lca_run["lca"], 0, str(path), str(lca_run["data"]), str(lca_run["tmp"] / "x.h5"))
        _one_line_error(err, path)


def test_trajectory_from_another_config_is_refused(lca_run):
    other = dict(lca_run["run"], seed=7)
    with pytest.raises(ConfigError) as err:
        compute_chunk(
            "r", other, lca_run["lca"], 0, str(lca_run["trajectory"]), str(lca_run["data"]), str(lca_run["tmp"] / "x.h5")
        )
    assert "different config" in _one_line_error(err, lca_run["trajectory"])


def test_chunks_swapped_truncated_or_foreign_are_refused(lca_run):
    tmp, chunks = lca_run["tmp"], lca_run["chunks"]
    args = ("r", lca_run["run"], lca_run["lca"], str(lca_run["trajectory"]))
    with pytest.raises(CorruptFileError) as err:  # wrong order: chunk 1 where chunk 0 belongs
        assemble(*args, [chunks[1], chunks[0]], str(tmp / "o.h5"), str(tmp / "o.json"))
    assert "covers iterations" in _one_line_error(err, chunks[1])
    truncated = tmp / "truncated_chunk.h5"
    data = open(chunks[1], "rb").read()
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(CorruptFileError) as err:
        assemble(*args, [chunks[0], str(truncated)], str(tmp / "o.h5"), str(tmp / "o.json"))
    _one_line_error(err, truncated)
    foreign = tmp / "foreign_chunk.h5"
    shutil.copy(chunks[1], foreign)
    with h5py.File(foreign, "r+") as f:
        f.attrs["trajectory_fingerprint"] = "0123456789abcdef"
    with pytest.raises(CorruptFileError) as err:
        assemble(*args, [chunks[0], str(foreign)], str(tmp / "o.h5"), str(tmp / "o.json"))
    assert "belongs to run" in _one_line_error(err, foreign)
    assert not (tmp / "o.h5").exists() and not (tmp / "o.h5.partial").exists()


def test_assembly_fails_loudly_when_the_cumulative_error_is_too_large(lca_run):
    tmp = lca_run["tmp"]
    strict = dict(lca_run["lca"], max_cumulative_error_pct=1e-12)
    with pytest.raises(GroundingError, match="cumulative Simpson error .* exceeds lca.max_cumulative_error_pct"):
        assemble(
            "r", lca_run["run"], strict, str(lca_run["trajectory"]), lca_run["chunks"], str(tmp / "g.h5"), str(tmp / "g.json")
        )
    assert not (tmp / "g.h5").exists() and not (tmp / "g.json").exists()


def test_non_finite_full_set_loss_names_the_iteration(lca_run):
    broken = lca_run["tmp"] / "nan_trajectory.h5"
    shutil.copy(lca_run["trajectory"], broken)
    with h5py.File(broken, "r+") as f:
        row = f["params"][4]
        row[:100] = np.inf
        f["params"][4] = row
    from lcaflow.errors import DivergenceError

    with pytest.raises(DivergenceError, match="not finite at theta_4"):
        compute_chunk("r", lca_run["run"], lca_run["lca"], 0, str(broken), str(lca_run["data"]), str(lca_run["tmp"] / "n.h5"))
    assert not (lca_run["tmp"] / "n.h5").exists()


def test_disk_check_states_the_need_before_training(tmp_path):
    from lcaflow.cost.disk import by_kind, check_free_space, run_files
    from lcaflow.cost.size import RunSize
    from lcaflow.errors import LCAError
    from lcaflow.spec import RunSpec

    def need(run, **lca):
        spec = RunSpec.of("r", run)
        return by_kind(run_files(spec, RunSize.of(spec), tiny_lca(**lca), str(tmp_path)))

    # 10^7 iterations (3.4 TB) in 306 gradient jobs: the plan lists every job's file, so few jobs keep it fast
    with pytest.raises(LCAError) as err:
        check_free_space("r", need(tiny_run(iterations=10**7), iterations_per_job=32767), tmp_path / "not-yet" / "results")
    text = str(err.value)
    assert "\n" not in text and "needs about" in text and "free" in text and "trajectory" in text
    check_free_space("r", need(tiny_run()), tmp_path)  # a small run fits


def test_predicted_disk_matches_the_files(lca_run):
    from lcaflow.cost.disk import by_kind, run_files
    from lcaflow.cost.size import RunSize
    from lcaflow.spec import RunSpec

    spec = RunSpec.of("r", lca_run["run"])
    predicted = by_kind(run_files(spec, RunSize.of(spec), lca_run["lca"], ""))
    real = {
        "trajectory": lca_run["trajectory"].stat().st_size,
        "chunks": sum(Path(c).stat().st_size for c in lca_run["chunks"]),
        "lca": lca_run["out"].stat().st_size,
    }
    for key, size in real.items():
        assert abs(predicted[key] - size) <= 0.1 * size, (key, predicted[key], size)


@pytest.mark.parametrize(
    ("architecture", "lr", "frozen"),
    [("lenet", 0.02, "fc2"), ("resnet20", 0.01, "conv1")],  # dropout; batch norm (a small rate keeps refinement cheap)
)
def test_convolutional_networks_are_grounded_and_frozen_layers_get_no_credit(tmp_path, fashion_data_file, architecture, lr, frozen):
    """Dropout off and batch norm on fixed class-sorted chunks keep L a function of theta: the LCA of
    conv nets adds up to the real loss change; a frozen layer never moves, so its LCA is exactly 0."""
    import torch

    torch.set_num_threads(2)
    run = tiny_run(
        architecture=architecture,
        optimizer={"name": "sgd", "lr": lr, "momentum": 0.9},
        iterations=2,
        batch_size=50,
        train_size=100,
        val_size=50,
        layers={frozen: {"freeze": True}},
    )
    lca = tiny_lca(iterations_per_job=2, compute_batch=8, channels_last=True)
    trajectory = tmp_path / "trajectory.h5"
    train("r", run, str(fashion_data_file), str(trajectory), str(tmp_path / "ckpt"))
    out, report, _ = run_lca(tmp_path, architecture, run, lca, trajectory, fashion_data_file)
    assert report["iterations_over_tolerance"] == 0
    assert report["train"]["max_abs_iteration_error"] <= lca["tolerance"]
    # speed settings off: the same LCA up to float32 rounding (batch norm: its chunk is never split, so bitwise)
    plain_out, _, _ = run_lca(tmp_path, "plain", run, dict(lca, compute_batch=10_000, channels_last=False), trajectory, fashion_data_file)
    batched_out, _, _ = run_lca(tmp_path, "batched", run, dict(lca, channels_last=False), trajectory, fashion_data_file)
    if architecture == "resnet20":
        with h5py.File(batched_out) as a, h5py.File(plain_out) as b:
            assert np.array_equal(a["lca"][()], b["lca"][()])
    else:
        _assert_same_lca(batched_out, plain_out, trajectory)
        _assert_same_lca(out, plain_out, trajectory, sums_only=True)
    with h5py.File(out) as f:
        layers = list(f["layout/layers"].asstr()[()])
        per_layer = f["lca_layer"][()]
        assert np.all(per_layer[:, layers.index(frozen)] == 0)
        assert np.abs(per_layer).sum() > 0


def test_adaptive_quadrature_against_simpson_on_a_real_run(lca_run):
    """Trapezoid-first quadrature on the same trajectory, its error removed in proportion to |LCA| (no midpoint
    sample): fewer evaluations, every row still sums to its real loss change, and per-layer, per-class and
    per-parameter LCA close to Simpson's."""
    adaptive = dict(lca_run["lca"], quadrature="adaptive", trapezoid_tolerance=lca_run["lca"]["tolerance"], midpoint_sample=0)
    out, report, _ = run_lca(lca_run["tmp"], "adaptive", lca_run["run"], adaptive, lca_run["trajectory"], lca_run["data"])
    simpson = lca_run["report"]
    assert simpson["quadrature"] == "simpson" and report["quadrature"] == "adaptive" and "iterations_trapezoid" not in simpson
    assert 0 < report["iterations_trapezoid"] < report["iterations"], "the short run must exercise both rules"
    assert report["iterations_over_tolerance"] == 0
    assert abs(report["train"]["cumulative_error_pct"]) <= adaptive["max_cumulative_error_pct"]
    with h5py.File(out) as a, h5py.File(lca_run["out"]) as s, h5py.File(lca_run["trajectory"]) as t:
        splits, simpson_splits, trap = a["num_splits"][()], s["num_splits"][()], a["trapezoid_error"][()]
        by_trapezoid = splits == 0
        # evaluations: 1 end point, plus 1 midpoint (2n - 1 points for n panels) where Simpson was needed
        assert simpson["evaluations_per_iteration"] == pytest.approx(1 + np.mean(2 * simpson_splits - 1))
        saved = np.sum(2 * simpson_splits[by_trapezoid] - 1) / len(splits)
        assert report["evaluations_per_iteration"] == pytest.approx(simpson["evaluations_per_iteration"] - saved)
        # the trapezoid's error is that of delta * (g_t + g_t+1) / 2 (here from the stored float32 gradients)
        delta = np.diff(t["params"][()].astype(np.float64), axis=0)
        grad = s["grad"][()].astype(np.float64)
        plain = (delta * (grad[:-1] + grad[1:]) / 2).sum(1) - np.diff(s["loss"][()])
        assert np.allclose(trap, plain, atol=1e-6)
        assert np.all(np.abs(trap[by_trapezoid]) <= adaptive["trapezoid_tolerance"]) and np.all(np.abs(trap[~by_trapezoid]) > 0)
        assert np.abs(a["error"][()][by_trapezoid]).max() < 1e-9  # what the corrected trapezoid removed
        x, y = a["lca"][()].astype(np.float64), s["lca"][()].astype(np.float64)
        # where the midpoint was evaluated, the two methods compute the same thing
        assert np.array_equal(x[~by_trapezoid], y[~by_trapezoid])
        both = (x != 0) & (y != 0)
        assert np.mean(np.sign(x[both]) != np.sign(y[both])) < 0.02
        assert np.corrcoef(x.sum(0), y.sum(0))[0, 1] > 0.999
        layer = a["lca_layer"][()].sum(0) / s["lca_layer"][()].sum(0) - 1
        assert np.abs(layer).max() < 0.01, layer
        assert np.allclose(a["lca_class_layer"][()].sum((0, 2)), s["lca_class_layer"][()].sum((0, 2)), rtol=0.01)
        # every class row sums to its class's real loss change (the regulariser belongs to no class)
        class_change = np.diff(a["loss_class"][()], axis=0)
        assert np.allclose(a["lca_class_layer"][()].sum(2)[by_trapezoid], class_change[by_trapezoid], atol=1e-9)


def test_the_midpoint_sample_puts_the_trapezoid_error_where_simpson_does_on_a_real_run(tmp_path, fashion_data_file):
    """A window of a real run in the default run's protocol (SGD with momentum, batch 250, 10,000 images,
    iterations 180-239: one gradient job) by Simpson, by adaptive quadrature with a midpoint sample of every
    example (its correction is then Simpson's own) and by the |LCA| rule at the same trapezoid tolerance:
    through the real objective's sample chunks, scaling and row spreading, the sample's per-tensor totals are
    within 1% of Simpson's and closer than the |LCA| rule's, tensor by tensor; where the midpoint was needed both
    compute Simpson's rule; every accepted row sums to its real loss change, per class too."""
    import torch

    torch.set_num_threads(2)
    run = tiny_run(batch_size=250, iterations=240, train_size=10000, val_size=500, checkpoint_every=120)
    trajectory = tmp_path / "trajectory.h5"
    train("r", run, str(fashion_data_file), str(trajectory), str(tmp_path / "ckpt"))
    settings = {
        "simpson": tiny_lca(eval_chunk_size=1000, iterations_per_job=60),
        "sample": tiny_lca(eval_chunk_size=1000, iterations_per_job=60, quadrature="adaptive", midpoint_sample=10_000),
        "lca": tiny_lca(eval_chunk_size=1000, iterations_per_job=60, quadrature="adaptive", trapezoid_tolerance=2e-3),
    }
    assert settings["sample"]["trapezoid_tolerance"] == 2 * settings["simpson"]["tolerance"]  # its default with a sample
    assert settings["lca"]["midpoint_sample"] == 0  # the default
    rows = {}
    for name, lca in settings.items():
        path = tmp_path / f"{name}.h5"
        compute_chunk("r", run, lca, 3, str(trajectory), str(fashion_data_file), str(path))
        with h5py.File(path) as f:
            rows[name] = f["lca"][()].astype(np.float64)
            if name == "sample":
                by_trapezoid = f["num_splits"][()] == 0
                assert f.attrs["midpoint_sample_fraction"] == 1.0
                assert f.attrs["train_sample_passes"] == np.isfinite(f["trapezoid_residual"][()]).sum() > 0.8 * 60
                assert np.all(np.abs(f["trapezoid_residual"][()][by_trapezoid]) <= lca["tolerance"])
                assert np.abs(f["error"][()][by_trapezoid]).max() < 1e-9
                class_change = np.diff(f["loss_class"][()], axis=0)
                assert np.allclose(f["lca_class_layer"][()].sum(2)[by_trapezoid], class_change[by_trapezoid], atol=1e-9)
    x, y = rows["sample"], rows["simpson"]
    # the same Simpson where the midpoint was needed (to float32 rounding: the sample cuts the classes' chunks)
    assert np.abs(x[~by_trapezoid] - y[~by_trapezoid]).max() <= 1e-5 * np.abs(y).max()
    layout = layout_of(build_model("mnist_fc", (1, 28, 28), 10, seed=0))
    for name, off, size in zip(layout.names, layout.offsets, layout.sizes):
        totals = {k: v[:, off : off + size].sum() for k, v in rows.items()}
        assert abs(totals["sample"] - totals["simpson"]) <= 0.01 * abs(totals["simpson"]), (name, totals)
        assert abs(totals["sample"] - totals["simpson"]) < abs(totals["lca"] - totals["simpson"]), (name, totals)
