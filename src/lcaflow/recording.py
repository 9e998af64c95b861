"""What a recorder sees of the training around it: the optimizer's settings, the process's rank under data
parallelism, sharded parameters it cannot record, and the losses of the micro-batches of a step.

Used by `TrajectoryRecorder` (lcaflow.trajectory) and the trainer callbacks (lcaflow.integrations);
imports torch only inside functions that get torch objects."""

from __future__ import annotations

import math

from .errors import LCAError

# switches of how torch computes a step, not of what the step is: left out of the recorded settings
_IMPLEMENTATION = ("foreach", "fused", "capturable", "differentiable", "initial_lr")


def describe_optimizer(optimizer) -> dict:
    """The settings an optimizer trains with, as `run.config` shows them: its name (the class, lower case:
    sgd, adam, adamw, ...) and the numbers of its first parameter group (lr, momentum, betas, eps,
    weight_decay, ...) when it is described. A scheduler changes lr later: this is the lr at the start."""
    group = optimizer.param_groups[0]
    settings = {k: _plain(v) for k, v in group.items() if k != "params" and k not in _IMPLEMENTATION}
    return {"name": type(optimizer).__name__.lower(), **{k: v for k, v in settings.items() if v is not None}}


def _plain(value):
    """A setting as JSON: numbers, booleans and strings as they are, a tensor or a tuple of numbers as
    numbers; None for anything else."""
    if hasattr(value, "item") and getattr(value, "numel", lambda: 0)() == 1:
        value = value.item()
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, tuple | list) and all(isinstance(v, int | float) for v in value):
        return list(value)
    return None


def unwrap(model):
    """The module that holds the parameters under their own names: DistributedDataParallel and
    DataParallel wrap it as `.module` (its names would gain a "module." prefix)."""
    from torch import nn

    while isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
        model = model.module
    return model


def refuse_sharded(model, who: str) -> None:
    """One line when the parameters are sharded across processes (FSDP, DeepSpeed ZeRO-3): a rank holds a
    slice of theta only, and gathering the whole of it at every step would cost what the sharding saves."""
    kind = sharding_of(model)
    if kind:
        raise LCAError(
            f"{who}: the model's parameters are sharded ({kind}); a recording needs the whole theta at every step: "
            "train with DDP or on one device to record (data parallel is fine), or save full checkpoints"
        )


def sharding_of(model) -> str | None:
    """"FSDP" or "DeepSpeed ZeRO-3" when the model's parameters are shards, None when they are whole."""
    names = {type(m).__name__ for m in model.modules()}
    if names & {"FullyShardedDataParallel", "FSDPModule"} or any(n.startswith("FSDP") for n in names):
        return "FSDP"
    for param in model.parameters():
        if type(param).__name__ == "DTensor" or getattr(param, "_is_flat_param", False):
            return "FSDP"
        if hasattr(param, "ds_id"):
            return "DeepSpeed ZeRO-3"
    return None


def rank_and_size() -> tuple[int, int]:
    """This process's rank and the number of processes of torch.distributed (0, 1 without it)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def mean_over_ranks(value: float) -> float:
    """The mean of a number over the processes of data-parallel training (every rank must call it: a
    collective); the number itself in one process. A step's minibatch is the union of the ranks' batches."""
    _, size = rank_and_size()
    if size == 1:
        return value
    import torch
    import torch.distributed as dist

    total = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(total)
    return float(total.item()) / size


def as_float(loss) -> float:
    """A loss given as a tensor or a number (None: not known, NaN)."""
    if loss is None:
        return math.nan
    return float(loss.detach().float().item()) if hasattr(loss, "detach") else float(loss)


class PendingLosses:
    """The losses of the micro-batches since the last optimizer step, and the step's minibatch loss made of
    them: their mean (the loss whose gradient the step applies when each micro-batch loss is a mean over
    equally many examples and `loss / accumulation` is backpropagated), or the sum of those given as
    shares (a micro-batch's sum divided by the whole step's count of examples or tokens, as the Hugging
    Face Trainer computes it with `num_items_in_batch`).

    With a `torch.amp.GradScaler`, each loss is tagged with the scale it was computed under: a step the
    scaler skips (inf or NaN gradients) lowers the scale before the next micro-batch, so its losses are
    dropped at the next real step instead of being averaged into it."""

    def __init__(self):
        self.scaler = None
        self._losses: list[tuple[float, bool, float]] = []

    def _scale(self) -> float:
        return float(self.scaler.get_scale()) if self.scaler is not None and self.scaler.is_enabled() else 1.0

    def add(self, loss, share: bool = False) -> None:
        self._losses.append((as_float(loss), share, self._scale()))

    def take(self) -> float:
        """The minibatch loss of the step being taken (NaN when none was added), and a fresh start."""
        scale = self._scale()
        kept = [(v, share) for v, share, s in self._losses if s == scale]
        self._losses = []
        means, shares = [v for v, share in kept if not share], [v for v, share in kept if share]
        if not kept:
            return math.nan
        return math.fsum(shares) + (math.fsum(means) / len(means) if means else 0.0)

    def drop(self) -> None:
        """Forget the losses of a step that was not taken (a skipped mixed-precision step)."""
        self._losses = []
