"""`TrajectoryCallback`: record a Lightning `Trainer.fit` run for the LCA workflow.

    trainer = lightning.Trainer(..., callbacks=[TrajectoryCallback("recorded.h5")])

Lightning has no hook after an optimizer step (`on_train_batch_end` fires for every micro-batch), so the
callback counts the real updates with the optimizers' step hooks (Optimizer.register_step_post_hook: a
step a mixed-precision scaler skips calls no optimizer.step) and records theta_t at the end of the batch
in which an update happened: once per optimizer step under `accumulate_grad_batches`, and under manual
optimization wherever `training_step` calls `opt.step()`. The step's minibatch loss is the mean of the
losses `training_step` returned for its micro-batches (Lightning passes them on divided by
`accumulate_grad_batches` under automatic optimization: multiplied back), NaN where it returns none
(docs/integrations.md)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

try:
    from lightning.pytorch.callbacks import Callback
except ImportError as err:  # one line, with what to install
    raise ImportError("lcaflow.integrations.lightning needs lightning: pip install -e '.[lightning]'") from err

from ..errors import LCAError
from ..recording import PendingLosses
from ..trajectory import TrajectoryRecorder


class TrajectoryCallback(Callback):
    """Records the fit of a LightningModule into `path` (written as `<path>.partial`, renamed when training
    ends; a crash leaves only the .partial file); parameters named as in the module. Under DDP every rank
    runs it, rank 0 writes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.recorder: TrajectoryRecorder | None = None
        self._pending = PendingLosses()
        self._handles: list = []
        self._updates = self._attempts = 0

    def on_train_start(self, trainer, pl_module):
        optimizers = list(trainer.optimizers)
        self.recorder = TrajectoryRecorder(self.path, pl_module, optimizer=optimizers[0] if optimizers else None)
        self._handles = [opt.register_step_post_hook(self._updated) for opt in optimizers]

    def _updated(self, *_) -> None:
        self._updates += 1

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self._attempts += 1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if loss is not None and pl_module.automatic_optimization:  # Lightning hands over loss / accumulation
            loss = loss * trainer.accumulate_grad_batches
        self._pending.add(loss)
        if self._updates > 1:
            raise LCAError(
                f"{self.path}: {self._updates} optimizer steps in one batch; LCA needs theta after each: "
                "step one optimizer once per batch, or record with lcaflow.TrajectoryRecorder(...).attach(optimizer)"
            )
        if self._updates:
            self.recorder.step(self._pending.take())
        elif self._attempts:  # a step the scaler skipped: its micro-batches' losses are not a step's
            self._pending.drop()
        self._updates = self._attempts = 0

    def on_train_end(self, trainer, pl_module):
        for handle in self._handles:
            handle.remove()
        self._handles = []
        if self.recorder is not None:
            self.recorder.close()
