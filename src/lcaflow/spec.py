"""A run resolved once from its config entry: which model, data, loss, parameter groups and device.

The train stage, the gradient jobs and the config check take a RunSpec instead of each reading the
raw settings; this is the one place where architecture, dataset and loss names become code."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cached_property

from .catalog import INPUT_SHAPE, NUM_CLASSES, data_key, is_builtin_dataset, is_import_path
from .errors import ConfigError, DivergenceError

# Run settings added after runs were made, with their defaults: jobs get a run without them when they
# are at their defaults (config.numerics_of), so that older runs keep their fingerprint and params.
LATER_KEYS = {
    "dataset_args": {},
    "architecture_args": {},
    "loss": "cross_entropy",
    "groups": {},
    "trajectory": None,
    "validation": "split",
}


def full_run(run: dict) -> dict:
    """A run as a job gets it, with the later keys' defaults back."""
    return {**copy.deepcopy(LATER_KEYS), **run}


@dataclass(frozen=True)
class RunSpec:
    name: str
    run: dict  # the validated config entry

    @classmethod
    def of(cls, name: str, run: dict) -> RunSpec:
        return cls(name, full_run(run))

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
        return data_key(self.dataset, self.run.get("dataset_args"))

    @property
    def groups(self) -> dict:
        return self.run.get("groups") or {}

    @property
    def recorded(self) -> bool:
        """The trajectory comes from the user's own training loop (runs.<run>.trajectory)."""
        return self.run.get("trajectory") is not None

    @property
    def validation(self) -> str:
        return self.run.get("validation", "split")

    @cached_property
    def loss(self):
        from .losses import resolve_loss

        return resolve_loss(self.run.get("loss", "cross_entropy"), self.where("loss"))

    @property
    def weight_decay(self) -> float:
        return self.run["optimizer"].get("weight_decay", 0.0)

    def device(self):
        return resolve_device(self.run["device"])

    def build_model(self, input_shape, num_classes: int):
        from .models import build_model

        return build_model(
            self.architecture,
            input_shape,
            num_classes,
            self.run["seed"],
            self.run.get("architecture_args"),
            self.where("architecture"),
        )

    def layout(self, model):
        from .models import layout_of

        return layout_of(model, self.groups, self.where("groups"))

    def meta_layout(self):
        """The layout without data or memory (a model built on the meta device), None when the model's
        shape depends on data not yet read (a registered network on a dataset given by import path)."""
        import torch

        if not is_import_path(self.architecture) and not is_builtin_dataset(self.dataset):
            return None
        shape = INPUT_SHAPE.get(self.dataset)
        classes = NUM_CLASSES.get(self.dataset, 0)
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
