"""Model registry, and the layout of a model's parameters (Layout lives in lcaflow.layout, torch-free)."""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .catalog import is_import_path
from .errors import ConfigError
from .layout import Layout, apply_groups
from .plugins import call_user

__all__ = ["ARCHITECTURES", "build_model", "flat_params", "layout_of", "param_views", "register"]

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


class LeNet(nn.Module):
    """The paper's LeNet: conv 5x5x20, max-pool, conv 5x5x40, max-pool, dropout 0.25, FC 400, FC 10.
    'Same' padding gives the paper's 808,970 parameters on 28x28x1 (S8)."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        c, h, w = input_shape
        self.conv1 = nn.Conv2d(c, 20, 5, padding=2)
        self.conv2 = nn.Conv2d(20, 40, 5, padding=2)
        self.dropout = nn.Dropout(0.25)
        self.fc1 = nn.Linear(40 * (h // 4) * (w // 4), 400)
        self.fc2 = nn.Linear(400, num_classes)

    def forward(self, x):
        x = F.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = F.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc2(torch.relu(self.fc1(self.dropout(x.flatten(1)))))


class ResidualBlock(nn.Module):
    """Two 3x3 convs with batch norm; a 1x1 conv shortcut (stride 2) where the shape changes."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride) if stride != 1 or c_in != c_out else None

    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class ResNet20(nn.Module):
    """CIFAR ResNet-20 (He et al. 2016) as in the paper: 3x3 conv 16, three stages of three residual
    blocks of 16/32/64 filters, batch norm, global average pooling, FC 10. Convolutions carry biases and
    shortcuts are 1x1 convs: 273,066 parameters, the paper's S8 count."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.conv1 = nn.Conv2d(input_shape[0], 16, 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(16)
        blocks, c_in = [], 16
        for c_out, stride in ((16, 1), (32, 2), (64, 2)):
            for b in range(3):
                blocks.append(ResidualBlock(c_in, c_out, stride if b == 0 else 1))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.blocks(torch.relu(self.bn1(self.conv1(x))))
        return self.fc(x.mean((2, 3)))


class AllCNN(nn.Module):
    """The paper's AllCNN (S7 table; 1,371,658 parameters): 3x3 convs 96, 96, 96/2, 192, 192, 192/2,
    3x3 192, 1x1 192, 1x1 10, global average pooling; batch norm and 0.5 dropout where the table says."""

    SPEC = (  # (out channels, kernel, stride, batch norm, dropout after)
        (96, 3, 1, True, False),
        (96, 3, 1, True, False),
        (96, 3, 2, False, True),
        (192, 3, 1, True, False),
        (192, 3, 1, True, False),
        (192, 3, 2, False, True),
        (192, 3, 1, True, False),
        (192, 1, 1, True, False),
    )

    def __init__(self, input_shape, num_classes):
        super().__init__()
        layers, c_in = {}, input_shape[0]  # named conv1..conv9 (with bn1.. after them): readable layer names
        for i, (c_out, k, stride, bn, drop) in enumerate(self.SPEC, 1):
            layers[f"conv{i}"] = nn.Conv2d(c_in, c_out, k, stride, k // 2)
            if bn:
                layers[f"bn{i}"] = nn.BatchNorm2d(c_out)
            layers[f"relu{i}"] = nn.ReLU()
            if drop:
                layers[f"dropout{i}"] = nn.Dropout(0.5)
            c_in = c_out
        layers[f"conv{len(self.SPEC) + 1}"] = nn.Conv2d(c_in, num_classes, 1)
        self.features = nn.Sequential(OrderedDict(layers))

    def forward(self, x):
        return self.features(x).mean((2, 3))


class VGG(nn.Module):
    """VGG-like nets of Fig. S12: 3x3 'same' convs (an 'M' is a 2x2 max-pool), then fully connected layers."""

    def __init__(self, input_shape, num_classes, convs, fcs):
        super().__init__()
        layers, c, side, n = {}, input_shape[0], input_shape[1], 0
        for item in convs:
            if item == "M":
                layers[f"pool{len(layers)}"] = nn.MaxPool2d(2)
                side //= 2
            else:
                n += 1
                layers[f"conv{n}"] = nn.Conv2d(c, item, 3, 1, 1)
                layers[f"relu{n}"] = nn.ReLU()
                c = item
        self.features = nn.Sequential(OrderedDict(layers))
        dims = [c * side * side, *fcs, num_classes]
        head = {}
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:]), 1):
            head[f"fc{i}"] = nn.Linear(a, b)
            if i < len(dims) - 1:
                head[f"relu{i}"] = nn.ReLU()
        self.classifier = nn.Sequential(OrderedDict(head))

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


@register("lenet")
def lenet(input_shape, num_classes):
    return he_normal_(LeNet(input_shape, num_classes))


@register("resnet20")
def resnet20(input_shape, num_classes):
    return he_normal_(ResNet20(input_shape, num_classes))


@register("allcnn")
def allcnn(input_shape, num_classes):
    return he_normal_(AllCNN(input_shape, num_classes))


@register("vgg5")
def vgg5(input_shape, num_classes):
    """3 convs {64, 128, 256}, each followed by max-pooling, then FC 512, FC 10."""
    return he_normal_(VGG(input_shape, num_classes, (64, "M", 128, "M", 256, "M"), (512,)))


@register("vgg9")
def vgg9(input_shape, num_classes):
    """VGG-11 without its last two convs and with half the channels, then FC 512, 512, 10."""
    return he_normal_(VGG(input_shape, num_classes, (32, "M", 64, "M", 128, 128, "M", 256, 256, "M"), (512, 512)))


def build_model(
    architecture: str, input_shape, num_classes: int, seed: int, args: dict | None = None, where: str = "architecture", output=None
) -> nn.Module:
    """A freshly initialised model; the seed alone fixes the initial parameters. `architecture` is a
    registered name (built for `input_shape` and `num_classes`) or an import path "<file.py>:<callable>",
    called with `args` (`where` names the config key in errors); a model of an import path that returns a
    dict or a Hugging Face ModelOutput gives its `output` entry (its logits by default) to the loss."""
    torch.manual_seed(seed)
    if not is_import_path(architecture):
        return ARCHITECTURES[architecture](tuple(input_shape), num_classes)
    model = call_user(architecture, where, **(args or {}))
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{where}: {architecture} returned a {type(model).__name__}, not a torch.nn.Module")
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"{where}: the model of {architecture} has no trainable parameters")
    model.register_forward_hook(functools.partial(_output_entry, output, where))  # names and parameters unchanged
    return model


def _output_entry(key, where, module, args, output):
    """A forward hook: the outputs the loss takes. Of a dict or a Hugging Face ModelOutput (a dict too), its
    entry `key`, or its "logits" when no key is given and it has them; anything else as it is."""
    if key is None:
        return output["logits"] if isinstance(output, Mapping) and "logits" in output else output
    if not isinstance(output, Mapping) or key not in output:
        held = f"a {type(output).__name__} without {key!r}" + (f" (it holds {', '.join(map(str, output))})" if isinstance(output, Mapping) else "")
        raise ConfigError(f"{where}: the model returns {held}; set the run's `output` to an entry of its outputs, or remove it")
    return output[key]


def set_lca_mode(model: nn.Module) -> nn.Module:
    """Make the loss a function of theta alone: dropout off, batch norm on batch statistics."""
    model.train()
    for module in model.modules():
        if isinstance(module, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)):
            module.eval()
    return model


_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)


def _parent(module_name: str) -> str:
    return module_name.rpartition(".")[0]


def group_name(module_name: str, module: nn.Module) -> str:
    """A module's default group name: its path in the model, with its type where the path ends in a position
    only (an nn.Sequential's 0, 1, ...): "1:Linear", "features.3:Conv2d"; "model" for the model itself."""
    if not module_name:
        return "model"
    return f"{module_name}:{type(module).__name__}" if _position(module_name).isdigit() else module_name


def _position(module_name: str) -> str:
    return module_name.rpartition(".")[2]


def layout_of(model: nn.Module, groups: dict[str, str] | None = None, where: str = "groups") -> Layout:
    """The layout of a model's trainable parameters, in `named_parameters` order. By default a group (a
    "layer") is a module that owns parameters, named by `group_name`; a normalisation module joins the
    group of the module before it when both sit in the same parent (a conv and its batch norm, as the
    paper counts layers), and is a group of its own otherwise (e.g. a transformer block's first layer
    norm). `groups` (name -> regex over parameter names) regroups and renames, see
    lcaflow.layout.apply_groups."""
    names, shapes, offsets, layer_of = [], [], [], []
    offset = 0
    current_layer, current_parent = None, None
    seen: dict[int, str] = {}  # tied weights (e.g. a head sharing the embedding): one tensor, its first name
    tied: dict[str, str] = {}  # a tied tensor's other names -> its first name, for the groups' error message
    for module_name, module in model.named_modules():
        own = []
        for n, p in module.named_parameters(recurse=False):
            full = f"{module_name}.{n}" if module_name else n
            if id(p) in seen:
                tied[full] = seen[id(p)]
            else:
                seen[id(p)] = full
                own.append((n, p))
        if not own:
            continue
        folds = isinstance(module, _NORM_TYPES) and current_layer is not None and _parent(module_name) == current_parent
        if not folds:
            current_layer, current_parent = group_name(module_name, module), _parent(module_name)
        for pname, param in own:
            if not param.requires_grad:
                continue
            names.append(f"{module_name}.{pname}" if module_name else pname)
            shapes.append(tuple(param.shape))
            offsets.append(offset)
            layer_of.append(current_layer)
            offset += param.numel()
    layers = tuple(dict.fromkeys(layer_of))
    return apply_groups(Layout(tuple(names), tuple(shapes), tuple(offsets), tuple(layer_of), layers), groups, where, tied)


def flat_params(model: nn.Module, layout: Layout) -> torch.Tensor:
    params = dict(model.named_parameters())
    return torch.cat([params[n].detach().reshape(-1) for n in layout.names])


def param_views(flat: torch.Tensor, layout: Layout) -> dict[str, torch.Tensor]:
    """Named views into a flat vector; gradients of a loss built on them land in `flat.grad` order."""
    return {
        name: flat[off : off + size].view(shape)
        for name, off, size, shape in zip(layout.names, layout.offsets, layout.sizes, layout.shapes)
    }
