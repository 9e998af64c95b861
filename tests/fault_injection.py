"""kill -9 the workflow or one of its jobs at random moments, rerun, and compare with an uninterrupted run.

    python tests/fault_injection.py --trials 10            # 10 kills of each kind, table at the end

After every kill, each output file that exists must be byte-identical to the uninterrupted run's (a
half-written file never looks finished); the rerun must then finish with all outputs identical."""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import SNAKEMAKE, output_hashes, snakemake, write_tiny_config  # noqa: E402

KINDS = ("snakemake", "train", "gradients", "assemble")


def is_in_progress_state(path: str) -> bool:
    """Files that exist only while work is unfinished, by design: .partial outputs and training checkpoints."""
    return path.endswith(".partial") or "/train_checkpoint/" in path


# Long enough that a kill lands inside training (after checkpoints) and inside assembly.
LONGER = {
    "run": {"iterations": 240, "train_size": 1000, "batch_size": 100, "checkpoint_every": 10},
    "lca": {"iterations_per_job": 120},
}


def _job_pids(workdir: Path, kind: str) -> list[int]:
    """Processes running the `kind` rule's script in this workdir (snakemake copies it to .snakemake/scripts)."""
    marker = f"{workdir}/.snakemake/scripts/"
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone, or not a process
            continue
        if any(a.decode(errors="replace").startswith(marker) and a.endswith(f".{kind}.py".encode()) for a in args):
            pids.append(int(proc.name))
    return pids


def _rerun(workdir: Path, config: Path) -> tuple[subprocess.CompletedProcess, bool]:
    result = snakemake(workdir, "--cores", "2", "--configfile", str(config))
    if result.returncode and "cannot be locked" in result.stderr + result.stdout:
        # a killed snakemake leaves its lock behind; this is what the user is told to do
        snakemake(workdir, "--unlock", "--configfile", str(config))
        return snakemake(workdir, "--cores", "2", "--configfile", str(config)), True
    return result, False


def trial(
    kind: str, rng: random.Random, workdir: Path, data_file: Path, datasets: Path, reference: dict, settings: dict, ignore=lambda name: False
) -> dict:
    """One kill and rerun; `ignore` names result files left out of the comparison with `reference`."""
    reference = {k: v for k, v in reference.items() if not ignore(k)}
    config = write_tiny_config(workdir, datasets=datasets, **settings)
    (workdir / "results" / "data").mkdir(parents=True)
    shutil.copy(data_file, workdir / "results" / "data" / data_file.name)
    proc = subprocess.Popen(
        [*SNAKEMAKE, "-d", str(workdir), "--cores", "2", "--configfile", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    landed, delay = False, 0.0
    if kind == "snakemake":
        delay = rng.uniform(1.0, 40.0 if settings else 18.0)
        time.sleep(delay)
        landed = proc.poll() is None
        os.killpg(proc.pid, signal.SIGKILL)  # snakemake and every job it runs: a crash of the session
    else:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None and not (pids := _job_pids(workdir, kind)):
            time.sleep(0.01)
        if proc.poll() is None and pids:
            delay = rng.uniform(0.0, {"train": 5.0, "gradients": 8.0, "assemble": 3.0}[kind])
            time.sleep(delay)
            pids = _job_pids(workdir, kind)
            if pids:
                os.kill(rng.choice(pids), signal.SIGKILL)
                landed = True
    try:
        proc.wait(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    after_kill = {k: v for k, v in output_hashes(workdir / "results").items() if not ignore(k)}
    half_written = sorted(k for k, v in after_kill.items() if reference.get(k) != v and not is_in_progress_state(k))
    resumed_training = False
    started = time.time()
    result, unlocked = _rerun(workdir, config)
    train_log = workdir / "results" / "logs" / "train" / "tiny_sgd.log"
    resumed_training = train_log.exists() and "resuming" in train_log.read_text()
    final = {k: v for k, v in output_hashes(workdir / "results").items() if not ignore(k)}
    return {
        "kind": kind,
        "landed": landed,
        "delay_s": round(delay, 2),
        "finished_looking_files_after_kill": len([k for k in after_kill if not is_in_progress_state(k)]),
        "half_written": half_written,
        "rerun_ok": result.returncode == 0,
        "identical": {k: v for k, v in final.items() if not is_in_progress_state(k)} == reference,
        "differing": sorted(k for k in set(final) | set(reference) if not is_in_progress_state(k) and final.get(k) != reference.get(k)),
        "unlock_needed": unlocked,
        "resumed_training": resumed_training,
        "rerun_s": round(time.time() - started, 1),
        "stderr_tail": "" if result.returncode == 0 else result.stderr[-800:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10, help="kills per kind")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="the 20-iteration test config instead of the longer one")
    args = parser.parse_args()
    settings = {} if args.tiny else LONGER
    rng = random.Random(args.seed)
    base = Path(tempfile.mkdtemp(prefix="lca-faults-"))
    ref_dir = base / "reference"
    config = write_tiny_config(ref_dir, **settings)
    result = snakemake(ref_dir, "--cores", "2", "--configfile", str(config))
    assert result.returncode == 0, result.stderr[-2000:]
    reference = output_hashes(ref_dir / "results")
    data_file = ref_dir / "results" / "data" / "fashion_mnist.h5"
    rows = []
    for kind in args.kinds:
        for i in range(args.trials):
            row = trial(kind, rng, base / f"{kind}-{i}", data_file, ref_dir / "datasets", reference, settings)
            shutil.rmtree(base / f"{kind}-{i}")
            rows.append(row)
            print({k: v for k, v in row.items() if k != "stderr_tail"}, row["stderr_tail"], flush=True)
    print("\n| kill of | landed / tried | reruns identical | half-written files seen | unlock needed | training resumed |")
    print("|---|---|---|---|---|---|")
    for kind in args.kinds:
        r = [row for row in rows if row["kind"] == kind]
        print(
            f"| {kind} | {sum(x['landed'] for x in r)}/{len(r)} | {sum(x['identical'] and x['rerun_ok'] for x in r)}/{len(r)} "
            f"| {sum(len(x['half_written']) for x in r)} | {sum(x['unlock_needed'] for x in r)} | {sum(x['resumed_training'] for x in r)} |"
        )
    shutil.rmtree(base, ignore_errors=True)
    sys.exit(0 if all(x["identical"] and x["rerun_ok"] and not x["half_written"] for x in rows) else 1)


if __name__ == "__main__":
    main()
