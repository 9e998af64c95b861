"""The layout that maps the flat parameter vector theta to named tensors and layers.

Kept free of torch so that the analysis and figure stages start quickly."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, replace

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

    def row_index(self) -> np.ndarray:
        """Row of every entry of theta, shape (K,): the rows (first-axis slices) of all tensors numbered in turn,
        a scalar tensor one row. A weight's row is one output unit's incoming weights, a bias's row one entry."""
        rows = [np.repeat(np.arange(s[0] if s else 1), n // (s[0] if s else 1)) for s, n in zip(self.shapes, self.sizes)]
        starts = np.cumsum([0] + [s[0] if s else 1 for s in self.shapes[:-1]])
        return np.concatenate([r + a for r, a in zip(rows, starts)]).astype(np.int64) if rows else np.zeros(0, np.int64)

    def group_sizes(self) -> np.ndarray:
        """Parameters of each layer (group), in the order of `layers`."""
        return np.bincount(self.layer_index(), minlength=len(self.layers))

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


def apply_groups(
    layout: Layout, groups: dict[str, str] | None, where: str = "groups", tied: dict[str, str] | None = None
) -> Layout:
    """`layout` with parameters regrouped: each group of `groups` (name -> regular expression searched in
    the parameter names) takes the parameters it matches; the others keep their module's group. Groups
    are ordered by their first parameter in theta. A pattern matching nothing, or a parameter matched by
    two patterns, is an error. `tied` (a tied tensor's other names -> the name it has in theta, e.g.
    GPT-2's lm_head.weight -> transformer.wte.weight) lets the error name the tensor a pattern meant."""
    from .errors import ConfigError

    if not groups:
        return layout
    owner = list(layout.layer_of_param)
    claimed: dict[str, str] = {}
    for group, pattern in groups.items():
        try:
            regex = re.compile(pattern)
        except re.error as err:
            raise ConfigError(f"{where}.{group}: '{pattern}' is not a regular expression ({err})") from err
        matched = [j for j, name in enumerate(layout.names) if regex.search(name)]
        if not matched:
            alias = next(((other, first) for other, first in (tied or {}).items() if regex.search(other)), None)
            if alias:
                raise ConfigError(
                    f"{where}.{group}: '{pattern}' matches only {alias[0]}, which is tied to {alias[1]} (one tensor, "
                    f"in theta once under its first name): match {alias[1]} instead"
                )
            raise ConfigError(f"{where}.{group}: '{pattern}' matches no parameter; parameters are named like {', '.join(layout.names[:4])}")
        for j in matched:
            name = layout.names[j]
            if name in claimed:
                raise ConfigError(f"{where}: parameter {name} is claimed by both {claimed[name]} and {group}; make the patterns exclusive")
            claimed[name] = group
            owner[j] = group
    return replace(layout, layer_of_param=tuple(owner), layers=tuple(dict.fromkeys(owner)))


def same_parameters(a: Layout, b: Layout) -> bool:
    """The same parameter tensors in the same order, whatever their grouping."""
    return (a.names, a.shapes, a.offsets) == (b.names, b.shapes, b.offsets)


def kernel_of(layout: Layout, layer: str) -> int:
    """Index of the layer's kernel tensor: its first tensor with 2 or more dimensions (else its first)."""
    members = [j for j, owner in enumerate(layout.layer_of_param) if owner == layer]
    return next((j for j in members if len(layout.shapes[j]) >= 2), members[0])


def units_of(layout: Layout, layer: str) -> tuple[int | None, str]:
    """(number of output units, "") of a group whose tensors all share their first axis with its kernel
    (a Linear, Conv or Embedding weight with its bias and norm), else (None, why not)."""
    members = [j for j, owner in enumerate(layout.layer_of_param) if owner == layer]
    kernel = kernel_of(layout, layer)
    if len(layout.shapes[kernel]) < 2:
        return None, "no weight with an output-unit axis (only vectors)"
    units = layout.shapes[kernel][0]
    odd = [j for j in members if not layout.shapes[j] or layout.shapes[j][0] != units]
    if odd:
        j = odd[0]
        rows = layout.shapes[j][0] if layout.shapes[j] else "none (a scalar)"
        return (
            None,
            f"its tensors do not share an output-unit axis ({layout.names[kernel]} has {units} rows, {layout.names[j]} {rows})",
        )
    return units, ""
