"""One GPU per job on one machine (lcaflow/gpus.py), on simulated GPU ids: real processes take real
slot locks, and a real Snakemake run of a scratch workflow caps its GPU jobs at the simulated GPUs."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import REPO

from lcaflow import gpus

# A job: claims a slot, writes "<gpu> <CUDA_VISIBLE_DEVICES> <start> <end>" once done holding it
# (`hold` seconds, or until <out>.release exists when hold < 0) and writes "<gpu> <CUDA_VISIBLE_DEVICES>"
# to <out>.got as soon as it has the slot.
HOLDER = """
import os, sys, time
from pathlib import Path
from lcaflow.gpus import claim_gpu

out, hold, device = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
gpu = claim_gpu(device, poll_s=0.02)
start = time.time()
got = f"{gpu} {os.environ.get('CUDA_VISIBLE_DEVICES')}"
out.with_suffix(".tmp").write_text(got)
out.with_suffix(".tmp").rename(out.with_suffix(".got"))
while (time.time() - start < hold) if hold >= 0 else not out.with_suffix(".release").exists():
    time.sleep(0.01)
out.write_text(f"{got} {start} {time.time()}")
"""


def job_env(tmp_path: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", gpus.PLAN, gpus.FAKE_GPUS)}
    return {**env, "PYTHONPATH": str(REPO / "src"), gpus.LOCK_DIR: str(tmp_path / "locks"), **extra}


def start(tmp_path: Path, name: str, env: dict, hold: float = -1, device: str = "auto") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / f"{name}.txt"), str(hold), device], env=env)


def wait_for(path: Path, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)
    return path.read_text()


def planned(tmp_path: Path, ids: list[str], per_gpu: int = 1) -> dict:
    return job_env(tmp_path, **{gpus.PLAN: gpus.slot_plan(ids, per_gpu, tmp_path / "locks")})


def max_overlap(intervals) -> int:
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals], key=lambda e: (e[0], e[1]))
    now = most = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


@pytest.mark.parametrize(("per_gpu", "jobs", "expected"), [(1, 2, ["0", "1"]), (2, 4, ["0", "0", "1", "1"])])
def test_concurrent_jobs_get_their_own_gpus(tmp_path, per_gpu, jobs, expected):
    env = planned(tmp_path, ["0", "1"], per_gpu)
    procs = [start(tmp_path, f"j{i}", env) for i in range(jobs)]
    got = [wait_for(tmp_path / f"j{i}.got").split() for i in range(jobs)]  # all hold their slots now
    for i in range(jobs):
        (tmp_path / f"j{i}.release").touch()
    assert all(p.wait(timeout=10) == 0 for p in procs)
    assert sorted(gpu for gpu, _ in got) == expected
    assert all(gpu == visible for gpu, visible in got)  # CUDA_VISIBLE_DEVICES is the slot's GPU


def test_a_killed_job_frees_its_slot(tmp_path):
    env = planned(tmp_path, ["0"])
    first = start(tmp_path, "first", env)
    assert wait_for(tmp_path / "first.got").split()[0] == "0"
    second = start(tmp_path, "second", env, hold=0)
    time.sleep(1.0)
    assert second.poll() is None and not (tmp_path / "second.got").exists()  # waiting for the one slot
    os.kill(first.pid, signal.SIGKILL)  # no cleanup runs: the kernel drops the lock with the process
    first.wait(timeout=10)
    assert wait_for(tmp_path / "second.got", timeout=5).split()[0] == "0"
    assert second.wait(timeout=10) == 0


def test_never_more_jobs_than_slots_at_once(tmp_path):
    env = planned(tmp_path, ["0", "1"])
    procs = [start(tmp_path, f"j{i}", env, hold=0.5) for i in range(3)]
    assert all(p.wait(timeout=20) == 0 for p in procs)
    held = [(tmp_path / f"j{i}.txt").read_text().split() for i in range(3)]
    intervals = [(float(a), float(b)) for _, _, a, b in held]
    assert max_overlap(intervals) == 2
    for (g1, _, a1, b1), (g2, _, a2, b2) in [(held[i], held[j]) for i in range(3) for j in range(i + 1, 3)]:
        assert g1 != g2 or float(b1) <= float(a2) or float(b2) <= float(a1)  # one GPU, one job at a time


def test_only_gpu_jobs_take_a_slot(tmp_path):
    env = planned(tmp_path, ["0", "1"])
    start(tmp_path, "cpu", env, hold=0, device="cpu").wait(timeout=10)
    assert (tmp_path / "cpu.txt").read_text().split()[:2] == ["None", "None"]
    assert not (tmp_path / "locks").exists()
    # cuda:1 is GPU 1 of the list, pinned by the run itself: its slot is taken, CUDA_VISIBLE_DEVICES left alone
    start(tmp_path, "pinned", env, hold=0, device="cuda:1").wait(timeout=10)
    assert (tmp_path / "pinned.txt").read_text().split()[:2] == ["1", "None"]
    assert [p.name for p in (tmp_path / "locks").iterdir()] == ["gpu1-slot0.lock"]
    # without a plan (no GPU, a cluster job, a script run by hand) nothing is taken
    start(tmp_path, "unplanned", job_env(tmp_path), hold=0).wait(timeout=10)
    assert (tmp_path / "unplanned.txt").read_text().split()[:2] == ["None", "None"]


def test_visible_gpus_without_torch(tmp_path, monkeypatch):
    for name in (gpus.FAKE_GPUS, "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gpus.visible_gpus() == []  # no nvidia-smi
    smi = tmp_path / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\nprintf '%s\\n' 'GPU 0: NVIDIA H100 (UUID: GPU-a)' 'GPU 1: NVIDIA A100 (UUID: GPU-b)'"
        " '  MIG 1g.10gb     Device  0: (UUID: MIG-c)'\n"
    )
    smi.chmod(0o755)
    assert gpus.visible_gpus() == ["0", "1"]
    for listed, ids in [("2,3", ["2", "3"]), ("", []), ("-1", []), ("GPU-a,-1,1", ["GPU-a"])]:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", listed)
        assert gpus.visible_gpus() == ids
    monkeypatch.setenv(gpus.FAKE_GPUS, "0,1,2")
    assert gpus.visible_gpus() == ["0", "1", "2"]
    imported = [sys.executable, "-c", "import sys, lcaflow.gpus; print(sorted(sys.modules))"]
    modules = subprocess.run(imported, capture_output=True, text=True, env=job_env(tmp_path)).stdout
    assert "lcaflow.gpus" in modules and "torch" not in modules


# A scratch workflow on the project's code path: share_gpus in the Snakefile, claim_gpu in a script job.
SNAKEFILE = """
import sys
from lcaflow.gpus import share_gpus

print(f"gpu cap: {share_gpus(workflow, config.get('jobs_per_gpu', 1))}", file=sys.stderr)  # as the Snakefile


rule all:
    input:
        expand("gpu/{i}.txt", i=range(6)),
        expand("cpu/{i}.txt", i=range(3)),


rule on_gpu:
    output:
        "gpu/{i}.txt",
    params:
        device="auto",
    resources:
        gpu=1,
    script:
        "job.py"


rule on_cpu:
    output:
        "cpu/{i}.txt",
    params:
        device="cpu",
    resources:
        gpu=0,
    script:
        "job.py"
"""
JOB = """
import os, time
from pathlib import Path
from lcaflow.gpus import claim_gpu

asked = time.time()
gpu = claim_gpu(snakemake.params.device, poll_s=0.02)
start = time.time()
time.sleep(0.8)
Path(snakemake.output[0]).write_text(f"{gpu} {os.environ.get('CUDA_VISIBLE_DEVICES')} {asked} {start} {time.time()}")
"""


def scratch_workflow(tmp_path: Path) -> Path:
    (tmp_path / "Snakefile").write_text(textwrap.dedent(SNAKEFILE))
    (tmp_path / "job.py").write_text(textwrap.dedent(JOB))
    return tmp_path


def run_snakemake(workdir: Path, *args, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-d", str(workdir), "-s", str(workdir / "Snakefile"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=job_env(workdir, **env),
    )


def test_snakemake_runs_one_job_per_simulated_gpu_beside_cpu_jobs(tmp_path):
    workdir = scratch_workflow(tmp_path)
    result = run_snakemake(workdir, "--cores", "4", **{gpus.FAKE_GPUS: "0,1"})
    assert result.returncode == 0, result.stderr
    assert "gpu cap: 2" in result.stderr
    rows = {kind: [(workdir / kind / f"{i}.txt").read_text().split() for i in range(n)] for kind, n in [("gpu", 6), ("cpu", 3)]}
    gpu = [(g, v, float(a), float(s), float(e)) for g, v, a, s, e in rows["gpu"]]
    assert max_overlap([(s, e) for *_, s, e in gpu]) == 2  # at most, and indeed, one job per GPU
    assert all(g == v and g in ("0", "1") for g, v, *_ in gpu)
    assert all(s - a < 0.3 for *_, a, s, _ in gpu)  # the scheduler kept them apart: no job waited for a slot
    for i, (g1, _, _, s1, e1) in enumerate(gpu):
        assert all(g1 != g2 for g2, _, _, s2, e2 in gpu[i + 1 :] if s2 < e1 and s1 < e2)
    cpu = [(float(s), float(e)) for g, v, _, s, e in rows["cpu"] if (g, v) == ("None", "None")]
    assert len(cpu) == 3
    assert any(s1 < e2 and s2 < e1 for s1, e1 in cpu for *_, s2, e2 in gpu)  # CPU jobs ran beside GPU jobs


@pytest.mark.parametrize(
    ("args", "fake", "cap"),
    [
        (["--cores", "4"], "0,1,2,3", "4"),
        (["--cores", "4", "--resources", "gpu=1"], "0,1,2,3", "1"),  # the user's cap wins
        (["--cores", "4", "--config", "jobs_per_gpu=2"], "0,1", "4"),  # two slots a GPU
        (["--cores", "4"], "", "None"),  # no GPU: no cap, so GPU rules still run (on the CPU)
        (["--executor", "slurm", "--jobs", "5"], "0,1,2,3", "None"),  # the cluster gives each job its GPU
    ],
)
def test_the_cap_snakemake_is_given(tmp_path, args, fake, cap):
    result = run_snakemake(scratch_workflow(tmp_path), "-n", *args, **{gpus.FAKE_GPUS: fake})
    assert result.returncode == 0, result.stderr
    assert f"gpu cap: {cap}" in result.stderr


def test_a_cluster_job_keeps_the_gpu_the_cluster_gave_it(tmp_path):
    """A SLURM job runs `snakemake --mode remote` on its node, with the environment of the submitting
    process (which may carry a plan) and CUDA_VISIBLE_DEVICES set by SLURM: it takes no slot."""
    workdir = scratch_workflow(tmp_path)
    env = {gpus.FAKE_GPUS: "0,1", gpus.PLAN: gpus.slot_plan(["0", "1"], 1, workdir / "locks"), "CUDA_VISIBLE_DEVICES": "3"}
    result = run_snakemake(workdir, "--mode", "remote", "--cores", "1", "gpu/0.txt", **env)
    assert result.returncode == 0, result.stderr
    assert (workdir / "gpu" / "0.txt").read_text().split()[:2] == ["None", "3"]
    assert not (workdir / "locks").exists()

