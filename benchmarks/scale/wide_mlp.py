"""The scale benchmark's network: a wide MLP on 28x28 images, 784-1600-512-10 (2,080,842 parameters)."""

from torch import nn


def build(hidden: tuple[int, ...] = (1600, 512), num_classes: int = 10) -> nn.Module:
    sizes = [784, *hidden]
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in zip(sizes, sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(sizes[-1], num_classes))
