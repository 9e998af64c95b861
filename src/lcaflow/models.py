"""Model registry and the parameter layout that maps the flat parameter vector to names and layers."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

ARCHITECTURES: dict[str, Callable[[tuple[int, int, int], int], nn.Module]] = {}


def register(name: str):
    """Add an architecture builder `f(input_shape (C, H, W), num_classes) -> nn.Module` to the registry."""

    def add(builder):
        ARCHITECTURES[name] = builder
        return builder

    return add


def he_normal_(model: nn.Module) -> nn.Module:
    """He-normal weights (fan-in, ReLU gain) and zero biases, as the paper's networks (S7)."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


class MnistFC(nn.Module):
    """The paper's MNIST-FC: 784-100-50-10 with ReLU, no batch norm, no dropout."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int):
        super().__init__()
        n_in = int(np.prod(input_shape))
        self.fc1 = nn.Linear(n_in, 100)
        self.fc2 = nn.Linear(100, 50)
        self.fc3 = nn.Linear(50, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc1(x.flatten(1)))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


@register("mnist_fc")
def mnist_fc(input_shape, num_classes):
    return he_normal_(MnistFC(input_shape, num_classes))


def build_model(architecture: str, input_shape, num_classes: int, seed: int) -> nn.Module:
    """Build a freshly initialised model; the seed alone fixes the initial parameters."""
    torch.manual_seed(seed)
    return ARCHITECTURES[architecture](tuple(input_shape), num_classes)


def set_lca_mode(model: nn.Module) -> nn.Module:
    """Make the loss a function of theta alone: dropout off, batch norm on batch statistics."""
    model.train()
    for module in model.modules():
        if isinstance(module, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)):
            module.eval()
    return model


_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)


@dataclass(frozen=True)
class Layout:
    """How the flat parameter vector theta (length K) splits into named tensors and layers.

    Layers follow the paper: a bias, and a normalisation layer's scale and shift, belong to the
    layer of the preceding weight tensor."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]
    layer_of_param: tuple[str, ...]
    layers: tuple[str, ...]

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(int(np.prod(s)) for s in self.shapes)

    @property
    def num_params(self) -> int:
        return self.offsets[-1] + self.sizes[-1] if self.names else 0

    def layer_index(self) -> np.ndarray:
        """Layer number of every entry of theta, shape (K,)."""
        lookup = {name: i for i, name in enumerate(self.layers)}
        return np.repeat([lookup[layer] for layer in self.layer_of_param], self.sizes).astype(np.int64)

    def to_h5(self, group) -> None:
        group.create_dataset("names", data=np.array(self.names, dtype=object), dtype=_STR)
        group.create_dataset("offsets", data=np.array(self.offsets, dtype=np.int64))
        group.create_dataset("sizes", data=np.array(self.sizes, dtype=np.int64))
        group.create_dataset("layer_of_param", data=np.array(self.layer_of_param, dtype=object), dtype=_STR)
        group.create_dataset("layers", data=np.array(self.layers, dtype=object), dtype=_STR)
        group.attrs["shapes"] = json.dumps([list(s) for s in self.shapes])

    @classmethod
    def from_h5(cls, group) -> Layout:
        return cls(
            names=tuple(group["names"].asstr()[()]),
            shapes=tuple(tuple(s) for s in json.loads(group.attrs["shapes"])),
            offsets=tuple(int(o) for o in group["offsets"][()]),
            layer_of_param=tuple(group["layer_of_param"].asstr()[()]),
            layers=tuple(group["layers"].asstr()[()]),
        )


def _str_dtype():
    import h5py

    return h5py.string_dtype()


_STR = _str_dtype()


def layout_of(model: nn.Module) -> Layout:
    names, shapes, offsets, layer_of = [], [], [], []
    offset = 0
    current_layer = None
    for module_name, module in model.named_modules():
        own = list(module.named_parameters(recurse=False))
        if not own:
            continue
        if not isinstance(module, _NORM_TYPES) or current_layer is None:
            current_layer = module_name or "model"
        for pname, param in own:
            if not param.requires_grad:
                continue
            names.append(f"{module_name}.{pname}" if module_name else pname)
            shapes.append(tuple(param.shape))
            offsets.append(offset)
            layer_of.append(current_layer)
            offset += param.numel()
    layers = tuple(dict.fromkeys(layer_of))
    return Layout(tuple(names), tuple(shapes), tuple(offsets), tuple(layer_of), layers)


def flat_params(model: nn.Module, layout: Layout) -> torch.Tensor:
    params = dict(model.named_parameters())
    return torch.cat([params[n].detach().reshape(-1) for n in layout.names])


def param_views(flat: torch.Tensor, layout: Layout) -> dict[str, torch.Tensor]:
    """Named views into a flat vector; gradients of a loss built on them land in `flat.grad` order."""
    return {
        name: flat[off : off + size].view(shape)
        for name, off, size, shape in zip(layout.names, layout.offsets, layout.sizes, layout.shapes)
    }
