"""The device check's smoke mode (`benchmarks/gpu_check.sh --device cpu`) runs every part for real, so the
check is known to work before a GPU machine's one short call runs it (docs/speed.md#the-device-check)."""

import json
import os
import subprocess
import sys

from conftest import REPO


def test_the_device_checks_smoke_mode_runs_every_part(tmp_path):
    out = tmp_path / "check"
    done = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--out", str(out)],
        env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    parts = json.loads((out / "gpu_check.json").read_text())
    assert {name: parts[name]["rc"] for name in ("tests", "run", "bench_tf32_off", "bench_tf32_on")} == dict.fromkeys(
        ("tests", "run", "bench_tf32_off", "bench_tf32_on"), 0
    )
    tests = (out / "cuda_tests.txt").read_text()
    assert " passed" in tests and "skipped" not in tests and "failed" not in tests  # (a) ran, on the CPU
    comparison = json.loads((out / "default_run.json").read_text())["comparison"]  # (b): the CPU against itself
    assert comparison["final_params_relative_difference"] == 0 and comparison["lca_total_max_difference_of_largest"] == 0
    for tf32 in (False, True):  # (c)
        speed = json.loads((out / f"bench_tf32_{'on' if tf32 else 'off'}" / "lca_speed.json").read_text())
        assert speed["tf32"] is tf32 and [r["network"] for r in speed["results"]] == ["mnist_fc"]
        assert abs(speed["results"][0]["methods"]["simpson"]["grounding_error_pct"]) < 5
    assert json.loads((out / "versions.json").read_text())["torch"]  # (d)
    assert "(c) LCA speed" in (out / "gpu_check.md").read_text()
