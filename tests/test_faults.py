"""kill -9 during a real run never leaves a finished-looking broken file, and the rerun is byte-identical.

The full campaign (10 kills of each kind on a longer run) is `python tests/fault_injection.py`."""

import random

import pytest
from conftest import output_hashes
from fault_injection import trial


@pytest.mark.parametrize("kind", ["snakemake", "gradients"])
def test_kill_and_rerun(kind, tiny_workflow, tmp_path):
    workdir, _, _ = tiny_workflow
    # the trial runs tiny_sgd alone: its files must match the fixture's (which also has a second seed)
    reference = {k: v for k, v in output_hashes(workdir / "results").items() if not k.startswith(("runs/tiny_sgd_s1/", "experiments/"))}
    data_file = workdir / "results" / "data" / "fashion_mnist.h5"
    # the claims table sums up every run of a config, so the one-run trial's differs from the fixture's, and so
    # does the run's explorer page, which shows that table
    def ignore(name: str) -> bool:
        return name.startswith("claims.") or name.endswith("/explorer.html")

    row = trial(kind, random.Random(1), tmp_path / "trial", data_file, workdir / "datasets", reference, {}, ignore=ignore)
    assert row["landed"], "the kill came too late to test anything"
    assert row["half_written"] == []
    assert row["rerun_ok"], row["stderr_tail"]
    assert row["identical"], row["differing"]
    assert (tmp_path / "trial" / "results" / "claims.md").exists()
