"""The memory each job requests (mem_mb), from the run's size; the cost plan reports the same numbers."""

from __future__ import annotations

from ..io import BLOCK_BYTES
from .size import RunSize

BASE_MEM_MB = 1500  # interpreter, torch, CUDA context
UNKNOWN_MEM_MB = 8000  # a run whose size is not known yet (a user's dataset before its data file exists)


def _mb(nbytes: float) -> int:
    return int(BASE_MEM_MB + 1.5 * nbytes / 2**20)


def _data(s: RunSize) -> int:
    return s.examples * s.model.input_numel * 4 * 2  # the float copy and the file's arrays read


def train_mem_mb(s: RunSize | None) -> int:
    return UNKNOWN_MEM_MB if s is None else _mb(_data(s) + 40 * s.num_params * 4)


def gradient_mem_mb(s: RunSize | None, lca: dict) -> int:
    if s is None:
        return UNKNOWN_MEM_MB
    # per-class gradients of the Simpson points, float64: ~650 bytes a parameter with 10 classes, measured
    # (benchmarks/results/2026-11-29_scale_*); the rows go to disk as they come, so nothing grows with T
    accumulators = 8 * (s.num_classes + s.model.val_group_rows) * s.num_params * 8  # the validation split's groups too
    if lca["quadrature"] == "adaptive" and lca.get("midpoint_sample"):  # the sample's class gradients at both ends and
        accumulators += 4 * s.num_classes * s.num_params * 8  # the midpoint, and the correction they give
    per_param = 64 * s.num_params  # the reducers' per-parameter sums and counts, theta and its step
    activations = min(lca["eval_chunk_size"], s.n_train) * s.model.activations_per_example * 4 * 3  # outputs, grads, workspace
    # lca.example_curves: the sampled examples' forward-mode pass (primal and tangent) and one tangent of theta
    curves = lca.get("example_curves", 0) * s.model.activations_per_example * 4 * 2 + (4 * s.num_params if lca.get("example_curves") else 0)
    return _mb(_data(s) + accumulators + per_param + activations + curves + token_memory(s, lca))


def token_memory(s: RunSize, lca: dict) -> int:
    """Token groups: a chunk's forward-mode (primal and tangent) or kept reverse-mode activations, theta and its
    step as parameters; with lca.token_group_parameters the E x K float64 point sums, allocation and totals."""
    E, K = s.model.token_groups, s.num_params
    if not E:
        return 0
    activations = min(lca["eval_chunk_size"], s.n_train) * s.model.activations_per_example * 4 * 2
    return activations + 3 * 4 * K + (7 * E * K * 8 if lca.get("token_group_parameters") else 0)


def analysis_mem_mb(s: RunSize | None, iterations: int) -> int:
    """A streaming analysis holds a few copies of one block, a dozen K-long arrays and the parameter
    columns it follows over all T iterations (the correlation test: up to 3 x 30 x 12 weights per
    group with the default settings, float32)."""
    if s is None:
        return UNKNOWN_MEM_MB
    followed = iterations * 3 * 30 * 12 * len(s.model.group_sizes) * 4
    return _mb(6 * BLOCK_BYTES + 12 * 8 * s.num_params + followed)
