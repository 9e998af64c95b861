"""The losses a run can analyse. L(theta) is always the mean of per-example losses over a whole split,
so that grounding means the same thing whatever the loss:

- cross_entropy: outputs (N, C) logits, targets (N,) class indices; the mean over examples, with
  per-class LCA (examples are grouped by their class).
- token_cross_entropy: outputs (N, S, V) logits, targets (N, S) token ids; an example's loss is the
  mean over its S tokens, so L is the mean over every token of the set (sequences share one length).
- mse: outputs and float targets of one shape (N, ...); an example's loss is the mean squared error
  over its values.
- "<file.py>:<callable>": `f(outputs, targets)` returning the (N,) per-example losses.

Only cross_entropy has classes; the others record one pseudo-class, "all examples"."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import ConfigError

NO_CLASSES = ["all examples"]


@dataclass(frozen=True)
class Loss:
    name: str
    per_example: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (N,) losses
    has_classes: bool = False  # targets are class indices: per-class LCA
    target_dtype: str = "any"  # "integer", "float" or "any"

    def total(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Sum of the per-example losses of a batch."""
        if self.name == "cross_entropy":  # the fused kernel: the default run's numbers stay bit-identical
            return F.cross_entropy(outputs, targets, reduction="sum")
        return self.per_example(outputs, targets).sum()

    def mean(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean over the batch: the minibatch loss of training."""
        if self.name == "cross_entropy":
            return F.cross_entropy(outputs, targets)
        return self.per_example(outputs, targets).mean()

    def check(self, outputs, targets, where: str) -> None:
        """Raise one line if a model's outputs or a dataset's targets do not fit this loss (on a small batch)."""
        if not isinstance(outputs, torch.Tensor):
            raise ConfigError(f"{where}: the model returned a {type(outputs).__name__}; the loss {self.name} needs a tensor")
        if self.target_dtype == "integer" and (targets.dtype.is_floating_point or targets.dtype == torch.bool):
            raise ConfigError(
                f"{where}: loss {self.name} needs integer targets, the dataset gives {targets.dtype}; change the dataset or the loss"
            )
        if self.target_dtype == "float" and not targets.dtype.is_floating_point:
            raise ConfigError(
                f"{where}: loss {self.name} needs float targets, the dataset gives {targets.dtype}; change the dataset or the loss"
            )
        expect = _SHAPES.get(self.name)
        if expect is not None:
            problem = expect(outputs.shape, targets.shape)
            if problem:
                raise ConfigError(
                    f"{where}: outputs {tuple(outputs.shape)} and targets {tuple(targets.shape)} do not fit loss {self.name} ({problem})"
                )
        try:
            values = self.per_example(outputs, targets)
        except Exception as err:
            raise ConfigError(
                f"{where}: loss {self.name} failed on outputs {tuple(outputs.shape)} and targets {tuple(targets.shape)} ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); make them fit"
            ) from err
        if not isinstance(values, torch.Tensor) or values.shape != (len(targets),):
            got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
            raise ConfigError(f"{where}: loss {self.name} must return one loss per example, shape ({len(targets)},), got {got}")


def _ce_shapes(out, tgt):
    if len(out) != 2 or len(tgt) != 1 or out[0] != tgt[0]:
        return "expected outputs (N, C) and targets (N,)"
    return None


def _token_shapes(out, tgt):
    if len(out) != 3 or len(tgt) != 2 or tuple(out[:2]) != tuple(tgt):
        return "expected outputs (N, S, V) and targets (N, S)"
    return None


def _mse_shapes(out, tgt):
    return None if tuple(out) == tuple(tgt) else "expected outputs and targets of the same shape"


# The loss whose per-token losses are known: token groups (runs.<run>.example_groups per token) need it.
TOKEN_LOSS = "token_cross_entropy"

_SHAPES = {"cross_entropy": _ce_shapes, "token_cross_entropy": _token_shapes, "mse": _mse_shapes}


def _token_ce(outputs, targets):
    n, s, v = outputs.shape
    return F.cross_entropy(outputs.reshape(n * s, v), targets.reshape(n * s), reduction="none").view(n, s).mean(1)


def _mse(outputs, targets):
    return (outputs - targets).square().flatten(1).mean(1) if outputs.dim() > 1 else (outputs - targets).square()


BUILTIN_LOSSES = {
    "cross_entropy": Loss("cross_entropy", lambda o, t: F.cross_entropy(o, t, reduction="none"), True, "integer"),
    "token_cross_entropy": Loss("token_cross_entropy", _token_ce, False, "integer"),
    "mse": Loss("mse", _mse, False, "float"),
}


def resolve_loss(ref: str, where: str) -> Loss:
    if ref in BUILTIN_LOSSES:
        return BUILTIN_LOSSES[ref]
    from .catalog import is_import_path
    from .plugins import load_callable

    if not is_import_path(ref):
        raise ConfigError(
            f"{where}: unknown loss {ref!r}; choose one of {', '.join(BUILTIN_LOSSES)} or give <file.py>:<callable>"
        )
    return Loss(ref, load_callable(ref, where))
