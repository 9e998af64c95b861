"""Storage forms of the LCA matrix on a short real run: one copy (virtual datasets over the chunks),
bfloat16, a stratified sample, and re-storing a float32 run in those forms."""

import json
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import tiny_lca, tiny_run

from lcaflow import analysis, open_run
from lcaflow.assemble import assemble
from lcaflow.chunkfile import n_chunks
from lcaflow.errors import CorruptFileError
from lcaflow.gradients import compute_chunk
from lcaflow.layout import Layout
from lcaflow.storage import decode, encode_bfloat16, matrix, open_lca, sample_columns
from lcaflow.training import train

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # the re-storing tool
from transcode import transcode_chunk  # noqa: E402


def compute(folder: Path, run, lca, trajectory, data) -> Path:
    chunks = []
    for k in range(n_chunks(run["iterations"], lca["iterations_per_job"])):
        chunks.append(str(folder / "chunks" / f"{k:04d}.h5"))
        compute_chunk("r", run, lca, k, str(trajectory), str(data), chunks[-1])
    shutil.copy(trajectory, folder / "trajectory.h5")
    assemble("r", run, lca, str(folder / "trajectory.h5"), chunks, str(folder / "lca.h5"), str(folder / "grounding.json"))
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory, fashion_data_file):
    torch.set_num_threads(2)
    tmp = tmp_path_factory.mktemp("storage")
    run = tiny_run()
    trajectory = tmp / "trajectory.h5"
    train("r", run, str(fashion_data_file), str(trajectory), str(tmp / "ckpt"))
    forms = {
        "full": tiny_lca(store_gradients=True, store_validation=True),
        "bfloat16": tiny_lca(storage="bfloat16"),
        "sampled": tiny_lca(store="sampled", sample_fraction=0.05),
    }
    out = {name: compute(tmp / name, run, lca, trajectory, fashion_data_file) for name, lca in forms.items()}
    return dict(tmp=tmp, run=run, lca=forms, data=fashion_data_file, **out)


def test_bfloat16_rounds_to_nearest_and_keeps_every_sign():
    x = torch.tensor([1.0, -1.0, 3.14159, -2.5e-30, 1e-45, -1e-45, 0.0, 65504.0, 1.00390625, 1.01171875], dtype=torch.float32)
    bits = encode_bfloat16(x)
    y = decode(bits, "bfloat16")
    assert bits.dtype == np.uint16 and bits.nbytes == 2 * x.numel()
    nonzero = x.numpy() != 0
    assert np.array_equal(np.sign(y), np.sign(x.numpy())) and (y[nonzero] != 0).all()
    normal = np.abs(x.numpy()) > 1e-38
    assert np.array_equal(y[normal], x[normal].to(torch.bfloat16).float().numpy())  # torch's round-to-nearest-even
    assert y[-2] == 1.0 and y[-1] == 1.015625  # ties to even


def test_lca_h5_maps_the_chunks_and_the_run_folder_moves_whole(runs, tmp_path):
    full = runs["full"]
    with h5py.File(full / "lca.h5") as f:
        assert f["lca"].is_virtual and f["lca"].shape == (12, 84060)
        assert {vs.file_name for vs in f["lca"].virtual_sources()} == {"chunks/0000.h5", "chunks/0001.h5"}
        lca, grad = f["lca"][()], f["grad"][()]
    with h5py.File(full / "chunks" / "0001.h5") as c:
        assert np.array_equal(lca[6:], c["lca"][()]) and np.array_equal(grad[6:], c["grad"][()])
    # lca.h5 holds no T x K block: a few bytes per parameter
    assert (full / "lca.h5").stat().st_size < 20 * 84060
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(full, moved)
    with open_run(moved) as r:
        assert np.array_equal(r.lca[()], lca) and np.array_equal(r.lca_val[()].shape, (12, 84060))
    # a chunk rewritten with other settings under the assembled lca.h5 is refused, not misread
    shutil.copy(runs["bfloat16"] / "chunks" / "0001.h5", moved / "chunks" / "0001.h5")
    with pytest.raises(CorruptFileError) as err:
        open_run(moved)
    assert "\n" not in str(err.value) and "rewritten after assembly" in str(err.value) and "rerun assemble" in str(err.value)
    (moved / "chunks" / "0001.h5").unlink()
    with pytest.raises(CorruptFileError) as err:
        open_run(moved)
    assert "\n" not in str(err.value) and "chunks/0001.h5" in str(err.value) and "missing" in str(err.value)
    with pytest.raises(CorruptFileError):
        analysis.noise(str(moved / "lca.h5"), *(tmp_path / n for n in ("n.json", "i.tsv", "l.tsv", "h.tsv", "f.tsv")))


def test_a_rerun_chunk_is_byte_identical(runs, tmp_path):
    again = tmp_path / "0001.h5"
    compute_chunk("r", runs["run"], runs["lca"]["full"], 1, str(runs["full"] / "trajectory.h5"), str(runs["data"]), str(again))
    assert again.read_bytes() == (runs["full"] / "chunks" / "0001.h5").read_bytes()


def test_bfloat16_storage_halves_the_matrix_and_keeps_the_analyses(runs, tmp_path):
    full, bf = runs["full"], runs["bfloat16"]
    with h5py.File(bf / "chunks" / "0000.h5") as c:
        assert c["lca"].dtype == np.uint16 and c["lca"].id.get_storage_size() == 6 * 84060 * 2
        assert "lca_val" not in c and "grad" not in c  # opt-in
    with open_lca(full / "lca.h5") as f, open_lca(bf / "lca.h5") as g:
        a, b = matrix(f, "lca")[()], matrix(g, "lca")[()]
        for key in ("helped_count", "lca_total", "lca_layer", "lca_class_layer", "grad_sign_changes", "row_kurtosis"):
            assert np.array_equal(f[key][()], g[key][()]), key  # reduced from the float32 rows either way
    assert np.array_equal(np.sign(a), np.sign(b))
    nz = a != 0
    assert np.abs(b[nz] - a[nz]).max() / 1 <= (np.abs(a[nz]) * 2**-8).max() and (np.abs(b[nz] - a[nz]) <= np.abs(a[nz]) * 2**-8).all()
    report = json.loads((bf / "grounding.json").read_text())["storage"]
    assert report["storage"] == "bfloat16" and report["bytes_per_entry"] == 2
    assert 0 < report["max_abs_iteration_error"] < 1e-4 and abs(report["cumulative_error_pct"]) < 0.05
    assert json.loads((full / "grounding.json").read_text())["storage"]["max_abs_iteration_error"] < 1e-8
    out = {}
    for name, folder in (("full", full), ("bf", bf)):
        s = tmp_path / name
        s.mkdir()
        out[name] = analysis.noise(str(folder / "lca.h5"), *(s / n for n in ("n.json", "i.tsv", "l.tsv", "h.tsv", "f.tsv")), sample_size=5000)
    assert out["bf"]["pct_helping_of_nonzero"] == out["full"]["pct_helping_of_nonzero"]
    assert out["bf"]["distribution"]["kurtosis"] == pytest.approx(out["full"]["distribution"]["kurtosis"], rel=0.02)


def test_a_stratified_sample_is_stored_and_every_analysis_runs_from_it(runs, tmp_path):
    full, sampled = runs["full"], runs["sampled"]
    with h5py.File(full / "lca.h5") as f:
        layout = Layout.from_h5(f["layout"])
    cols = sample_columns(layout, 0.05)
    layer_index = layout.layer_index()
    for j, size in enumerate(np.bincount(layer_index)):
        n = (layer_index[cols] == j).sum()
        assert n == int(np.ceil(0.05 * size)), layout.layers[j]  # proportional: pooled statistics need no weights
    with open_lca(full / "lca.h5") as f, open_lca(sampled / "lca.h5") as g:
        m = matrix(g, "lca")
        assert m.sampled and np.array_equal(m.columns, cols) and np.array_equal(m[()], f["lca"][()][:, cols])
        for key in ("helped_count", "lca_total", "helping_layer", "lca_neuron/fc1", "tail_share"):
            assert np.array_equal(f[key][()], g[key][()]), key
    # the run's numbers for every parameter stay exact; what follows parameters says it used the sample
    out = {}
    for name, folder in (("full", full), ("sampled", sampled)):
        s = tmp_path / name
        s.mkdir()
        lca_path = str(folder / "lca.h5")
        out[name] = {
            "noise": analysis.noise(lca_path, *(s / n for n in ("n.json", "i.tsv", "l.tsv", "h.tsv", "f.tsv")), sample_size=5000),
            "neurons": analysis.neurons(lca_path, s / "n.h5", s / "c.tsv", s / "sp.tsv", s / "n.json", n_top=5, nodes=3, per_node=3),
            "oscillation": analysis.oscillation(lca_path, s / "o.json", s / "o.tsv", s / "t.tsv", window=(2, 10)),
            "layers": analysis.layers(lca_path, s / "l.tsv", s / "lc.tsv"),
        }
    assert out["sampled"]["noise"]["pct_helping_of_nonzero"] == out["full"]["noise"]["pct_helping_of_nonzero"]
    assert out["sampled"]["layers"] == out["full"]["layers"]
    assert out["sampled"]["oscillation"]["iterations_per_gradient_sign_change"] == out["full"]["oscillation"]["iterations_per_gradient_sign_change"]
    assert "sample" in out["sampled"]["noise"]["distribution"]["pooled_from"] and "sample" in out["sampled"]["neurons"]["followed_from"]
    assert "all 84,060" in out["full"]["noise"]["distribution"]["pooled_from"]
    assert out["sampled"]["neurons"]["specialization"] == out["full"]["neurons"]["specialization"]
    with open_run(sampled) as r:
        w = r.parameter("fc3.weight")
        assert w.shape == (12, 10, 50) and np.isnan(w).any() and np.isfinite(w).any()
        assert np.array_equal(r.parameter_totals(), out_totals(full))


def out_totals(folder):
    with h5py.File(folder / "lca.h5") as f:
        return f["lca_total"][()]


@pytest.mark.parametrize("form", ["bfloat16", "sampled"])
def test_restoring_a_float32_chunk_gives_the_computed_one(runs, tmp_path, form):
    """benchmarks/storage_fidelity.py compares storage forms by re-storing one float32 run: it must give
    what the gradient job writes with those settings."""
    full_lca = dict(runs["lca"]["full"])
    with h5py.File(runs["full"] / "lca.h5") as f:
        layout = Layout.from_h5(f["layout"])
    out = tmp_path / "0000.h5"
    transcode_chunk(runs["full"] / "chunks" / "0000.h5", out, layout, runs["lca"][form])
    assert full_lca["store_gradients"]
    with h5py.File(out) as a, h5py.File(runs[form] / "chunks" / "0000.h5") as b:
        names = set()
        a.visit(names.add)
        other = set()
        b.visit(other.add)
        assert names == other
        for name in names:
            if isinstance(b[name], h5py.Dataset):
                assert np.array_equal(a[name][()], b[name][()]), name
        assert a.attrs["storage_fingerprint"] == b.attrs["storage_fingerprint"]


def test_workflow_with_compact_storage_and_no_trajectory(tiny_workflow, tmp_path):
    """The whole workflow with bfloat16, sampled storage and keep_trajectory: false: every figure and the
    claims are made from the sample, the trajectory is gone afterwards, and nothing reruns."""
    from conftest import snakemake, write_tiny_config

    workdir, _, _ = tiny_workflow
    lca = {"storage": "bfloat16", "store": "sampled", "sample_fraction": 0.05, "keep_trajectory": False}
    config = write_tiny_config(tmp_path, datasets=workdir / "datasets", lca=lca)
    result = snakemake(tmp_path, "--cores", "2", "--configfile", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "results" / "runs" / "tiny_sgd"
    assert not (run / "trajectory.h5").exists() and (run / "chunks" / "0000.h5").exists()
    assert len(list((run / "figures").glob("*.png"))) == 12 and (tmp_path / "results" / "claims.md").exists()
    noise = json.loads((run / "stats" / "noise.json").read_text())
    assert "sample of 4,204 of the 84,060" in noise["distribution"]["pooled_from"]
    with open_run(run) as r:  # deleted on purpose: no stale-trajectory warning
        assert r.sampled and r.lca.shape == (20, 4204) and r.lca.encoding == "bfloat16"
    again = snakemake(tmp_path, "--cores", "2", "--configfile", str(config), "-n")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stdout[-2000:]


def test_a_sampled_run_without_tables_gets_an_explorer_that_says_what_is_absent(runs, tmp_path, browser):
    """lca.store: sampled, and no analysis tables or claims beside lca.h5: the page draws what there is and
    names what is missing."""
    from explorer_checks import Opened

    from lcaflow.explorer import run_explorer

    out = tmp_path / "explorer.html"
    run_explorer(runs["sampled"], out)
    text = out.read_text()
    assert "top parameters chosen from a sample of" in text and "(lca.store: sampled)" in text
    assert "Not on this page" in text and "moments of learning" in text and "the claims table" in text
    opened = Opened(browser, out)
    try:
        opened.check_clean()
        for view in ("loss_0", "lca_0", "neurons_window", "classes_0", "parameters"):
            assert opened.marks(view), view
    finally:
        opened.close()



def test_chunks_of_another_version_are_refused_at_assembly():
    """A run's chunks all hold the same datasets: one made by a version that wrote more (or fewer) is refused,
    not joined into arrays of the wrong length."""
    from lcaflow.joins import Joined
    from lcaflow.reducers import join_kind

    joined = Joined(join_kind)
    joined.add({"loss": np.zeros(3)})
    with pytest.raises(ValueError, match=r"datasets differ from the first chunk's \(loss_val_class\): made by another version"):
        joined.add({"loss": np.zeros(3), "loss_val_class": np.zeros((3, 2))})
