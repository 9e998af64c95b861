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


PROBE_EXAMPLES = 4  # inputs of the first batch kept, with the model's outputs on them at theta_0


class Probe:
    """The first inputs a model sees in training and its outputs on them at theta_0, in eval mode (a forward
    pre-hook, before the training forward changes anything: batch-norm statistics, the RNG): what the
    workflow's model must reproduce from theta_0 for the LCA to be computed for the function that was
    trained. Only a first positional tensor input (or `input_ids`) and outputs that are a tensor or have
    logits are probed."""

    def __init__(self, model):
        self.inputs = self.outputs = None
        self._busy = False
        self._handle = model.register_forward_pre_hook(self._capture, with_kwargs=True)

    def _capture(self, module, args, kwargs) -> None:
        import torch

        x = args[0] if args else kwargs.get("input_ids")
        if self._busy or not isinstance(x, torch.Tensor):
            return
        self._busy = True
        try:
            self.inputs, self.outputs = probe_outputs(module, x[:PROBE_EXAMPLES].detach())
        finally:
            self._busy = False
            self.remove()

    def remove(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def probe_outputs(model, x):
    """(inputs, outputs) of `model` on `x` in eval mode, float32, autocast off, the RNG and the mode restored;
    outputs None when they are neither a tensor nor have logits."""
    from collections.abc import Mapping

    import torch

    training = model.training
    try:
        model.eval()
        with torch.no_grad(), torch.random.fork_rng(devices=[]), torch.autocast(x.device.type, enabled=False):
            out = model(x)
    finally:
        model.train(training)
    if isinstance(out, Mapping):
        out = out.get("logits")
    if not isinstance(out, torch.Tensor):
        return None, None
    return x.cpu().numpy(), out.detach().float().cpu().numpy()


def check_probe(model, theta0, layout, probe: dict, where: str, architecture: str) -> None:
    """The workflow's model at the recording's theta_0 gives the recorded outputs on the recorded inputs; one
    line otherwise (a model changed after recording with the same parameter names and shapes)."""
    import numpy as np
    import torch

    from .errors import ConfigError
    from .models import param_views

    views = param_views(torch.as_tensor(theta0, dtype=torch.float32), layout)
    named = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in views.items():
            named[name].copy_(value)
    _, outputs = probe_outputs(model, torch.as_tensor(probe["inputs"]))
    expected = probe["outputs"]
    if outputs is None or outputs.shape != expected.shape:
        got = "no tensor" if outputs is None else f"shape {outputs.shape}"
        raise ConfigError(f"{where}: {architecture} gives {got} on the recording's first inputs, the recorded model {expected.shape}; evaluate the model that was trained")
    diff = float(np.abs(outputs - expected).max())
    if not diff <= 1e-3 * max(1.0, float(np.abs(expected).max())):
        raise ConfigError(
            f"{where}: {architecture} at the recording's theta_0 gives other outputs on its first inputs than the recorded "
            f"model (max difference {diff:.3g}); the model changed after recording (an activation, a normalisation?): "
            "evaluate the model that was trained"
        )
