"""lcaflow.settings is the one table of what every config key changes: it must list exactly the schema's keys,
so that a new key cannot be added without saying what it changes (and so which job reruns)."""

from pathlib import Path

import pytest
import yaml

from lcaflow import settings
from lcaflow.config import SCHEMA, validate_config

REPO = Path(__file__).resolve().parents[1]


def _schema_keys(node: dict) -> set[str]:
    if "$ref" in node:
        node = SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return set(node.get("properties", {}))


@pytest.mark.parametrize(
    ("table", "schema"),
    [
        (settings.LCA, SCHEMA["properties"]["lca"]),
        (settings.ANALYSIS_SETTINGS, SCHEMA["properties"]["analysis"]),
        (settings.DATA, SCHEMA["properties"]["data"]),
        (settings.RUN, SCHEMA["$defs"]["run"]),
    ],
    ids=["lca", "analysis", "data", "run"],
)
def test_the_table_lists_every_key_of_the_schema(table, schema):
    assert set(table) == _schema_keys(schema)


def test_the_top_level_is_its_settings_and_sections():
    assert set(settings.TOP) | set(settings.SECTION_KEYS) == set(SCHEMA["properties"])


def test_every_analysis_setting_names_rules_that_exist():
    import re
    from pathlib import Path

    rules_dir = Path(__file__).resolve().parents[1] / "rules"
    defined = set(re.findall(r"^rule (\w+):", "\n".join(p.read_text() for p in rules_dir.glob("*.smk")), flags=re.M))
    for key, setting in settings.ANALYSIS_SETTINGS.items():
        assert setting.used_by and set(setting.used_by) <= defined, key


def test_run_params_leave_out_only_what_changes_no_number():
    run = {**{k: None for k in settings.RUN}, "output": "logits", "steps": [0, 5]}  # tf32 is left out where it is off (None): see the next test
    # example_groups at its default (classes, or one group) is left out: the fingerprints of runs made before it stay
    assert set(run) - set(settings.run_params(run)) == {"checkpoint_every", "example_groups", "tf32"}
    assert set(run) - set(settings.run_params({**run, "example_groups": "groups.py:by_ink"})) == {"checkpoint_every", "tf32"}
    assert "example_groups" not in settings.run_params({**run, "example_groups": "classes"})
    assert "tf32" in settings.run_params(dict(run, tf32=True))
    # a model's output entry left at null is left out: runs made before the key existed are not rerun
    assert "output" not in settings.run_params({**run, "output": None})
    assert "steps" not in settings.run_params({**run, "steps": None})  # a run of checkpoints named by their steps: as before


def test_new_keys_at_their_defaults_leave_earlier_results_valid():
    """The default run's fingerprints as lcaflow 2026-11 wrote them into trajectories and chunks: a key added
    since (tf32, lca.midpoint_sample) changes them only when set, so a user's finished runs are not redone."""
    cfg = validate_config(yaml.safe_load((REPO / "config.yaml").read_text()))
    assert settings.run_fingerprint(cfg["runs"]["fc_sgd"]) == "a6b797078aba4615"
    # a trajectory of the version of 2026-12-05, which fingerprinted tf32: false too (Table 1's MNIST-FC
    # without momentum, as that version trained it), is still this run's
    table1 = validate_config(yaml.safe_load((REPO / "configs" / "paper" / "table1.yaml").read_text()))["runs"]["fc_sgd_nomom_s0"]
    assert settings.run_fingerprints(table1) == (settings.run_fingerprint(table1), "6b73dba9aa27365a")
    assert settings.run_fingerprints(dict(table1, tf32=True)) == (settings.run_fingerprint(dict(table1, tf32=True)),)
    assert settings.fingerprint_of(cfg["lca"], settings.NUMBERS) == "a9c3cc1f2c06ebd7"
    assert settings.fingerprint_of(cfg["lca"], settings.STORED) == "22056006024902cc"
    adaptive = validate_config({**cfg, "lca": {**cfg["lca"], "quadrature": "adaptive", "trapezoid_tolerance": None}})["lca"]
    sampled = validate_config({**cfg, "lca": {**cfg["lca"], "quadrature": "adaptive", "midpoint_sample": 256, "trapezoid_tolerance": None}})["lca"]
    assert "midpoint_sample" not in settings.lca_params(adaptive, "gradients")
    assert settings.lca_params(sampled, "gradients")["midpoint_sample"] == 256
    assert (adaptive["trapezoid_tolerance"], sampled["trapezoid_tolerance"]) == (0.0005, 0.002)
