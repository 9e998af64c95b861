"""Per-example loss-change curves (lca.example_curves): the LCA of each of a fixed sample of examples' own
loss L_n, at every iteration, split over parameter groups, grounded per example.

Along the step delta = theta_t+1 - theta_t the LCA of L_n on group g is the integral over alpha of
grad_g L_n(theta_t + alpha delta) . delta_g. One forward-mode pass (a JVP) per group gives that derivative
for every sampled example at once. The integral is the run's rule, composite Simpson doubled until within
`lca.tolerance`, applied to the sample on its own: the run's LCA refines on the error of the mean loss, in
which the examples' errors largely cancel (one Simpson panel leaves single examples ~4% off on the tiny
test run), so the curves refine on the worst example's error, up to CURVE_MAX_SPLITS panels, and remove
what is left of each example's error (its real loss change is known from the two ends). The points are the
sample's only (M examples, G forward-mode passes each), never a full-set pass.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch.func import functional_call
from torch.func import jvp as _jvp
from torch.nn.attention import SDPBackend, sdpa_kernel

from .errors import ConfigError, DivergenceError
from .layout import Layout
from .losses import Loss
from .models import param_views, set_lca_mode
from .objective import uses_batch_statistics

SPLIT_NAMES = {"train": "training split", "val": "validation split"}
# Panels at most per step: an example's loss along a step of a ReLU net has kinks, where Simpson converges
# slowly (on the tiny test run 32 panels leave single examples ~2e-3 nats off, at 25 times the cost of 4);
# the error left is then removed, and reported (grounding.json, example_curves).
CURVE_MAX_SPLITS = 4


def jvp(fn, primals, tangents):
    """torch.func.jvp with attention by its composite (math) kernel: the fused CPU attention kernels have no
    forward-mode derivative (NotImplementedError on the char transformer's scaled_dot_product_attention)."""
    with sdpa_kernel([SDPBackend.MATH]):
        return _jvp(fn, primals, tangents)


def curve_sample(n_examples: int, m: int, seed: int, split: str, where: str) -> np.ndarray:
    """The positions, sorted, of the m sampled examples of a split of n (fixed by the run's seed and the split)."""
    if m > n_examples:
        raise ConfigError(f"{where}: {m} exceeds the {n_examples} examples of the {SPLIT_NAMES[split]}; lower it")
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    return np.sort(rng.choice(n_examples, size=m, replace=False))


class ExampleCurves:
    """The sampled examples of one split: their losses and per-group derivatives along a segment."""

    per_parameter = False  # derivatives per parameter group (G columns); TokenGroupParameters: per parameter (K)

    def __init__(self, model: torch.nn.Module, layout: Layout, x: torch.Tensor, y: torch.Tensor, loss: Loss, index, where: str):
        self.model = set_lca_mode(copy.deepcopy(model))
        if uses_batch_statistics(self.model):
            raise ConfigError(
                f"{where}: the model normalises by batch statistics, so an example's loss depends on its batch; set it to 0 for this run"
            )
        self.layout, self.x, self.y, self.loss = layout, x, y, loss
        self.index = np.asarray(index)  # the examples' indices in the dataset's training (or test) set
        self.buffers = dict(self.model.named_buffers())
        self.layers = list(layout.layers)
        self.delta: torch.Tensor | None = None  # the step of the segment being integrated

    def losses(self, theta: torch.Tensor) -> torch.Tensor:
        """(M,) float64 per-example losses at theta."""
        with torch.no_grad():
            return self._per_example(param_views(self._flat(theta), self.layout)).double()

    def check_finite(self, theta: torch.Tensor, where: str, run_name: str, split: str) -> None:
        values = self.losses(theta)
        bad = (~torch.isfinite(values)).nonzero()
        if len(bad):
            n = int(bad[0])
            raise DivergenceError(
                f"run {run_name}: the loss of example {int(self.index[n])} of the {SPLIT_NAMES[split]} is {float(values[n])} {where}; "
                f"check the data and the model's initialisation, or set lca.example_curves to 0"
            )

    def segment(self, theta0: torch.Tensor, theta1: torch.Tensor, tolerance: float, max_splits: int):
        """(lca (M, G), L_n(theta_t), L_n(theta_t+1), panels, error removed (M,)) of the step theta_t -> theta_t+1:
        composite Simpson, doubling the panels (every point reused) until every example's allocation is within
        `tolerance` of its real loss change or 2n would exceed min(max_splits, CURVE_MAX_SPLITS); then each
        example's remaining error is removed over its groups in proportion to |LCA| (as the corrected trapezoid
        does per class), so that it adds up to its real loss change."""
        t0, t1 = theta0.double(), theta1.double()
        self.delta = t1 - t0
        loss0, d0 = self.derivatives(theta0)
        loss1, d1 = self.derivatives(theta1)
        ends, change, old, n = d0 + d1, loss1 - loss0, None, 1
        while True:
            new = sum(self.derivatives(((1 - a) * t0 + a * t1).to(theta0.dtype))[1] for a in (np.arange(n) + 0.5) / n)
            lca = (ends + 4 * new + (2 * old if old is not None else 0)) / (6 * n)
            error = lca.sum(1) - change
            if not error.abs().max() > tolerance or 2 * n > min(max_splits, CURVE_MAX_SPLITS):
                break
            old = new if old is None else old + new
            n *= 2
        _remove_error(lca, error)
        return lca.cpu().numpy(), loss0.cpu().numpy(), loss1.cpu().numpy(), n, error.cpu().numpy()

    def derivatives(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(M,) losses and (M, G) derivatives grad_g L_n . delta_g at theta along the segment's step, float64
        (each a float32 forward-mode pass)."""
        params = param_views(self._flat(theta), self.layout)
        step = param_views(self.delta.to(device=self.x.device, dtype=torch.float32), self.layout)
        columns = []
        for layer in self.layers:
            tangent = {
                name: step[name] if owner == layer else torch.zeros_like(step[name])
                for name, owner in zip(self.layout.names, self.layout.layer_of_param)
            }
            values, derivative = jvp(self._per_example, (params,), (tangent,))
            columns.append(derivative.double())
        return values.detach().double(), torch.stack(columns, 1)

    def _per_example(self, params: dict) -> torch.Tensor:
        return self.loss.per_example(self._outputs(params, self.x), self.y)

    def _outputs(self, params: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, (params, self.buffers), (x,))

    def _flat(self, theta: torch.Tensor) -> torch.Tensor:
        return theta.detach().to(device=self.x.device, dtype=torch.float32)


class TokenGroups(ExampleCurves):
    """Token groups (a grouping callable's labels per predicted token, for token_cross_entropy): each group's
    loss L_g, the sum of its tokens' losses over the split's number of tokens (the L_g add up to L), and its
    derivatives, in chunks of examples over the whole training split. The same rule as the curves then gives
    the LCA of each token group on each parameter group (rows: groups, not examples)."""

    def __init__(self, model, layout, x, y, loss, labels: torch.Tensor, names: list[str], chunk: int, where: str):
        super().__init__(model, layout, x, y, loss, np.arange(len(names)), where)
        self.names, self.labels, self.tokens = names, labels, y.numel()
        self.slices = [slice(a, a + chunk) for a in range(0, len(y), chunk)]

    def derivatives(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(E,) group losses and (E, G) derivatives, summed over the chunks of the split."""
        params = param_views(self._flat(theta), self.layout)
        step = param_views(self.delta.to(device=self.x.device, dtype=torch.float32), self.layout)
        values, columns = 0.0, []
        for j, layer in enumerate(self.layers):
            tangent = {
                name: step[name] if owner == layer else torch.zeros_like(step[name])
                for name, owner in zip(self.layout.names, self.layout.layer_of_param)
            }
            total = 0.0
            for part in self.slices:
                v, d = jvp(lambda p, part=part: self._group_sums(p, part), (params,), (tangent,))
                total = total + d.double()
                if j == 0:  # the losses, once
                    values = values + v.detach().double()
            columns.append(total)
        return values, torch.stack(columns, 1)

    def losses(self, theta: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            params = param_views(self._flat(theta), self.layout)
            return sum(self._group_sums(params, part).double() for part in self.slices)

    def _group_sums(self, params: dict, part: slice) -> torch.Tensor:
        outputs = self._outputs(params, self.x[part])
        n, s, v = outputs.shape
        tokens = torch.nn.functional.cross_entropy(outputs.reshape(n * s, v), self.y[part].reshape(n * s), reduction="none")
        onehot = torch.nn.functional.one_hot(self.labels[part].reshape(-1), len(self.names)).to(tokens.dtype)
        return tokens @ onehot / self.tokens


class TokenGroupParameters(TokenGroups):
    """Token groups per parameter (lca.token_group_parameters), by reverse mode: at every point one forward over
    each chunk of the split and one backward per token group through it give each group's whole gradient; their
    products with the step, (E, K), are integrated by the same rule as TokenGroups' (E, G) derivatives, and each
    group's remaining error removed over its parameters in proportion to |LCA|. E backwards per point instead of
    G forward-mode passes (benchmarks/token_routes.py measured both on the char transformer: docs/example-groups.md)."""

    per_parameter = True

    def derivatives(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(E,) group losses and (E, K) derivatives grad_k L_g * delta_k, summed over the chunks of the split."""
        flat = self._flat(theta).clone().requires_grad_(True)
        params = param_views(flat, self.layout)
        E, values = len(self.names), 0.0
        rows = torch.zeros(E, flat.numel(), dtype=torch.float64, device=flat.device)
        for part in self.slices:
            sums = self._group_sums(params, part)
            for e in range(E):
                (grad,) = torch.autograd.grad(sums[e], flat, retain_graph=e < E - 1)
                rows[e] += grad.double()
            values = values + sums.detach().double()
        return values, rows.mul_(self.delta.to(rows.device))


def _remove_error(allocation: torch.Tensor, error: torch.Tensor) -> None:
    """Each row (example) gives up its known `error` in proportion to the magnitude of its entries (groups), in
    place: an entry's share is its share of the row's |LCA|, and no entry changes sign where the error is below
    the row's total |LCA|. A row with no |LCA| at all and an error (its loss moved, no group's derivative did)
    keeps it: the grounding report shows it."""
    magnitude = allocation.abs()
    total = magnitude.sum(-1, keepdim=True)
    share = torch.where(total > 0, error.reshape(total.shape) / total, 0.0)
    allocation.sub_(magnitude.mul_(share))
