"""The paper's networks (counts as its S8 table), and per-layer optimiser settings on real training."""

import re

import h5py
import numpy as np
import pytest
import torch
from conftest import REPO, tiny_run

from lcaflow.config import validate_config
from lcaflow.errors import ConfigError
from lcaflow.models import build_model, layout_of
from lcaflow.training import layer_learning_rate, make_optimizer, train

PAPER_COUNTS = {  # the paper's S8 table, on the input it used
    ("mnist_fc", (1, 28, 28)): 84_060,
    ("lenet", (1, 28, 28)): 808_970,
    ("resnet20", (3, 32, 32)): 273_066,
    ("allcnn", (3, 32, 32)): 1_371_658,
}
LAYERS = {
    "mnist_fc": 3,
    "lenet": 4,
    "resnet20": 22,  # first conv + 9 blocks x 2 convs + 2 shortcut convs + fc
    "allcnn": 9,
    "vgg5": 5,
    "vgg9": 9,
}


@pytest.mark.parametrize(("architecture", "shape"), list(PAPER_COUNTS))
def test_parameter_counts_match_the_paper(architecture, shape):
    model = build_model(architecture, shape, 10, 0)
    assert sum(p.numel() for p in model.parameters()) == PAPER_COUNTS[architecture, shape]


@pytest.mark.parametrize("architecture", sorted(LAYERS))
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_every_network_runs_on_both_input_sizes(architecture, shape):
    model = build_model(architecture, shape, 10, 0)
    assert model(torch.rand(3, *shape)).shape == (3, 10)
    layout = layout_of(model)
    assert len(layout.layers) == LAYERS[architecture]
    assert layout.num_params == sum(p.numel() for p in model.parameters())


def test_batch_norm_belongs_to_its_kernel_and_shortcuts_are_layers():
    layout = layout_of(build_model("resnet20", (3, 32, 32), 10, 0))
    owner = dict(zip(layout.names, layout.layer_of_param))
    assert owner["blocks.3.bn2.weight"] == owner["blocks.3.conv2.bias"] == "blocks.3.conv2"
    assert "blocks.3.shortcut" in layout.layers and "blocks.6.shortcut" in layout.layers
    assert layout.layers[0] == "conv1" and layout.layers[-1] == "fc"


def test_unnamed_modules_get_their_type_and_built_in_names_stay():
    from torch import nn

    seq = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(), nn.Sequential(nn.Linear(8, 2)))
    assert layout_of(seq).layers == ("0:Linear", "3.0:Linear")  # the LayerNorm folds into 0:Linear
    with torch.device("meta"):  # names only: no memory, no initialisation
        names = {a: layout_of(build_model(a, (3, 32, 32), 10, 0)).layers for a in ("mnist_fc", "allcnn", "vgg5")}
    assert names["mnist_fc"] == ("fc1", "fc2", "fc3") and names["allcnn"][0] == "features.conv1"
    assert names["vgg5"][-1] == "classifier.fc2" and not any(":" in n for layers in names.values() for n in layers)


def test_he_normal_initialisation():
    model = build_model("lenet", (1, 28, 28), 10, 0)
    w = model.fc1.weight.detach()
    assert w.std().item() == pytest.approx((2 / w.shape[1]) ** 0.5, rel=0.02)
    assert model.fc1.bias.abs().max().item() == 0


def _trajectory(tmp_path, fashion_data_file, name, **overrides):
    out = tmp_path / f"{name}.h5"
    train(name, tiny_run(**overrides), str(fashion_data_file), str(out), str(tmp_path / f"{name}_ckpt"))
    with h5py.File(out) as f:
        params = f["params"][()]
    layout = layout_of(build_model("mnist_fc", (1, 28, 28), 10, 0))
    return params, layout.layer_index(), list(layout.layers)


def test_freezing_keeps_the_layer_rows_constant(tmp_path, fashion_data_file):
    params, index, layers = _trajectory(tmp_path, fashion_data_file, "frozen", layers={"fc3": {"freeze": True}, "fc1": {"freeze_at": 5}})
    fc1, fc2, fc3 = (index == layers.index(n) for n in ("fc1", "fc2", "fc3"))
    assert np.array_equal(params[:, fc3], np.repeat(params[:1, fc3], len(params), axis=0))  # frozen at init
    assert not np.array_equal(params[5, fc1], params[0, fc1])  # moved before iteration 5
    assert np.array_equal(params[5:, fc1], np.repeat(params[5:6, fc1], len(params) - 5, axis=0))  # then stopped
    assert not np.array_equal(params[-1, fc2], params[5, fc2])


def test_learning_rate_factor_and_momentum_apply_per_layer(tmp_path, fashion_data_file):
    base, index, layers = _trajectory(tmp_path, fashion_data_file, "base")
    slow, _, _ = _trajectory(tmp_path, fashion_data_file, "slow", layers={"fc3": {"lr_factor": 0.1}})
    fc1, fc3 = index == layers.index("fc1"), index == layers.index("fc3")
    # the first step is lr x the same minibatch gradient: one tenth for fc3, unchanged for fc1
    np.testing.assert_allclose(slow[1, fc3] - slow[0, fc3], 0.1 * (base[1, fc3] - base[0, fc3]), rtol=1e-3, atol=1e-7)  # float32 rows
    np.testing.assert_array_equal(slow[1, fc1], base[1, fc1])
    run = tiny_run(layers={"fc3": {"momentum": 0.5, "lr_factor": 2.0}})
    model = build_model("mnist_fc", (1, 28, 28), 10, 0)
    groups = {g["layer"]: g for g in make_optimizer(model, layout_of(model), run).param_groups}
    assert groups["fc3"]["momentum"] == 0.5 and groups["fc1"]["momentum"] == 0.9
    assert layer_learning_rate(run, "fc3", 0) == pytest.approx(0.1) and layer_learning_rate(run, "fc1", 0) == 0.05


def test_momentum_delay_changes_the_trajectory_of_that_layer_only_from_step_two(tmp_path, fashion_data_file):
    base, index, layers = _trajectory(tmp_path, fashion_data_file, "base")
    delayed, _, _ = _trajectory(tmp_path, fashion_data_file, "delay0", layers={"fc3": {"momentum": 0.0}})
    fc3 = index == layers.index("fc3")
    np.testing.assert_array_equal(delayed[1], base[1])  # momentum buffers start as the first gradient
    assert not np.allclose(delayed[2, fc3], base[2, fc3])


GOOD = {"dataset": "fashion_mnist", "architecture": "mnist_fc", "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9}, "batch_size": 50, "iterations": 20}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"layers": {"fc9": {"freeze": True}}}, "runs.a.layers.fc9: no such layer in mnist_fc (did you mean 'fc3'?); its layers: fc1, fc2, fc3"),
        ({"layers": {"fc3": {"freeze": True, "freeze_at": 3}}}, "freeze and freeze_at both given"),
        ({"layers": {"fc3": {"freeze_at": 20}}}, "freeze_at: 20 is not below iterations 20"),
        ({"layers": {"fc3": {"lr_factor": -1}}}, "runs.a.layers.fc3.lr_factor: -1 is out of range"),
        ({"layers": {"fc3": {"momentum": 0.5}}, "optimizer": {"name": "adam", "lr": 0.002}}, "momentum applies to sgd only"),
        ({"layers": {"fc3": {"lr": 0.5}}}, "unknown key 'runs.a.layers.fc3.lr'"),
    ],
)
def test_bad_layer_settings_stop_with_one_line(changes, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_config({"runs": {"a": {**GOOD, **changes}}})


def test_experiment_expansion_declares_one_run_per_seed():
    cfg = validate_config(
        {
            "runs": {"base": GOOD},
            "experiments": {
                "normal": {"base": "base", "seeds": [0, 1, 2]},
                "frozen": {"base": "base", "seeds": [0, 1, 2], "changes": {"layers": {"fc3": {"freeze": True}}}, "compare_with": "normal"},
            },
        }
    )
    assert set(cfg["runs"]) == {"base", "normal_s0", "normal_s1", "normal_s2", "frozen_s0", "frozen_s1", "frozen_s2"}
    assert cfg["experiments"]["frozen"]["runs"] == ["frozen_s0", "frozen_s1", "frozen_s2"]
    assert cfg["runs"]["frozen_s2"]["seed"] == 2 and cfg["runs"]["frozen_s2"]["layers"]["fc3"]["freeze"] is True
    assert cfg["runs"]["normal_s0"]["layers"] is None and cfg["runs"]["normal_s0"]["optimizer"]["momentum"] == 0.9
    for bad, message in (
        ({"e": {"base": "base"}}, "experiments.e.seeds: a list of seeds is required"),
        ({"e": {"base": "nope", "seeds": [0]}}, "experiments.e.base: 'nope' is not a run"),
        ({"e": {"base": "base", "runs": ["base"]}}, "give either runs"),
        ({"e": {"base": "base", "seeds": [0], "changes": {"batch_size": 0}}}, "experiments.e.changes: batch_size: 0 is out of range"),
        ({"e": {"runs": ["base"], "seeds": [1]}}, "experiments.e.seeds: only applies with base"),
    ):
        with pytest.raises(ConfigError, match=message):
            validate_config({"runs": {"base": GOOD}, "experiments": bad})


def test_paper_learning_rates_as_presets_and_template_bases():
    cfg = validate_config(
        {
            "experiments": {
                "resnet": {
                    "base": {**GOOD, "architecture": "resnet20", "optimizer": {"name": "sgd", "lr": "paper", "momentum": 0.9}},
                    "seeds": [0, 1],
                },
                "fc_nomom": {"base": {**GOOD, "optimizer": {"name": "sgd", "lr": "paper"}}, "seeds": [0]},
                "lenet_adam": {"base": {**GOOD, "architecture": "lenet", "optimizer": {"name": "adam", "lr": "paper"}}, "seeds": [0]},
            }
        }
    )
    assert set(cfg["runs"]) == {"resnet_s0", "resnet_s1", "fc_nomom_s0", "lenet_adam_s0"}  # a template base is not run
    assert cfg["runs"]["resnet_s1"]["optimizer"]["lr"] == 0.1
    assert cfg["runs"]["fc_nomom_s0"]["optimizer"]["lr"] == 0.5
    assert cfg["runs"]["lenet_adam_s0"]["optimizer"]["lr"] == 0.002
    with pytest.raises(ConfigError, match="the paper gives no rate for vgg5 with sgd"):
        validate_config({"runs": {"a": {**GOOD, "architecture": "vgg5", "optimizer": {"name": "sgd", "lr": "paper"}}}})


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "paper").glob("*.yaml")), ids=lambda p: p.name)
def test_paper_experiment_configs_are_valid_and_switch_dataset_with_one_key(path):
    import yaml

    cfg = validate_config(yaml.safe_load(path.read_text()))
    assert cfg["experiments"] and all(len(e["runs"]) >= 1 for e in cfg["experiments"].values())
    text = path.read_text()
    for dataset in ("mnist", "cifar10"):
        switched = validate_config(yaml.safe_load(text.replace("&small fashion_mnist", f"&small {dataset}").replace("&large fashion_mnist", f"&large {dataset}")))
        assert len(switched["runs"]) == len(cfg["runs"])
