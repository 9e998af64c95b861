"""How every train and gradient job computes, on a GPU above all: deterministic kernels, no autotuning, and
TF32 only where a run asks for it (`runs.<run>.tf32`). docs/numerics.md says why.

`set_numerics` is called by training (lcaflow.training.train), the gradient jobs (lcaflow.gradients) and
the plan's calibration (lcaflow.cost.calibration), so that what the plan times is what the jobs run. It must
come before the process's first CUDA call: cuBLAS reads CUBLAS_WORKSPACE_CONFIG when CUDA initialises.
Imports torch only when called."""

from __future__ import annotations

import os

CUBLAS_WORKSPACE = ":4096:8"  # cuBLAS's fixed workspace: its reductions in one order (deterministic GEMMs)
DETERMINISTIC_WORKSPACES = (CUBLAS_WORKSPACE, ":16:8")  # the two settings cuBLAS documents as deterministic


def set_numerics(tf32: bool = False) -> None:
    """Deterministic algorithms (an op without one raises instead of running non-deterministically), cuDNN's
    benchmark mode off (it times kernels and may pick another one next run), TF32 matmuls and convolutions
    on only when `tf32` (float32 inputs rounded to 10-bit mantissas on Ampere and later GPUs)."""
    import torch

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
