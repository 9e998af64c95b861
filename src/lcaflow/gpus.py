"""GPUs on one machine, without torch: which GPUs this machine shows, how many GPU jobs Snakemake runs
at once here, and one GPU per job.

- The Snakefile calls `share_gpus(workflow)` while it is parsed. In the Snakemake process of a local run
  that sees N GPUs it sets the global resource `gpu` to N * jobs_per_gpu (as `--resources gpu=...` would;
  the user's own `--resources gpu=...` wins), so the scheduler starts no more GPU jobs than there are
  slots, and it hands its jobs the slot plan in the environment (PLAN).
- A job that will use a GPU calls `claim_gpu(device)` before its first CUDA call: it locks a free slot
  (one lock file per slot, `flock`, released by the kernel when the process ends, even by SIGKILL) and
  sets CUDA_VISIBLE_DEVICES to the slot's GPU, so that `cuda` in the job is that GPU.

Under a cluster executor (`--executor slurm`, which needs `--jobs`) nothing is capped and jobs take no
slot: the cluster gives each job its GPU and sets CUDA_VISIBLE_DEVICES itself.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FAKE_GPUS = "LCAFLOW_FAKE_GPUS"  # simulated GPU ids ("0,1") for tests on machines without GPUs; read only here
PLAN = "LCAFLOW_GPU_SLOTS"  # the slot plan, set by the Snakefile for its local jobs (JSON)
LOCK_DIR = "LCAFLOW_GPU_LOCK_DIR"  # where the slot locks live, if not the per-user default
JOBS_PER_GPU = 1  # GPU jobs sharing one GPU at once

log = logging.getLogger("lcaflow")
_held: dict = {}  # this process's slot: its GPU id and the open, locked file descriptor


def visible_gpus() -> list[str]:
    """The GPU ids this process may use, as CUDA_VISIBLE_DEVICES takes them: the simulated ones of
    LCAFLOW_FAKE_GPUS if set, else CUDA_VISIBLE_DEVICES if set, else the indices `nvidia-smi -L` lists,
    else none. Never initialises CUDA (the Snakemake process must not hold a GPU context)."""
    fake = os.environ.get(FAKE_GPUS)
    if fake is not None:
        return _ids(fake)
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return _ids(listed)
    return _nvidia_smi_gpus()


def _ids(text: str) -> list[str]:
    """Ids of a CUDA_VISIBLE_DEVICES-like list; like CUDA, stop at the first empty or negative entry
    ("" and "-1" hide every GPU)."""
    ids = []
    for part in text.split(","):
        part = part.strip()
        if not part or part.startswith("-"):
            break
        ids.append(part)
    return ids


def _nvidia_smi_gpus() -> list[str]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []  # no driver loaded, or a hung one: no GPUs as far as scheduling goes
    # "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-...)"; MIG instances are indented lines and not counted
    return re.findall(r"^GPU (\d+):", out, flags=re.M)


def gpu_name() -> str | None:
    """The model name of the first GPU this process may use (`nvidia-smi`), without initialising CUDA; None
    without a GPU or a driver. What a calibration on a GPU is keyed by (lcaflow.cost.calibration)."""
    gpus = visible_gpus()
    if not gpus:
        return None
    if os.environ.get(FAKE_GPUS) is not None:
        return "simulated GPU"
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name", "--format=csv,noheader", "-i", gpus[0]], capture_output=True, text=True, timeout=20, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().splitlines()[0] if out.strip() else None


def lock_dir() -> Path:
    """Per user, on this machine's own disk: a GPU belongs to the machine, not to one results dir (two
    workflows of the user share the slots), and flock on a shared file system would either fail or lock
    across nodes. LCAFLOW_GPU_LOCK_DIR overrides it."""
    chosen = os.environ.get(LOCK_DIR)
    return Path(chosen) if chosen else Path(tempfile.gettempdir()) / f"lcaflow-gpus-{os.getuid()}"


def slot_plan(gpus: list[str], jobs_per_gpu: int = JOBS_PER_GPU, where: Path | None = None) -> str:
    """The value of PLAN for jobs that share these GPUs."""
    return json.dumps({"gpus": list(gpus), "jobs_per_gpu": jobs_per_gpu, "lock_dir": str(where or lock_dir())})


def share_gpus(workflow, jobs_per_gpu: int = JOBS_PER_GPU) -> int | None:
    """Called by the Snakefile: the cap on concurrent GPU jobs it set (N GPUs * jobs_per_gpu, or the
    user's --resources gpu=...), or None where it sets none.

    Relies on Snakemake internals (9.x), read by the scheduler when it starts: `workflow.global_resources`
    (what `--resources` fills; setdefault keeps the user's value), `workflow.resource_settings.nodes`
    (`--jobs`, which every cluster executor requires; a local `--cores` run has none) and the process's
    exec mode (`--mode remote` is a job on a cluster node, which gets its GPU from the cluster)."""
    if workflow.remote_exec:
        os.environ.pop(PLAN, None)  # a plan exported by the submitting process does not hold on this node
        return None
    if not workflow.is_main_process:
        return None  # a local job's own Snakemake process: it keeps its parent's plan
    gpus = visible_gpus()
    if not gpus or jobs_per_gpu < 1:
        os.environ.pop(PLAN, None)
        return None
    os.environ[PLAN] = slot_plan(gpus, jobs_per_gpu)  # inherited by the jobs this process starts
    if workflow.resource_settings.nodes is not None:
        # --jobs kept apart from --cores: a cluster executor, or locally `-n -j N` or `--cores N --jobs M`,
        # where the slots alone keep jobs apart (the extra ones wait)
        return None
    cap = workflow.global_resources.setdefault("gpu", len(gpus) * jobs_per_gpu)
    return getattr(cap, "value", cap)  # a Resource in Snakemake 9.27; older versions held plain ints


def claim_gpu(device: str, poll_s: float = 0.5) -> str | None:
    """Give this process a GPU of its own for its lifetime: the GPU id it got, or None where it takes
    none (device cpu, no slot plan: no GPU here, a cluster job, or not run by the Snakefile).

    `device` is the run's setting: `auto` and `cuda` take any free slot and set CUDA_VISIBLE_DEVICES to
    its GPU (which the job then sees as cuda:0); `cuda:K` waits for a slot of GPU K of the list and leaves
    CUDA_VISIBLE_DEVICES as it is. With every slot taken (more jobs than slots: another workflow on the
    machine, or a user's larger --resources gpu=...) it logs a line and waits.

    Must run before the process's first CUDA call: CUDA reads CUDA_VISIBLE_DEVICES once, when it
    initialises; `import torch` does not initialise it, torch.cuda.is_available() and any cuda tensor do."""
    if not (device == "auto" or device.startswith("cuda")):
        return None
    plan = os.environ.get(PLAN)
    if not plan:
        return None
    if "gpu" in _held:
        return _held["gpu"]
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        raise RuntimeError("claim_gpu after CUDA was initialised: CUDA_VISIBLE_DEVICES would be ignored")
    plan = json.loads(plan)
    gpus, per_gpu = plan["gpus"], plan["jobs_per_gpu"]
    pinned = int(device.split(":")[1]) if ":" in device else None
    if pinned is not None and pinned >= len(gpus):
        return None  # no such GPU here: torch says so when the job asks for it
    wanted = gpus if pinned is None else [gpus[pinned]]
    # Slot k of every GPU before slot k+1 of any: jobs spread over the GPUs before they share one
    slots = [(gpu, k) for k in range(per_gpu) for gpu in wanted]
    where = Path(plan["lock_dir"])
    where.mkdir(mode=0o700, parents=True, exist_ok=True)
    started, fd, waiting = time.monotonic(), None, False
    while fd is None:
        for gpu, k in slots:
            fd = _lock(where / f"gpu{_file_safe(gpu)}-slot{k}.lock")
            if fd is not None:
                break
        else:
            if not waiting:
                log.info(f"all {len(slots)} GPU slots in {where} are taken; waiting for one")
                waiting = True
            time.sleep(poll_s)
    if pinned is None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    _held.update(gpu=gpu, fd=fd)
    waited = f", after waiting {time.monotonic() - started:.0f} s" if waiting else ""
    log.info(f"GPU {gpu}, slot {k + 1} of {per_gpu} (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')}{waited})")
    return gpu


def _file_safe(gpu: str) -> str:
    return re.sub(r"[^\w.-]", "_", gpu)  # an index, or a UUID as in CUDA_VISIBLE_DEVICES=GPU-...


def _lock(path: Path) -> int | None:
    """The open descriptor of `path`, exclusively flock-ed by this process, or None if another holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())  # who holds it, for a curious `cat`
    return fd
