"""Model registry, and the layout of a model's parameters (Layout lives in lcaflow.layout, torch-free)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .layout import Layout

__all__ = ["ARCHITECTURES", "Layout", "build_model", "flat_params", "layout_of", "param_views", "register"]

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
