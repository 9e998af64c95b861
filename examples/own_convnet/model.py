"""Your own vision model for the workflow: any function returning a torch.nn.Module.

The config names it as "examples/own_convnet/model.py:build" with keyword arguments under
`architecture_args`; the workflow seeds torch before calling it, so the seed fixes theta_0."""

from torch import nn


def build(channels: int = 16, hidden: int = 64, num_classes: int = 10) -> nn.Module:
    """Two 3x3 conv + batch norm + ReLU + 2x2 max-pool stages on 28x28x1 images, then two linear layers."""
    return nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1),
        nn.BatchNorm2d(channels),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(channels, 2 * channels, 3, padding=1),
        nn.BatchNorm2d(2 * channels),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * channels * 7 * 7, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )
