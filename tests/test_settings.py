"""lcaflow.settings is the one table of what every config key changes: it must list exactly the schema's keys,
so that a new key cannot be added without saying what it changes (and so which job reruns)."""

import pytest

from lcaflow import settings
from lcaflow.config import SCHEMA


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
    run = {**{k: None for k in settings.RUN}, "output": "logits"}
    assert set(run) - set(settings.run_params(run)) == {"checkpoint_every"}
    # a model's output entry left at null is left out: runs made before the key existed are not rerun
    assert "output" not in settings.run_params({**run, "output": None})
