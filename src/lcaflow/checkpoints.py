"""Checkpoint files as a trajectory: `runs.<run>.trajectory` naming a glob or a list of checkpoints.

A checkpoint is a `torch.save` state_dict (.pt, .pth, .bin), a safetensors file, a Hugging Face
`save_pretrained` directory or a Lightning `.ckpt`; each is read without running pickled code (safetensors,
or torch.load with weights_only=True). They are sorted by the step number in their names, and each
consecutive pair is one segment of the run: the workflow's LCA runs along the straight line between them,
as along an optimizer step. Torch is imported inside the functions that read tensors."""

from __future__ import annotations

import glob
import re
from pathlib import Path

import numpy as np

from .errors import ConfigError, DivergenceError, looked_in

GLOB_CHARS = re.compile(r"[*?\[]")
_STEP = re.compile(r"(?:step|global_step)[=_-]?(\d+)", re.IGNORECASE)
_NUMBER = re.compile(r"(\d+)")
HF_FILES = ("model.safetensors", "pytorch_model.bin")


def is_checkpoints(value) -> bool:
    """runs.<run>.trajectory names checkpoints (a glob or a list), not one recorder's file."""
    return isinstance(value, list) or (isinstance(value, str) and bool(GLOB_CHARS.search(value)))


def step_of(path: str) -> int | None:
    """The step number in a checkpoint's name: after `step` (Lightning's `epoch=0-step=100.ckpt`), else the
    last number of its name (`checkpoint-500`, `ckpt_000200.pt`); None without a number."""
    name = Path(path).name
    found = _STEP.findall(name) or _NUMBER.findall(Path(name).stem if Path(path).suffix else name)
    return int(found[-1]) if found else None


def checkpoint_files(value, where: str, steps: list | None = None) -> list[tuple[int, str]]:
    """(step, path) of every checkpoint, sorted by step; one line for a glob matching fewer than two, a name
    without a step number, or two checkpoints of the same step. With `steps` (runs.<run>.steps) the files
    are taken in their listed order (a glob's: sorted by name), each at its step there."""
    paths = sorted(glob.glob(value)) if isinstance(value, str) else [str(p) for p in value]
    if len(paths) < 2:
        found = f"matches {len(paths)} file{'s' if len(paths) != 1 else ''}" if isinstance(value, str) else f"lists {len(paths)}"
        raise ConfigError(
            f"{where}: {value} {found}{looked_in(value) if isinstance(value, str) else ''}; "
            "a trajectory of checkpoints needs at least two (each consecutive pair is a segment)"
        )
    for path in paths:
        if not Path(path).exists():
            raise ConfigError(f"{where}: checkpoint {path} not found{looked_in(path)}")
    if steps is not None:
        return list(zip(given_steps(steps, len(paths), where), paths))
    named = {}
    for path in paths:
        step = step_of(path)
        if step is None:
            raise ConfigError(f"{where}: {path} has no step number in its name; rename it (e.g. checkpoint-500) or give runs.<run>.steps")
        if step in named:
            raise ConfigError(f"{where}: {named[step]} and {path} are both step {step}; keep one of them")
        named[step] = path
    return sorted(named.items())


def given_steps(steps, files: int, where: str) -> list[int]:
    """runs.<run>.steps checked: one whole number >= 0 per checkpoint file, strictly increasing (each
    consecutive pair a segment forward in training)."""
    key = f"{where.rsplit('.', 1)[0]}.steps"
    if not isinstance(steps, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in steps):
        raise ConfigError(f"{key}: {steps!r}; give a list of whole step numbers >= 0, one per checkpoint file")
    if len(steps) != files:
        raise ConfigError(f"{key}: {len(steps)} steps for {files} checkpoint files; give one step per file, in their order")
    back = next((i for i in range(1, len(steps)) if steps[i] <= steps[i - 1]), None)
    if back is not None:
        raise ConfigError(
            f"{key}: {steps[back]} follows {steps[back - 1]}; the steps must increase strictly, in the order of the files"
        )
    return steps


def read_state(path: str, where: str) -> dict:
    """A checkpoint's tensors by name, read without running pickled code."""
    p = Path(path)
    if p.is_dir():
        inner = next((p / n for n in HF_FILES if (p / n).exists()), None) or next(iter(sorted(p.glob("*.safetensors"))), None)
        if inner is None:
            raise ConfigError(f"{where}: {path} holds no {' or '.join(HF_FILES)} (a save_pretrained directory)")
        return read_state(str(inner), where)
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    return _torch_state(path, where)


def _torch_state(path: str, where: str) -> dict:
    import pickle

    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ConfigError(
            f"{where}: {path} can only be loaded by running pickled code, which lcaflow never does; convert it where you "
            "trust it: torch.save(torch.load(path, weights_only=False)['state_dict'], 'step-N.pt') or save it as safetensors"
        ) from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):  # Lightning's .ckpt
        state = state["state_dict"]
    elif isinstance(state, dict) and isinstance(state.get("model"), dict):  # {"model": ..., "optimizer": ...}
        state = state["model"]
    if not isinstance(state, dict):
        raise ConfigError(f"{where}: {path} holds a {type(state).__name__}, not a state_dict of named tensors")
    return state


class CheckpointRows:
    """The rows of a trajectory of checkpoints, read a block at a time (rows[a:b]), as copy_rows reads them."""

    def __init__(self, files: list[tuple[int, str]], layout, model, where: str):
        self.files, self.layout, self.where = files, layout, where
        self.names, self.ignore = aliases(model), ignored_keys(model)

    def __getitem__(self, rows: slice) -> np.ndarray:
        return np.stack(
            [checkpoint_row(read_state(p, self.where), self.layout, self.names, p, self.where, self.ignore) for _, p in self.files[rows]]
        )


def aliases(model) -> dict[str, list[str]]:
    """Every name of each trainable tensor, its first name first: a tied weight (GPT-2's lm_head.weight is
    transformer.wte.weight) may be stored under either name, or only one. The model's buffers (persistent or
    not: older library versions stored some that newer ones recompute) are listed too, each under its own
    name: a checkpoint may hold them, but nothing else the model lacks."""
    names: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(param), []).append(name)
    buffers = {name: [name] for name, _ in model.named_buffers(remove_duplicate=False)}
    return {**buffers, **{group[0]: group for group in names.values()}}


def ignored_keys(model) -> tuple[str, ...]:
    """Patterns (regular expressions) of checkpoint entries that are neither the model's nor a sign of another
    model: what Hugging Face ignores when it loads one (`_keys_to_ignore_on_load_unexpected`, e.g. GPT-2's
    `attn.bias` masks that checkpoints of older transformers hold) and torch's `_extra_state`."""
    return (*(getattr(model, "_keys_to_ignore_on_load_unexpected", None) or ()), r"\._extra_state$")


def checkpoint_row(state: dict, layout, names: dict, path: str, where: str, ignore: tuple[str, ...] = ()) -> np.ndarray:
    """theta of one checkpoint in the layout's order (float32); one line for a parameter missing, of another
    shape, or not finite, or for a tensor the model lacks (a bigger model's checkpoint, e.g. one with more
    layers, would otherwise be read as the smaller model's)."""
    known = {alias for group in names.values() for alias in group}
    extra = [key for key in state if key not in known and not any(re.search(p, key) for p in ignore)]
    if extra:
        raise ConfigError(
            f"{where}: {path} is of another model: it holds {len(extra)} tensor(s) the model lacks, first {extra[0]}; "
            "check architecture and architecture_args"
        )
    parts = []
    for name, shape in zip(layout.names, layout.shapes):
        key = next((n for n in names.get(name, [name]) if n in state), None)
        if key is None:
            raise ConfigError(f"{where}: {path} lacks parameter {name}: a checkpoint of another model, or a partial one")
        tensor = state[key]
        if tuple(tensor.shape) != tuple(shape):
            raise ConfigError(f"{where}: {path} is of another model ({name}: {tuple(tensor.shape)} in it, {tuple(shape)} in the model)")
        parts.append(tensor.detach().float().reshape(-1).numpy())
    row = np.concatenate(parts)
    if not np.isfinite(row).all():
        raise DivergenceError(f"{where}: {path} has non-finite parameters; the training diverged there: leave it out")
    return row
