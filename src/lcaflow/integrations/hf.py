"""`TrajectoryCallback`: record a Hugging Face `transformers.Trainer` run for the LCA workflow.

    trainer = Trainer(model, args, train_dataset=..., callbacks=[TrajectoryCallback("recorded.h5")])

theta_0 at train begin, theta_t after every real optimizer update (the recorder's optimizer hook: once per
step under gradient accumulation, never for a step a mixed-precision scaler skips), the Trainer's
optimizer settings, and each step's minibatch loss: the Trainer passes no loss to callbacks, so a forward
hook on the model reads the `loss` of its outputs in training (docs/integrations.md)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

try:
    from transformers import TrainerCallback
except ImportError as err:  # one line, with what to install
    raise ImportError("lcaflow.integrations.hf needs transformers: pip install -e '.[hf]'") from err

from ..recording import rank_and_size
from ..trajectory import TrajectoryRecorder


class TrajectoryCallback(TrainerCallback):
    """Records the Trainer's run into `path` (written as `<path>.partial`, renamed when training ends; a
    crash leaves only the .partial file). Under DDP every rank runs it, rank 0 writes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.recorder: TrajectoryRecorder | None = None
        self._hook = None
        self._share_factor = 1.0

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        torch_optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps the torch optimizer
        self.recorder = TrajectoryRecorder(self.path, model, optimizer=torch_optimizer)
        self.recorder.attach(torch_optimizer, scaler=getattr(optimizer, "scaler", None))
        # a loss normalised by the tokens of all ranks (average_tokens_across_devices) is a share of the
        # global step's loss: the ranks' shares add up, and the recorder averages over ranks
        across = getattr(args, "average_tokens_across_devices", False)
        self._share_factor = float(rank_and_size()[1]) if across else 1.0
        self._hook = model.register_forward_hook(self._read_loss, with_kwargs=True)

    def _read_loss(self, module, args, kwargs, output) -> None:
        """The loss the model computed on a training micro-batch (evaluation passes are not training)."""
        import torch

        loss = output.get("loss") if isinstance(output, Mapping) else None
        if loss is None or not module.training or not torch.is_grad_enabled():
            return
        if kwargs.get("num_items_in_batch") is not None:  # sum / the whole step's token count: a share
            self.recorder.add_loss(loss * self._share_factor, share=True)
        else:  # the micro-batch's mean: the Trainer divides it by the accumulation steps
            self.recorder.add_loss(loss)

    def on_train_end(self, args, state, control, **kwargs):
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self.recorder is not None:
            self.recorder.close()
