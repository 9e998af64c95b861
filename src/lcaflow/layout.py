"""The layout that maps the flat parameter vector theta to named tensors and layers.

Kept free of torch so that the analysis and figure stages start quickly."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import h5py
import numpy as np

_STR = h5py.string_dtype()


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

    @functools.cached_property
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
