"""Bad configs stop with one line that names the key."""

import copy

import pytest

from lcaflow.chunkfile import chunk_range, n_chunks
from lcaflow.config import validate_config
from lcaflow.errors import ConfigError

GOOD = {
    "runs": {
        "a": {
            "dataset": "fashion_mnist",
            "architecture": "mnist_fc",
            "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
            "batch_size": 250,
            "iterations": 880,
        }
    }
}


def with_change(path, value):
    cfg = copy.deepcopy(GOOD)
    node = cfg
    for key in path[:-1]:
        node = node.setdefault(key, {})
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return cfg


def test_good_config_gets_defaults():
    cfg = validate_config(GOOD)
    assert cfg["lca"]["tolerance"] == 0.001 and cfg["lca"]["max_splits"] == 32
    assert cfg["runs"]["a"]["val_size"] == 5000 and cfg["runs"]["a"]["device"] == "auto"
    assert "betas" not in cfg["runs"]["a"]["optimizer"]  # optimizer-specific defaults are not forced on sgd
    assert cfg["lca"]["quadrature"] == "simpson" and cfg["lca"]["trapezoid_tolerance"] == 0.0005  # half the tolerance
    adaptive = validate_config(with_change(["lca"], {"quadrature": "adaptive", "tolerance": 0.01, "trapezoid_tolerance": 0.002}))
    assert adaptive["lca"]["trapezoid_tolerance"] == 0.002


BAD = [
    (with_change(["runs", "a", "learning_rate"], 0.1), "unknown key 'runs.a.learning_rate'"),
    (with_change(["lca", "tolerence"], 0.1), "unknown key 'lca.tolerence'"),
    (with_change(["runz"], {}), "unknown key 'runz'"),
    (with_change(["runs", "a", "optimizer", "lr"], -0.05), "runs.a.optimizer.lr: -0.05 is out of range, must be > 0"),
    (with_change(["runs", "a", "optimizer", "lr"], "fast"), 'runs.a.optimizer.lr: "fast" is not valid (Learning rate, or "paper"'),
    (with_change(["runs", "a", "batch_size"], 2.5), "runs.a.batch_size: 2.5 has the wrong type"),
    (with_change(["runs", "a", "iterations"], 0), "runs.a.iterations: 0 is out of range"),
    (with_change(["runs"], {}), "runs: must declare at least one entry"),
    (with_change(["runs", "a", "dataset"], "imagenet"), 'runs.a.dataset: "imagenet" is not valid'),
    (with_change(["runs", "a", "architecture"], "resnet9000"), "runs.a.architecture: unknown architecture 'resnet9000'"),
    (with_change(["runs", "a", "optimizer", "name"], "adam"), "runs.a.optimizer.momentum applies to sgd only"),
    (with_change(["runs", "a", "device"], "gpu"), "runs.a.device"),
    (with_change(["lca", "max_splits"], 3), "lca.max_splits: 3 is not one of"),
    (with_change(["lca", "quadrature"], "trapezoid"), 'lca.quadrature: "trapezoid" is not one of "simpson", "adaptive"'),
    (with_change(["lca", "trapezoid_tolerance"], 0), "lca.trapezoid_tolerance: 0 is out of range, must be > 0"),
    (with_change(["lca", "iterations_per_job"], 0), "lca.iterations_per_job: 0 is out of range"),
    (with_change(["lca", "eval_chunk_size"], 0), "lca.eval_chunk_size: 0 is out of range"),
    (with_change(["runs", "a", "batch_size"], 60000), "runs.a.batch_size: 60000 exceeds"),
    (with_change(["runs", "a", "val_size"], 60000), "runs.a.val_size: 60000 leaves no training data"),
    (with_change(["runs", "a", "iterations"], KeyError), "runs.a: 'iterations' is a required property"),
    ({"runs": {"bad name!": GOOD["runs"]["a"]}}, "name 'bad name!' must match"),
    (with_change(["runs", "a", "optimizer", "name"], "rmsprop"), 'runs.a.optimizer.name: "rmsprop" is not one of'),
    (with_change(["runs", "a", "optimizer", "momentum"], 1.0), "runs.a.optimizer.momentum: 1.0 is out of range, must be < 1"),
    (with_change(["lca", "tolerance"], 0), "lca.tolerance: 0 is out of range, must be > 0"),
    (with_change(["lca", "max_cumulative_error_pct"], -1), "lca.max_cumulative_error_pct: -1 is out of range"),
    (with_change(["threads"], 0), "threads: 0 is out of range, must be >= 1"),
    (with_change(["runs", "a", "seed"], -1), "runs.a.seed: -1 is out of range"),
    (with_change(["runs", "a", "train_size"], 0), "runs.a.train_size: 0 is out of range"),
    (with_change(["runs", "a", "device"], "cuda:x"), "runs.a.device"),
    (with_change(["data", "download"], "maybe"), 'data.download: "maybe" has the wrong type'),
    (with_change(["results_dir"], ""), "results_dir"),
    ({"runs": {"a": "fc"}}, 'runs.a: "fc" has the wrong type, expected object'),
    ({"runs": GOOD["runs"], "lca": {"store_gradients": "yes"}}, 'lca.store_gradients: "yes" has the wrong type'),
    (with_change(["analysis", "top_moments"], 0), "analysis.top_moments: 0 is out of range, must be >= 1"),
    (with_change(["analysis", "oscillation_window"], [200, 50]), "analysis.oscillation_window: start 200 must be below stop 50"),
    (with_change(["analysis", "heatmap_iterations"], [0, 880]), "analysis.heatmap_iterations: 880 is past the last iteration 879"),
    (with_change(["analysis", "colour"], "red"), "unknown key 'analysis.colour'"),
    (with_change(["experiments", "e"], {"runs": ["a", "b"]}), "experiments.e.runs: 'b' is not a run"),
    (with_change(["experiments", "e"], {"runs": ["a", "a"]}), "experiments.e.runs: lists a run twice"),
    (with_change(["experiments", "e"], {"runs": ["a"], "compare_with": "f"}), "experiments.e.compare_with: 'f' is not another experiment"),
    (with_change(["experiments", "e"], {"runs": []}), "experiments.e.runs"),
    (with_change(["experiments", "e"], {"run": ["a"]}), "experiments.e"),
    # a near miss gets the name meant
    (with_change(["runs", "a", "validaton"], "test"), "unknown key 'runs.a.validaton' (did you mean 'validation'?)"),
    (with_change(["runs", "a", "validation"], "tset"), '"tset" is not one of "split", "test" (did you mean \'test\'?)'),
    (with_change(["runs", "a", "architecture"], "mnist_cf"), "unknown architecture 'mnist_cf' (did you mean 'mnist_fc'?)"),
    (with_change(["experiments", "e"], {"runs": ["A"]}), "'A' is not a run (did you mean 'a'?)"),
    # a recorded run's own loop trained it: training settings would be ignored, so they are refused
    (
        {"runs": {"a": {"dataset": "fashion_mnist", "trajectory": "rec.h5", "optimizer": {"name": "sgd", "lr": 0.1}}}},
        "runs.a.optimizer.name: your own loop trained this recorded run, so lcaflow never uses its optimizer.name, optimizer.lr;",
    ),
    ({"runs": {"a": {"dataset": "fashion_mnist", "trajectory": "rec.h5", "batch_size": 32}}}, "runs.a.batch_size: your own loop"),
]


@pytest.mark.parametrize("cfg,message", BAD, ids=[m[:40] for _, m in BAD])
def test_bad_config_gives_one_line_naming_the_key(cfg, message):
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    text = str(err.value)
    assert message in text
    assert "\n" not in text


def test_chunks_cover_all_iterations_exactly_once():
    T, per = 883, 110
    covered = [t for k in range(n_chunks(T, per)) for t in range(*chunk_range(k, T, per))]
    assert covered == list(range(T))


def test_command_line_strings_are_read_as_their_schema_types():
    # `snakemake --config lca="{tolerance: 0.0005}"` delivers nested scalars as strings
    cfg = with_change(["lca"], {"tolerance": "0.0005", "max_splits": "8", "store_gradients": "true"})
    cfg["runs"]["a"]["train_size"] = "null"
    out = validate_config(cfg)
    assert out["lca"]["tolerance"] == 0.0005 and out["lca"]["max_splits"] == 8 and out["lca"]["store_gradients"] is True
    assert out["runs"]["a"]["train_size"] is None
    with pytest.raises(ConfigError, match="lca.tolerance"):
        validate_config(with_change(["lca"], {"tolerance": "small"}))


def test_each_job_gets_as_params_the_settings_that_change_its_output():
    """lcaflow.settings: the quadrature's own tolerance only matters for adaptive quadrature, the sample's
    fraction only for a sample; speed settings are never params (they travel as resources)."""
    import json

    from lcaflow import settings

    lca = validate_config(GOOD)["lca"]
    assert sorted(settings.lca_params(lca, "gradients")) == [
        "eval_chunk_size", "iterations_per_job", "max_splits", "quadrature", "storage", "store",
        "store_gradients", "store_validation", "tolerance",
    ]  # fmt: skip
    assemble = settings.lca_params(lca, "assemble")
    assert {"max_cumulative_error_pct", "keep_trajectory"} <= set(assemble) and "compute_batch" not in assemble
    adaptive = validate_config(with_change(["lca"], {"quadrature": "adaptive", "compute_batch": 64, "store": "sampled"}))["lca"]
    params = settings.lca_params(adaptive, "gradients")
    assert params["trapezoid_tolerance"] == 0.0005 and params["sample_fraction"] == 0.01 and "compute_batch" not in params
    assert json.loads(settings.job_resources(adaptive, "lca")) == {"compute_batch": 64, "channels_last": "auto", "compression": "none"}
    assert settings.fingerprint_of(lca, settings.NUMBERS) != settings.fingerprint_of(adaptive, settings.NUMBERS)
    assert settings.names(settings.STORED) == "storage, store, sample_fraction, store_validation, store_gradients or example_curves"
    curves = validate_config(with_change(["lca"], {"example_curves": 10}))["lca"]  # off (0) it is left out, as above
    assert settings.lca_params(curves, "gradients")["example_curves"] == 10


def test_a_target_read_as_a_config_file_gets_its_one_line_hint(tmp_path):
    """`snakemake --configfile lca.yaml results/plan.json`: the JSON target is read as a second config file."""
    from lcaflow.config import misread_target

    files = [tmp_path / "lca.yaml", tmp_path / "results" / "plan.json"]
    assert misread_target(files, tmp_path) == (
        "config: results/plan.json was read as a config file: a target written after `--configfile lca.yaml` is read "
        "as one more; write `--configfile=lca.yaml results/plan.json`"
    )
    assert misread_target(files[:1], tmp_path) is None and misread_target([files[0], tmp_path / "more.yml"], tmp_path) is None
