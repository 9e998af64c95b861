"""The size of a run: parameters, groups, FLOPs and activations per example, examples per split.

Measured on the meta device (nothing is allocated) from the model the jobs build, with the input shape and
class count they use (RunSpec.model_io)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ..catalog import OFFICIAL_TRAIN_SIZE, TEST_SIZE, is_builtin_dataset
from ..progress import log
from ..spec import RunSpec


@dataclass(frozen=True)
class ModelSize:
    num_params: int  # K, trainable parameters
    flops_per_example: float  # forward + backward, counted by torch
    activations_per_example: int  # floats of every module's output
    last_kernel: int  # entries of the last layer's kernel, whose gradients the jobs trace
    group_sizes: tuple[int, ...]  # parameters of each group (layer)
    num_classes: int  # rows of the per-class (per example group) sums (1 for a loss without classes, or `none`)
    input_numel: int
    val_group_rows: int = 0  # rows of the validation split's per-group sums (example_groups a callable or `none`), else 0
    token_groups: int = 0  # token groups priced (a grouping callable on token_cross_entropy: at most MAX_GROUPS), else 0


def _measure(model, x) -> tuple[float, int]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    activations = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: activations.append(o.numel() if isinstance(o, torch.Tensor) else 0))
        for m in model.modules()
    ]
    with FlopCounterMode(display=False) as counter:
        model(x).float().sum().backward()
    for hook in hooks:
        hook.remove()
    return counter.get_total_flops() / len(x), sum(activations) // len(x)


def _sample_inputs(spec: RunSpec, shape: tuple, data_path):
    """Four inputs as the model gets them: images for a built-in dataset, the data file's first four
    examples for a user's (their dtype matters: token ids stay integers)."""
    import torch

    from ..io import open_h5

    if is_builtin_dataset(spec.dataset):
        return torch.zeros(4, *shape)
    with open_h5(data_path, "dataset file") as f:
        return torch.from_numpy(f["x_train"][:4])


def _built(spec: RunSpec, shape: tuple, classes: int, x):
    """The model and its (FLOPs, activations) per example, on the meta device where the model allows it,
    else for real (user code that needs real tensors to build)."""
    import torch

    try:
        with torch.device("meta"):
            model = spec.build_model(shape, classes)
            return model, _measure(model, x.to("meta"))
    except Exception:
        model = spec.build_model(shape, classes)
        return model, _measure(model, x)


@cache
def _model_size(run_json: str, data_path: str | None, mtime: float | None) -> ModelSize:
    spec = RunSpec.of("run", json.loads(run_json))
    shape, classes = spec.model_io(data_path)
    model, (flops, activations) = _built(spec, shape, classes, _sample_inputs(spec, shape, data_path))
    layout = spec.layout(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    kernels = [p.numel() for p in trainable if p.dim() >= 2]
    return ModelSize(
        num_params=layout.num_params,
        flops_per_example=flops,
        activations_per_example=activations,
        last_kernel=kernels[-1] if kernels else 0,
        group_sizes=tuple(int(n) for n in layout.group_sizes()),
        num_classes=_group_rows(spec, classes),
        input_numel=math.prod(shape),
        **_split_groups(spec, classes),
    )


def _split_groups(spec: RunSpec, classes: int) -> dict:
    """What a run grouped otherwise than by its loss's default computes besides the training split's rows: the
    validation split's rows (a callable, or `none` on a loss with classes), and token groups (a callable on
    token_cross_entropy, whose labels may be per token: priced as if, with the most groups)."""
    from ..examplegroups import CLASSES, MAX_GROUPS, NONE
    from ..losses import TOKEN_LOSS

    grouping = spec.example_grouping
    callable_ = grouping not in (CLASSES, NONE)
    rows = _group_rows(spec, classes) if callable_ or (grouping == NONE and spec.loss.has_classes) else 0
    return {"val_group_rows": rows, "token_groups": MAX_GROUPS if callable_ and spec.run["loss"] == TOKEN_LOSS else 0}


def _group_rows(spec: RunSpec, classes: int) -> int:
    """Rows of the per-class sums: the classes, one group (`none`), or at most MAX_GROUPS for a grouping
    callable, whose labels are known only once the data is labelled (an upper bound)."""
    from ..examplegroups import CLASSES, MAX_GROUPS, NONE

    grouping = spec.example_grouping
    return classes if grouping == CLASSES else 1 if grouping == NONE else MAX_GROUPS


def model_size(spec: RunSpec, data_path=None) -> ModelSize | None:
    """The run's model measured on the meta device; None while a user dataset's data file does not exist."""
    builtin = is_builtin_dataset(spec.dataset)
    if not builtin and (data_path is None or not Path(data_path).is_file()):
        return None
    mtime = None if builtin else Path(data_path).stat().st_mtime
    return _model_size(json.dumps(spec.run, sort_keys=True), None if builtin else str(data_path), mtime)


@dataclass(frozen=True)
class RunSize:
    model: ModelSize
    n_train: int
    n_val: int
    data_bytes: int | None  # a user's data file, which exists before the run starts

    @property
    def num_params(self) -> int:
        return self.model.num_params

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    @property
    def examples(self) -> int:
        """Examples of one full-set evaluation: both splits."""
        return self.n_train + self.n_val

    @classmethod
    def of(cls, spec: RunSpec, data_path=None) -> RunSize | None:
        """The size of a run; None when it cannot be known yet (a user's dataset before its data file exists,
        or a model that cannot be sized: the jobs report real problems themselves)."""
        try:
            model = model_size(spec, data_path)
        except Exception as err:  # sizing is advice
            log.warning(f"cannot size run {spec.name} ({type(err).__name__}: {err}); using default resources")
            return None
        if model is None:
            return None
        run = spec.run
        if is_builtin_dataset(spec.dataset):
            n_official, n_test, data_bytes = OFFICIAL_TRAIN_SIZE[spec.dataset], TEST_SIZE[spec.dataset], None
        else:
            from ..data import data_file_info

            info = data_file_info(data_path)
            n_official, n_test, data_bytes = info["n_train"], info["n_test"], Path(data_path).stat().st_size
        if run["validation"] == "test":
            n_train, n_val = run["train_size"] or n_official, n_test
        else:
            n_train, n_val = run["train_size"] or n_official - run["val_size"], run["val_size"]
        return cls(model, n_train, n_val, data_bytes)

    def with_recorded_groups(self, trajectory_path) -> RunSize:
        """The size with the example groups that the run's trajectory records once it is trained or adopted, in
        place of the bound of MAX_GROUPS for a grouping callable (unchanged before, or for the loss's default)."""
        if not self.model.token_groups and self.model.val_group_rows <= 1 or not Path(trajectory_path).is_file():
            return self
        from dataclasses import replace

        from ..io import open_h5

        with open_h5(trajectory_path, "trajectory") as f:
            if "example_groups" not in f:
                return self
            E, per_token = len(f["example_groups/names"]), f["example_groups/train"].ndim == 2
        rows = {"token_groups": E, "num_classes": 1, "val_group_rows": 0} if per_token else {"token_groups": 0, "num_classes": E, "val_group_rows": E}
        return replace(self, model=replace(self.model, **rows))

