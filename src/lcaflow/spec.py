"""A run resolved once from its config entry: which model, data, loss, parameter groups and device.

The train stage, the gradient jobs and the config check take a RunSpec instead of each reading the
raw settings; this is the one place where architecture, dataset and loss names become code."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from .catalog import INPUT_SHAPE, NUM_CLASSES, data_key, is_builtin_dataset, is_import_path
from .errors import ConfigError, DivergenceError


@dataclass(frozen=True)
class RunSpec:
    name: str
    run: dict  # the validated config entry (every key present)

    @classmethod
    def of(cls, name: str, run: dict) -> RunSpec:
        return cls(name, run)

    def where(self, key: str | None = None) -> str:
        """The config key of the run or of one of its settings, for error messages."""
        return f"config: runs.{self.name}" + (f".{key}" if key else "")

    @property
    def architecture(self) -> str:
        return self.run["architecture"]

    @property
    def dataset(self) -> str:
        return self.run["dataset"]

    @property
    def data_key(self) -> str:
        return data_key(self.dataset, self.run["dataset_args"])

    @property
    def groups(self) -> dict:
        return self.run["groups"] or {}

    @property
    def recorded(self) -> bool:
        """The trajectory comes from the user's own training loop (runs.<run>.trajectory)."""
        return self.run["trajectory"] is not None

    def described(self, recorded_optimizer: dict | None = None) -> dict:
        """The run's settings as its files record them (`run.config` in a notebook): all of them for a run the
        workflow trains; for a recorded run only what is known of it, without the training settings it never
        had (settings.TRAINING_ONLY) and the split's where it validates on the test set, its optimizer as the
        recording gives it (`recorded_optimizer`), with the weight_decay of the loss analysed."""
        from .settings import SPLIT_ONLY, TRAINING_ONLY

        if not self.recorded:
            return self.run
        dropped = TRAINING_ONLY + (SPLIT_ONLY if self.validation == "test" else ())
        known = {k: v for k, v in self.run.items() if k not in dropped}
        optimizer = {**(recorded_optimizer or {}), **({"weight_decay": self.weight_decay} if self.weight_decay else {})}
        return {**known, **({"optimizer": optimizer} if optimizer else {})}

    @property
    def validation(self) -> str:
        return self.run["validation"]

    @cached_property
    def loss(self):
        from .losses import resolve_loss

        return resolve_loss(self.run["loss"], self.where("loss"))

    @property
    def example_grouping(self) -> str:
        """`classes`, `none` or the import path of the user's grouping (runs.<run>.example_groups, its default resolved)."""
        from .examplegroups import grouping

        return grouping(self.run.get("example_groups"), self.loss.has_classes, self.where("example_groups"))

    @property
    def weight_decay(self) -> float:
        return self.run["optimizer"].get("weight_decay", 0.0)

    def device(self):
        return resolve_device(self.run["device"])

    @property
    def tf32(self) -> bool:
        return self.run.get("tf32", False)  # absent from the jobs' params where off (settings.RUN)

    def build_model(self, input_shape, num_classes: int):
        from .models import build_model

        return build_model(
            self.architecture,
            input_shape,
            num_classes,
            self.run["seed"],
            self.run["architecture_args"],
            self.where("architecture"),
            self.run.get("output"),
        )

    def layout(self, model):
        from .models import layout_of

        return layout_of(model, self.groups, self.where("groups"))

    def model_io(self, data_path=None) -> tuple[tuple, int] | None:
        """The model's input shape and number of classes, as the jobs build it: a built-in dataset's from the
        catalog, a user dataset's from its data file (None before that exists); 1 class for a loss without."""
        from .losses import NO_CLASSES

        if is_builtin_dataset(self.dataset):
            shape, classes = INPUT_SHAPE[self.dataset], NUM_CLASSES[self.dataset]
        elif data_path is not None and Path(data_path).is_file():
            from .data import data_file_info

            info = data_file_info(data_path)
            shape, classes = info["input_shape"], len(info["classes"])
        else:
            return None
        return tuple(shape), classes if self.loss.has_classes else len(NO_CLASSES)

    def meta_layout(self, data_path=None):
        """The layout without data or memory (a model built on the meta device), None while the model's
        input is unknown (a dataset given by import path before its data file exists) and the model is a
        registered network; a model given by import path is built with no input shape then."""
        import torch

        io = self.model_io(data_path)
        if io is None and not is_import_path(self.architecture):
            return None
        shape, classes = io or (None, 0)
        try:
            with torch.device("meta"):
                model = self.build_model(shape, classes)
        except Exception:  # user code that needs real tensors to build: build it for real (or say why not)
            model = self.build_model(shape, classes)
        return self.layout(model)


class RunData:
    """What a run's stages need of its data file: the split, the examples, the classes, the model's input."""

    def __init__(self, spec: RunSpec, data_path, device, split: dict | None = None):
        from .data import data_file_info, load_examples, run_split
        from .losses import NO_CLASSES

        info = data_file_info(data_path)
        self.split = split if split is not None else run_split(info, spec.run, spec.where())
        self.input_shape = info["input_shape"]
        self.per_class = spec.loss.has_classes
        if self.per_class and not info["classes"]:
            raise ConfigError(
                f"{spec.where('loss')}: loss cross_entropy needs integer class indices as targets, the dataset gives {info['targets']}; "
                "choose another loss (mse, token_cross_entropy or your own)"
            )
        self.classes = info["classes"] if self.per_class else NO_CLASSES
        self.grouping, self._grouping_where = spec.example_grouping, spec.where("example_groups")
        self._loss_name = spec.loss.name
        self.train, self.val = load_examples(
            data_path, [self.split["train_indices"], self.split["val_indices"]], device, ["train", self.split["val_source"]]
        )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_labels(self, part):
        """The class of every example (all 0 without classes): the objective groups examples by it."""
        import torch

        return part.y if self.per_class else torch.zeros(len(part.y), dtype=torch.int64, device=part.y.device)

    def example_groups(self):
        """The example groups where they are not the loss's own (its classes, or one group without): an
        lcaflow.examplegroups.ExampleGroups, which the trajectory records; None for the default."""
        import numpy as np

        from .examplegroups import CLASSES, NONE, ExampleGroups, label_examples
        from .losses import NO_CLASSES, TOKEN_LOSS

        if self.grouping == CLASSES or (self.grouping == NONE and not self.per_class):
            return None
        if self.grouping == NONE:  # one group on a loss with classes: no per-class rows to compute
            return ExampleGroups(list(NO_CLASSES), {s: np.zeros(len(p.y), dtype=np.int64) for s, p in (("train", self.train), ("val", self.val))})
        tokens = self._loss_name == TOKEN_LOSS
        return label_examples(self.grouping, self._grouping_where, {"train": self.train, "val": self.val}, tokens)


def probe(spec: RunSpec, model, data: RunData) -> None:
    """A forward pass on a few training examples at theta_0: outputs and targets must fit the loss and the
    loss must be finite, before any expensive work (one line otherwise). It runs on a copy of the model and
    of the random state, so that training starts exactly as without it (batch-norm statistics, dropout)."""
    import copy

    import torch

    x, y = data.train.x[:8], data.train.y[:8]
    where = spec.where("loss")
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            outputs = copy.deepcopy(model)(x)
    except ConfigError:  # the model's outputs hold no entry for the loss: already one line
        raise
    except Exception as err:
        raise ConfigError(
            f"{spec.where('architecture')}: the model failed on inputs {tuple(x.shape)} {x.dtype} ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); make it accept the dataset's inputs"
        ) from err
    if data.per_class and isinstance(outputs, torch.Tensor) and outputs.dim() == 2 and outputs.shape[1] < data.num_classes:
        raise ConfigError(
            f"{spec.where('architecture')}: the model gives {outputs.shape[1]} outputs per example but the dataset has "
            f"{data.num_classes} classes; give the model {data.num_classes} outputs (architecture_args)"
        )
    spec.loss.check(outputs, y, where)
    value = spec.loss.mean(outputs, y)
    if not torch.isfinite(value):
        raise DivergenceError(
            f"run {spec.name}: the loss at theta_0 is {value.item()} on the first examples; check the model's initialisation and the data"
        )


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available here; set device: auto or cpu")
    return torch.device(name)
