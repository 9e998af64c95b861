"""How every train and gradient job computes, on a GPU above all: deterministic kernels, no autotuning, and
TF32 only where a run asks for it (`runs.<run>.tf32`). docs/numerics.md says why.

`set_numerics` is called by training (lcaflow.training.train), the gradient jobs (lcaflow.gradients) and
the plan's calibration (lcaflow.cost.calibration), so that what the plan times is what the jobs run. It must
come before the process's first CUDA computation: cuBLAS reads CUBLAS_WORKSPACE_CONFIG when it starts
(torch.cuda.is_available(), which resolving `device: auto` calls, starts nothing).
Imports torch only when called."""

from __future__ import annotations

import os

CUBLAS_WORKSPACE = ":4096:8"  # cuBLAS's fixed workspace: its reductions in one order (deterministic GEMMs)
DETERMINISTIC_WORKSPACES = (CUBLAS_WORKSPACE, ":16:8")  # the two settings cuBLAS documents as deterministic


def set_numerics(device, tf32: bool = False) -> None:
    """Before a process computes on `device` (a torch.device) for the first time. On a GPU: deterministic
    algorithms (an op without one raises instead of running non-deterministically), cuDNN's benchmark mode
    off (it times kernels and may pick another one next run), and TF32 matmuls and convolutions (float32
    inputs rounded to 10-bit mantissas, Ampere and later) only when `tf32`. On the CPU nothing changes: its
    kernels are deterministic at a fixed thread count already, and the deterministic mode would slow them
    (it fills all new memory; measured 20% on a conv net here)."""
    import torch

    if device.type != "cuda":
        return
    if os.environ.get("CUBLAS_WORKSPACE_CONFIG") not in DETERMINISTIC_WORKSPACES:
        if torch.cuda.is_initialized():
            raise RuntimeError(
                f"set_numerics after CUDA was initialised: export CUBLAS_WORKSPACE_CONFIG={CUBLAS_WORKSPACE} or call it first"
            )
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cuda.matmul.allow_tf32 = tf32  # off by default in torch
    torch.backends.cudnn.allow_tf32 = tf32  # on by default in torch: convolutions would round to TF32
