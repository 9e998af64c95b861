"""A run resolved once from its config entry: which model, data, loss, parameter groups and device.

The train stage, the gradient jobs and the config check take a RunSpec instead of each reading the
raw settings; this is the one place where architecture, dataset and loss names become code."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from .catalog import INPUT_SHAPE, NUM_CLASSES, data_key, is_builtin_dataset, is_import_path
from .errors import ConfigError


@dataclass(frozen=True)
class RunSpec:
    name: str
    run: dict  # the validated config entry

    @classmethod
    def of(cls, name: str, run: dict) -> RunSpec:
        from .config import full_run

        return cls(name, full_run(run))

    def where(self, key: str) -> str:
        """The config key of a setting, for error messages."""
        return f"config: runs.{self.name}.{key}"

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
            self.architecture, input_shape, num_classes, self.run["seed"], self.run.get("architecture_args"), self.where("architecture")
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


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available here; set device: auto or cpu")
    return torch.device(name)
