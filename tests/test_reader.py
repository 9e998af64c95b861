"""The notebook API `lcaflow.reader.open_run` on a real run folder (a tiny MNIST-FC run on real
Fashion-MNIST, its chunks, lca.h5 and two analyses), checked against the files read with h5py, and
the python example of docs/notebook.md run as written."""

import json
import os
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
from conftest import REPO, tiny_lca, tiny_run

from lcaflow import analysis
from lcaflow.assemble import assemble
from lcaflow.chunkfile import n_chunks
from lcaflow.errors import CorruptFileError, LCAError, NotBuiltError
from lcaflow.gradients import compute_chunk
from lcaflow.reader import Run, open_run
from lcaflow.storage import Matrix
from lcaflow.training import train

NAME = "fc_sgd"  # the names docs/notebook.md uses, so that its examples run as written
SEED_1 = "fc_sgd_s1"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, fashion_data_file):
    """<tmp>/results/runs/fc_sgd as the workflow lays it out: trajectory, chunks, lca.h5, grounding.json,
    stats/layers.tsv, stats/layers_cumulative.tsv, stats/grounding.tsv and stats/oscillation.json."""
    import torch

    torch.set_num_threads(2)
    runs = tmp_path_factory.mktemp("reader") / "results" / "runs"
    folder = runs / NAME
    run = tiny_run(optimizer={"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4})
    _make_run(folder, run, tiny_lca(store_validation=True), fashion_data_file)
    # for open_runs: a second seed, shorter (one gradient job, no Simpson refinement): its rows end early
    _make_run(runs / SEED_1, {**run, "seed": 1, "iterations": 6}, tiny_lca(tolerance=0.01), fashion_data_file)
    stats = folder / "stats"
    stats.mkdir()
    analysis.layers(str(folder / "lca.h5"), stats / "layers.tsv", stats / "layers_cumulative.tsv")
    analysis.grounding(str(folder / "lca.h5"), stats / "grounding.tsv")
    analysis.oscillation(
        str(folder / "lca.h5"),
        stats / "oscillation.json",
        stats / "oscillation_layers.tsv",
        stats / "oscillation_traces.tsv",
    )
    return folder


def _make_run(folder, run, lca, data_file) -> None:
    """A run folder as the workflow makes it: trajectory, chunks, lca.h5 and grounding.json."""
    (folder / "chunks").mkdir(parents=True)
    trajectory = folder / "trajectory.h5"
    train(folder.name, run, str(data_file), str(trajectory), str(folder / "checkpoints"))
    chunks = [str(folder / "chunks" / f"{k:04d}.h5") for k in range(n_chunks(run["iterations"], lca["iterations_per_job"]))]
    for k, chunk in enumerate(chunks):
        compute_chunk(folder.name, run, lca, k, str(trajectory), str(data_file), chunk)
    assemble(folder.name, run, lca, str(trajectory), chunks, str(folder / "lca.h5"), str(folder / "grounding.json"))


def _one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text and text
    return text


def test_metadata_matches_the_file(run_dir):
    with open_run(run_dir) as run, h5py.File(run_dir / "lca.h5") as f:
        assert run.name == NAME and run.path == run_dir
        assert run.config == json.loads(f.attrs["run_config"]) and run.config["iterations"] == 12
        assert (run.iterations, run.num_params) == f["lca"].shape == (12, 84060)
        assert run.groups == ("fc1", "fc2", "fc3") == tuple(f["layout/layers"].asstr()[()])
        assert run.layout.names[:2] == ("fc1.weight", "fc1.bias") and run.layout.num_params == 84060
        assert run.classes == list(f["classes"].asstr()[()]) and len(run.classes) == 10
        assert run.grounding == json.loads((run_dir / "grounding.json").read_text()) == json.loads(f.attrs["grounding"])
        text = repr(run)
        assert "\n" not in text and NAME in text and "T=12" in text and "84,060" in text and "fc1, fc2, fc3" in text
        assert f"{run.grounding['train']['cumulative_error_pct']:+.3g}%" in text


def test_lca_is_the_lazy_dataset_and_losses_are_arrays(run_dir):
    with open_run(run_dir) as run, h5py.File(run_dir / "lca.h5") as f:
        assert isinstance(run.lca, Matrix) and isinstance(run.lca_val, Matrix) and not run.sampled
        assert run.lca.dtype == np.float32 and run.lca.shape == (12, 84060)
        assert np.array_equal(run.lca[3:5], f["lca"][3:5]) and np.array_equal(run.lca_val[-1], f["lca_val"][-1])
        assert np.array_equal(run.loss, f["loss"][()]) and run.loss.shape == (13,)
        assert np.array_equal(run.loss_val, f["loss_val"][()]) and run.loss_val.shape == (13,)


def test_sums_match_the_file(run_dir):
    with open_run(run_dir) as run, h5py.File(run_dir / "lca.h5") as f:
        lca, lca_val = f["lca"][()], f["lca_val"][()]
        for split, key, matrix in (("train", "lca_layer", lca), ("val", "lca_val_layer", lca_val)):
            groups = run.by_group(split)
            assert groups.dtype == np.float64 and groups.shape == (12, 3)
            assert np.array_equal(groups, f[key][()])
            rows = matrix.sum(1, dtype=np.float64)
            # float32 rows against the float64 sums of the assembly: the gap grounding.json reports
            assert np.allclose(run.per_iteration(split), rows, rtol=0, atol=1e-6)
            # per group: the stored float32 columns of each group against the group's float64 sum
            for j, group in enumerate(run.groups):
                cols = run.group_columns(group)
                assert np.allclose(matrix[:, cols].sum(1, dtype=np.float64), groups[:, j], rtol=0, atol=1e-6)
            assert run.totals(split) == pytest.approx(dict(zip(run.groups, f[key][()].sum(0))))
        assert np.allclose(run.per_iteration(), np.diff(run.loss) + f["error"][()], rtol=0, atol=1e-12)
        by_class = run.by_class()
        assert by_class.shape == (12, 10) and np.array_equal(by_class, f["lca_class_layer"][()].sum(2))
        table = run_dir / "stats" / "layers.tsv"  # the analysis stage's per-layer totals agree with totals()
        assert run.totals()["fc1"] == pytest.approx(float(table.read_text().splitlines()[1].split("\t")[2]), rel=1e-9)


def test_parameter_and_group_columns(run_dir):
    with open_run(run_dir) as run, h5py.File(run_dir / "lca.h5") as f:
        lca = f["lca"][()]
        layout = run.layout
        for i, name in enumerate(layout.names):
            a, size = layout.offsets[i], layout.sizes[i]
            block = run.parameter(name)
            assert block.shape == (12, *layout.shapes[i]) and block.dtype == np.float32
            assert np.array_equal(block.reshape(12, -1), lca[:, a : a + size])
        assert run.parameter("fc1.weight").shape == (12, 100, 784)
        # row-major reshape: entry [t, j, k] of fc2.weight (50 x 100) is column offset + j * 100 + k
        j = layout.names.index("fc2.weight")
        assert run.parameter("fc2.weight")[4, 7, 33] == lca[4, layout.offsets[j] + 7 * 100 + 33]
        val = f["lca_val"][:, layout.offsets[j] : layout.offsets[j] + layout.sizes[j]]
        assert np.array_equal(run.parameter("fc2.weight", split="val").reshape(12, -1), val)
        cols = {g: run.group_columns(g) for g in run.groups}
        assert np.array_equal(np.concatenate(list(cols.values())), np.arange(84060))
        assert len(cols["fc1"]) == 784 * 100 + 100 and len(cols["fc3"]) == 50 * 10 + 10
        assert np.array_equal(cols["fc2"], np.flatnonzero(layout.layer_index() == 1))

        with pytest.raises(LCAError) as err:
            run.parameter("fc9.weight")
        assert "fc9.weight" in _one_line(err) and "fc1.weight" in str(err.value) and "(did you mean 'fc" in str(err.value)
        with pytest.raises(LCAError) as err:
            run.group_columns("conv1")
        assert "fc1, fc2, fc3" in _one_line(err)
        with pytest.raises(LCAError) as err:
            run.by_group("test")
        assert "'train' or 'val'" in _one_line(err)
        with pytest.raises(LCAError) as err:  # grouped by class: the validation split keeps one row
            run.by_example_group("val")
        assert "computed only for runs that set example_groups to a callable or none" in _one_line(err) and "split='train'" in str(err.value)


def test_tables_and_stats(run_dir):
    with open_run(run_dir) as run:
        layers = run.table("layers")
        assert list(layers) == ["layer", "n_params", "lca", "lca_per_param", "lca_val", "lca_val_per_param", "share_of_total_lca"]
        assert layers["layer"].tolist() == ["fc1", "fc2", "fc3"] and layers["layer"].dtype.kind == "U"
        assert layers["n_params"].dtype == np.float64 and layers["n_params"].tolist() == [78500, 5050, 510]
        assert np.allclose(layers["lca"], list(run.totals().values()), rtol=1e-9, atol=0)
        assert np.array_equal(run.table("layers.tsv")["lca"], layers["lca"])  # the extension may be given
        grounding = run.table("grounding")
        assert len(grounding["iteration"]) == 12 and np.allclose(grounding["loss_change"], np.diff(run.loss), rtol=1e-9)
        oscillation = run.stats("oscillation")
        assert oscillation == json.loads((run_dir / "stats" / "oscillation.json").read_text())

        for read, name, ext in ((run.table, "noise_layers", "tsv"), (run.stats, "noise", "json")):
            with pytest.raises(NotBuiltError) as err:  # a table of the workflow not made yet: its target
                read(name)
            target = run_dir / "stats" / f"{name}.{ext}"
            text = _one_line(err)
            assert f"`snakemake --cores all --configfile=<your config> {target}`" in text and "(rule noise)" in text
            present = "grounding, layers, layers_cumulative, oscillation_layers, oscillation_traces" if ext == "tsv" else "oscillation"
            assert f"(present: {present})" in text
        with pytest.raises(LCAError) as err:  # no such table: no target that does not exist, the near name
            run.table("layres")
        text = _one_line(err)
        assert "snakemake" not in text and "did you mean 'layers'?" in text and not isinstance(err.value, NotBuiltError)


def test_missing_and_corrupt_runs_are_one_line(run_dir, tmp_path):
    missing = tmp_path / "results" / "runs" / "nope"
    with pytest.raises(NotBuiltError) as err:
        open_run(missing)
    text = _one_line(err)
    assert str(missing) in text and f"snakemake --cores all --configfile=<your config> {missing / 'lca.h5'}" in text
    with pytest.raises(NotBuiltError) as err:  # a relative path: where it looked, and the runs beside it
        open_run(os.path.relpath(run_dir.parent / "fc_sdg"))
    assert f"(looked in {os.getcwd()})" in _one_line(err) and f"(runs there: {NAME}, {SEED_1}; did you mean '{NAME}'?)" in str(err.value)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NotBuiltError) as err:
        open_run(empty)
    assert f"{empty / 'lca.h5'}: missing" in _one_line(err) and "snakemake --cores all" in err.value.args[0]

    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "lca.h5").write_bytes(b"not hdf5 at all" * 100)
    with pytest.raises(CorruptFileError) as err:
        open_run(garbage)
    assert "not a readable HDF5 file" in _one_line(err)

    truncated = tmp_path / "truncated"
    truncated.mkdir()
    data = (run_dir / "lca.h5").read_bytes()
    (truncated / "lca.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError) as err:
        with open_run(truncated) as run:
            run.lca[-1]  # noqa: B018 (reading is the test)
    assert str(truncated / "lca.h5") in _one_line(err)

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    with h5py.File(foreign / "lca.h5", "w") as f:
        f["lca"] = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(CorruptFileError) as err:
        open_run(foreign)
    assert "lacks lca_layer, loss, loss_val, layout" in _one_line(err) and "assemble" in str(err.value)


def test_a_run_without_classes_and_without_grounding_json(run_dir, tmp_path):
    copy = tmp_path / "runs" / "no_classes"
    copy.mkdir(parents=True)
    shutil.copy(run_dir / "lca.h5", copy / "lca.h5")
    shutil.copytree(run_dir / "chunks", copy / "chunks")  # lca.h5 reads its matrices there
    with open_run(copy) as run:  # no grounding.json: the lca.h5 attribute
        assert run.classes == [str(c) for c in run.classes] and run.grounding["iterations"] == 12
        expected = run.grounding
    assert expected == json.loads((run_dir / "grounding.json").read_text())
    with h5py.File(copy / "lca.h5", "a") as f:
        f.attrs["per_class"] = False
    with open_run(copy) as run:
        assert run.classes is None
        with pytest.raises(LCAError) as err:
            run.by_class()
        assert "has no classes" in _one_line(err) and NAME in str(err.value)
        assert run.by_group().shape == (12, 3)  # everything else still reads
    with h5py.File(copy / "lca.h5", "a") as f:  # absent (files written before the attribute) means True
        del f.attrs["per_class"]
        del f["lca_val"]  # as without lca.store_validation: an option, not a damaged file
    with open_run(copy) as run:
        assert len(run.classes) == 10 and run.by_class().shape == (12, 10)
        with pytest.raises(NotBuiltError, match="was not stored; set lca.store_validation: true"):
            run.lca_val  # noqa: B018 (reading is the test)


def test_close_and_context_manager(run_dir):
    run = open_run(run_dir)
    assert isinstance(run, Run)
    handle = run.lca.dset.file
    run.close()
    assert not handle.id.valid
    run.close()  # twice is fine
    assert repr(run) == f"<Run {NAME} (closed)>"
    with pytest.raises(LCAError) as err:
        run.lca  # noqa: B018
    assert "closed" in _one_line(err) and "open_run(" in str(err.value)
    with open_run(run_dir) as run:
        handle = run.lca.dset.file
        assert handle.id.valid
    assert not handle.id.valid
    with pytest.raises(ZeroDivisionError), open_run(run_dir) as run:  # closed on an error too
        handle = run.lca.dset.file
        1 / 0  # noqa: B018
    assert not handle.id.valid


def _python_blocks(page) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.M | re.S)


def test_the_notebook_page_runs_as_written(run_dir):
    """docs/notebook.md's python, unchanged, in the folder that holds results/runs/fc_sgd."""
    blocks = _python_blocks(REPO / "docs" / "notebook.md")
    assert blocks and all("results/runs/fc_sgd" in b for b in blocks)  # the folders the fixture made
    workdir = run_dir.parents[2]
    env = {
        **os.environ,
        "MPLBACKEND": "Agg",
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    out = ""
    for block in blocks:
        result = subprocess.run([sys.executable, "-c", block], cwd=workdir, capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        out += result.stdout
    assert f"<Run {NAME}: T=12 iterations" in out and "fc3 weights helping" in out and f"<Runs {NAME}, {SEED_1}" in out


def test_open_runs_lines_up_several_runs(run_dir):
    import lcaflow

    assert {"TrajectoryRecorder", "open_run", "open_runs"} <= set(dir(lcaflow))  # tab completion
    with lcaflow.open_runs([run_dir, run_dir.parent / SEED_1]) as runs:
        assert runs.names == (NAME, SEED_1) and runs.groups == ("fc1", "fc2", "fc3") and len(runs.classes) == 10
        totals, classes, steps = runs.totals(), runs.by_class(), runs.per_iteration()
        assert totals.shape == (2, 3) and classes.shape == (2, 10) and steps.shape == (2, 12)
        assert runs.iterations.tolist() == [12, 6] and np.isnan(steps[1, 6:]).all()  # NaN past the shorter run's end
        for i, run in enumerate(runs):
            T = run.iterations
            assert np.array_equal(totals[i], list(run.totals().values()))
            assert np.allclose(classes[i], run.by_class().sum(axis=0)) and np.array_equal(steps[i, :T], run.per_iteration())
            assert np.array_equal(runs.group("fc3")[i, :T], run.by_group()[:, 2])
        assert not np.allclose(totals[0], totals[1])  # two seeds, two runs
        with pytest.raises(LCAError, match="did you mean 'fc3'"):
            runs.group("fc4")
        assert runs[SEED_1] is runs[1]
    assert all(r._file is None for r in runs)  # closed
