"""Reading a finished run in a notebook: `open_run(path)` and the `Run` it returns.

`Run` reads `lca.h5` lazily: opening a run reads only its metadata, `run.lca` reads only the rows
asked for (from the chunk files, decoded to float32 whatever the storage), and the per-group, per-class,
per-neuron and per-parameter sums come from the small arrays that the gradient jobs reduced. The file format is in docs/file-formats.md,
the page for notebooks is docs/notebook.md."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import h5py
import numpy as np

from .errors import CorruptFileError, LCAError, NotBuiltError, did_you_mean, looked_in
from .io import read_json_attr, require
from .layout import Layout
from .paths import STATS_FILES, RunPaths
from .storage import Matrix, matrix, open_lca
from .tables import read_tsv

SPLITS = {"train": "", "val": "_val"}


def open_run(path) -> Run:
    """Open the run folder `path` (e.g. `results/runs/fc_sgd`, holding `lca.h5`) for reading.

    Use it as a context manager (`with open_run(path) as run:`) or call `run.close()` when done.
    A missing folder or `lca.h5` raises a one-line NotBuiltError that says where it looked and names the
    snakemake target that builds it; an unreadable `lca.h5` a CorruptFileError."""
    return Run(path)


def open_runs(paths) -> Runs:
    """Open several run folders (seeds, models) to compare them: their per-group, per-class and per-iteration
    LCA lined up, one row per run. Use it as a context manager, or call `runs.close()`."""
    return Runs(paths)


class Run:
    """A finished run: its LCA, losses, layout and analysis tables.

    Members: `name`, `path`, `config`, `layout`, `groups`, `classes`, `example_groups`, `iterations` (T), `num_params` (K),
    `grounding`; the (T, K) matrices `lca` and `lca_val` (read as float32; (T, S) with `columns` when the
    run stores a sample, `sampled`; `lca_val` only when stored); the (T+1,) losses `loss` and `loss_val`;
    `by_group()`, `by_class()`, `by_example_group()`, `example_group_loss()`, `example_curves()`, `curve_examples()`,
    `curve_losses()`, `by_neuron(group)`, `per_iteration()`, `totals()`, `parameter_totals()`,
    `parameter(name)`, `group_columns(group)`, `table(name)` and `stats(name)`. Groups are the layout's layers: by default
    those of the paper (a bias belongs to the preceding weight's group); a group's columns need not be
    contiguous, `group_columns` gives them."""

    def __init__(self, path):
        self.path = Path(path)
        self.paths = RunPaths(str(self.path))
        lca_path = Path(self.paths.lca)
        if not self.path.is_dir():
            raise NotBuiltError(f"{self.path}: no such run folder{looked_in(self.path)}{_siblings(self.path)}; make it with {_make(lca_path)}")
        if not lca_path.is_file():
            raise NotBuiltError(f"{lca_path}: missing, not built yet{looked_in(lca_path)}; make it with {_make(lca_path)}")
        self._file: h5py.File | None = open_lca(lca_path)
        try:
            require(self._file, ("lca", "lca_layer", "loss", "loss_val", "layout"), lca_path, "assemble")
            self.name: str = str(self._file.attrs.get("run_name", self.path.name))
        except BaseException:
            self.close()
            raise
        self._warn_if_stale()
        self._warn_if_not_reproduced()

    def _warn_if_not_reproduced(self) -> None:
        """A recorded run whose evaluated model does not reproduce its training losses (grounding.json)."""
        import warnings

        checked = self.grounding.get("recorded_losses") or {}
        if checked.get("reproduced") is False:
            warnings.warn(
                f"{self.path}: the evaluated model does not reproduce the recording's training losses ({checked.get('mismatch', 'see grounding.json')}): "
                "its LCA may be of another function than was trained",
                stacklevel=4,
            )

    def _warn_if_stale(self) -> None:
        """lca.h5 outlives a failed rerun of its run (Snakemake deletes only the failed job's outputs)."""
        import warnings

        trajectory = Path(self.paths.trajectory)
        made_from = self._file.attrs.get("trajectory_fingerprint")
        if not trajectory.is_file():
            if not json.loads(self._file.attrs.get("lca_config", "{}")).get("keep_trajectory", True):
                return  # deleted on purpose (lca.keep_trajectory: false)
            warnings.warn(
                f"{self.path}: trajectory.h5 is missing, so lca.h5 may be out of date; rerun the workflow", stacklevel=4
            )
            return
        try:
            with h5py.File(trajectory, "r") as f:
                current = f.attrs.get("fingerprint")
        except OSError:
            return
        if made_from is not None and current is not None and str(made_from) != str(current):
            warnings.warn(
                f"{self.path}: lca.h5 was made from another trajectory than trajectory.h5; rerun the workflow", stacklevel=4
            )

    # -- opening and closing ----------------------------------------------------------------------

    def close(self) -> None:
        """Close lca.h5 (calling it again does nothing)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        for cached in ("lca", "lca_val"):
            self.__dict__.pop(cached, None)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def _f(self) -> h5py.File:
        if self._file is None:
            raise LCAError(f"run {self.name} is closed; open it again with open_run({str(self.path)!r})")
        return self._file

    def _read(self, key: str) -> np.ndarray:
        require(self._f, (key,), self.paths.lca, "assemble")
        return self._f[key][()]

    def __repr__(self) -> str:
        if self._file is None:
            return f"<Run {self.name} (closed)>"
        try:
            error = f", cumulative error {self.grounding['train']['cumulative_error_pct']:+.3g}%"
        except (LCAError, KeyError, TypeError):
            error = ""
        return (
            f"<Run {self.name}: T={self.iterations} iterations, K={self.num_params:,} parameters, "
            f"groups {', '.join(self.groups)}{error}>"
        )

    # -- metadata ---------------------------------------------------------------------------------

    @functools.cached_property
    def config(self) -> dict:
        """The run's settings as the workflow used them (dataset, architecture, optimizer, iterations, ...); for a
        run recorded by your own loop only what the recording knows (no batch size or optimizer placeholders)."""
        return read_json_attr(self._f, "run_config", self.paths.lca)

    @functools.cached_property
    def layout(self) -> Layout:
        """How the K columns split into parameter tensors (`names`, `shapes`, `offsets`) and groups."""
        try:
            return Layout.from_h5(self._f["layout"])
        except (KeyError, ValueError) as err:
            raise CorruptFileError(f"{self.paths.lca}: layout unreadable ({err}); delete it and rerun assemble") from err

    @property
    def groups(self) -> tuple[str, ...]:
        """Group (layer) names, in the order of the columns of `by_group()`."""
        return self.layout.layers

    @functools.cached_property
    def classes(self) -> list[str] | None:
        """Class names, in the order of the columns of `by_class()`; None when the run's loss has no classes
        or its examples are grouped otherwise (runs.<run>.example_groups: see `example_groups`)."""
        if not bool(self._f.attrs.get("per_class", True)) or "example_groups" in self._f.attrs:
            return None
        return self.example_groups

    @functools.cached_property
    def example_groups(self) -> list[str]:
        """Example group names, in the order of the columns of `by_example_group()`: the classes, the labels
        of the run's grouping callable, or ["all examples"] (runs.<run>.example_groups)."""
        key = "token_groups" if "token_groups" in self._f else "classes"  # token groups, or the per-class rows
        require(self._f, (key,), self.paths.lca, "assemble")
        return [str(c) for c in self._f[key].asstr()[()]]

    @property
    def iterations(self) -> int:
        """T, the number of training iterations (rows of `lca`)."""
        return int(self._f["lca_layer"].shape[0])

    @functools.cached_property
    def steps(self) -> np.ndarray:
        """The training step of each theta (T + 1): 0..T for a recorded or trained run; for a run of checkpoints
        (runs.<run>.trajectory a glob or list) their steps, so that iteration t is the segment from steps[t] to
        steps[t + 1]."""
        if "steps" in self._f.attrs:
            return np.asarray(json.loads(self._f.attrs["steps"]), dtype=np.int64)
        return np.arange(self.iterations + 1)

    @property
    def num_params(self) -> int:
        """K, the number of trainable parameters (columns of theta)."""
        return self.layout.num_params

    @functools.cached_property
    def grounding(self) -> dict:
        """How well the LCA sums to the real loss change (grounding.json; keys in docs/file-formats.md)."""
        path = Path(self.paths.grounding)
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except ValueError as err:
                raise CorruptFileError(f"{path}: not valid JSON ({err}); delete it and rerun assemble") from err
        return read_json_attr(self._f, "grounding", self.paths.lca)

    # -- the data ---------------------------------------------------------------------------------

    @functools.cached_property
    def lca(self) -> Matrix:
        """(T, K) LCA on the training split, read as float32 whatever its storage (`run.lca[a:b]` reads rows
        a..b-1 only). With lca.store: sampled it is (T, S): `run.lca.columns` are its S columns of theta."""
        return matrix(self._f, "lca", self.paths.lca)

    @functools.cached_property
    def lca_val(self) -> Matrix:
        """(T, K) LCA on the held-out validation split, as `lca`; stored only with lca.store_validation: true
        (`by_group("val")` always works)."""
        return matrix(self._f, "lca_val", self.paths.lca)

    @property
    def sampled(self) -> bool:
        """Whether `lca` holds a sample of the parameters (lca.store: sampled) rather than all of them."""
        return "sample_index" in self._f

    def parameter_totals(self) -> np.ndarray:
        """(K,) float64: each parameter's LCA summed over training (every parameter, whatever is stored)."""
        return self._read("lca_total")

    def by_neuron(self, group: str) -> np.ndarray:
        """(T, units) float64: LCA of each output neuron (channel) of a group at every iteration: its kernel
        row with its bias and norm entries (every parameter, whatever is stored)."""
        if f"lca_neuron/{group}" not in self._f:
            have = ", ".join(self._f["lca_neuron"]) if "lca_neuron" in self._f else "none"
            raise LCAError(f"run {self.name}: no per-neuron LCA for group {group!r}{did_you_mean(group, self.groups)} (groups with neurons: {have})")
        return self._f[f"lca_neuron/{group}"][()].astype(np.float64)

    @property
    def loss(self) -> np.ndarray:
        """(T+1,) full-set training loss at theta_0 .. theta_T."""
        return self._read("loss")

    @property
    def loss_val(self) -> np.ndarray:
        """(T+1,) validation loss at theta_0 .. theta_T."""
        return self._read("loss_val")

    def by_group(self, split: str = "train") -> np.ndarray:
        """(T, G) float64: LCA of each group (columns in the order of `groups`) at every iteration.
        `split` is "train" or "val"."""
        return self._read(f"lca{_suffix(split)}_layer").astype(np.float64)

    def by_class(self) -> np.ndarray:
        """(T, C) float64: LCA of each class's examples' loss at every iteration (training split; the
        weight-decay term belongs to no class)."""
        if self.classes is None and "example_groups" in self._f.attrs:
            raise LCAError(
                f"run {self.name}: its examples are grouped by example_groups {self._f.attrs['example_groups']}, not by class; use by_example_group()"
            )
        if self.classes is None:
            raise LCAError(f"run {self.name}: its loss has no classes, so there is no per-class LCA")
        return self._read("lca_class_layer").sum(axis=2)

    def by_example_group(self, split: str = "train") -> np.ndarray:
        """(T, E) float64: LCA of each example group's loss at every iteration, summed over parameters (columns
        in the order of `example_groups`). A group's loss is the sum of its examples' losses over the split's size,
        so the groups add up to the data loss; the weight-decay term belongs to no group. `split` "val": the
        validation split's, for runs that set example_groups to a callable or `none` (the classes: training only)."""
        return self._read(self._groups_key(split, "token_lca", "lca{}_class_layer")).sum(axis=2)

    def example_group_loss(self, split: str = "train") -> np.ndarray:
        """(T+1, E) float64: each example group's loss at theta_0 .. theta_T (its examples' summed losses over
        the split's size; a token group's: its tokens' summed losses over the split's tokens): the rows sum to
        `loss` (`loss_val` for "val") less the weight-decay term."""
        return self._read(self._groups_key(split, "token_loss", "loss{}_class")).astype(np.float64)

    def token_group_totals(self, split: str = "train") -> np.ndarray:
        """(E, K) float64: each parameter's LCA on each token group's loss, summed over training (rows in the order
        of `example_groups`); only with lca.token_group_parameters on a run with token groups."""
        name = "token_lca_total" + _suffix(split)
        if name not in self._f:
            raise LCAError(f"run {self.name}: no per-parameter token-group LCA; set lca.token_group_parameters: true (runs with token groups)")
        return self._f[name][()]

    def example_curves(self, split: str = "train") -> np.ndarray:
        """(T, M, G) float64: per-example loss-change curves (lca.example_curves): the LCA of each sampled
        example's own loss at every iteration, per parameter group (columns in the order of `groups`)."""
        return self._curves("curve_lca", split)

    def curve_examples(self, split: str = "train") -> np.ndarray:
        """(M,) the sampled examples of `example_curves`, by their index in the dataset's training set (the
        validation split's: in the test set where the run validates on it)."""
        return self._curves("curve_index", split).astype(np.int64)

    def curve_losses(self, split: str = "train") -> np.ndarray:
        """(T+1, M) float64: the sampled examples' own losses at theta_0 .. theta_T."""
        return self._curves("curve_loss", split)

    def _curves(self, key: str, split: str) -> np.ndarray:
        name = key + _suffix(split)
        if name not in self._f:
            raise LCAError(f"run {self.name}: no per-example curves; set lca.example_curves (e.g. 1000) and rerun")
        return self._f[name][()].astype(np.float64) if key != "curve_index" else self._f[name][()]

    def _groups_key(self, split: str, token_key: str, key: str) -> str:
        """The dataset of the example groups of a split: the token groups' or the per-class rows'."""
        sfx = _suffix(split)
        name = token_key + sfx if "token_lca" in self._f else key.format(sfx)
        if sfx and name not in self._f:
            grouped = "example_groups" in self._f.attrs  # a run grouped otherwise, whose chunks predate the validation split's groups
            raise LCAError(
                f"run {self.name}: "
                + (
                    "its gradient chunks predate the validation split's example groups; delete its chunks/ and rerun lca_all"
                    if grouped
                    else "the LCA per example group of the validation split is computed only for runs that set example_groups "
                    "to a callable or none (the classes: training split only); use split='train'"
                )
            )
        return name

    def per_iteration(self, split: str = "train") -> np.ndarray:
        """(T,) float64: total LCA of every iteration (the row sums of `lca`; ~ loss[t+1] - loss[t])."""
        return self.by_group(split).sum(axis=1)

    def totals(self, split: str = "train") -> dict[str, float]:
        """LCA of each group summed over training (nats; negative = the group helped)."""
        return dict(zip(self.groups, self.by_group(split).sum(axis=0).tolist()))

    def parameter(self, name: str, split: str = "train") -> np.ndarray:
        """LCA of the parameter tensor `name` (e.g. "fc1.weight") at every iteration, shape (T, *tensor shape).
        Reads one block of columns."""
        layout = self.layout
        if name not in layout.names:
            shown = ", ".join(layout.names[:6]) + (", ..." if len(layout.names) > 6 else "")
            raise LCAError(f"run {self.name}: no parameter tensor {name!r}{did_you_mean(name, layout.names)}; its tensors are {shown}")
        i = layout.names.index(name)
        a, size = layout.offsets[i], layout.sizes[i]
        stored = self.lca if _suffix(split) == "" else self.lca_val
        if not stored.sampled:
            block = stored[:, a : a + size]
        else:  # NaN where the parameter's rows are not in the sample
            where = stored.position(np.arange(a, a + size))
            block = np.full((stored.shape[0], size), np.nan, dtype=np.float32)
            if (where >= 0).any():
                lo, hi = where[where >= 0].min(), where.max() + 1
                block[:, where >= 0] = stored[:, lo:hi][:, where[where >= 0] - lo]
        return block.reshape(block.shape[0], *layout.shapes[i])

    def group_columns(self, group: str) -> np.ndarray:
        """Indices of the group's columns in the K axis of `lca` (e.g. `run.lca[t][run.group_columns("fc1")]`)."""
        if group not in self.groups:
            raise LCAError(f"run {self.name}: no group {group!r}{did_you_mean(group, self.groups)}; its groups are {', '.join(self.groups)}")
        return np.flatnonzero(self._layer_index == self.groups.index(group))

    @functools.cached_property
    def _layer_index(self) -> np.ndarray:
        return self.layout.layer_index()

    # -- analysis tables --------------------------------------------------------------------------

    def table(self, name: str) -> dict[str, np.ndarray]:
        """The analysis table `stats/<name>.tsv` (e.g. "layers") as columns by name: numbers as float
        arrays, other columns as str arrays."""
        return read_tsv(self._stats_file(name, ".tsv"))

    def stats(self, name: str) -> dict:
        """The analysis summary `stats/<name>.json` (e.g. "noise") as a dict."""
        path = self._stats_file(name, ".json")
        try:
            return json.loads(path.read_text())
        except ValueError as err:
            raise CorruptFileError(
                f"{path}: not valid JSON ({err}); delete it and rebuild it with `snakemake --cores all {path}`"
            ) from err

    def _stats_file(self, name: str, ext: str) -> Path:
        stem = name[: -len(ext)] if name.endswith(ext) else name
        known = [f.removesuffix(ext) for f in STATS_FILES if f.endswith(ext)]
        if f"{stem}{ext}" not in STATS_FILES:
            kind = "table" if ext == ".tsv" else "summary"
            raise LCAError(f"run {self.name}: no analysis {kind} {stem!r}{did_you_mean(stem, known)}; there are {', '.join(known)}")
        path = Path(self.paths.stats(f"{stem}{ext}"))
        if not path.is_file():
            present = sorted(p.stem for p in Path(self.paths.stats_dir).glob(f"*{ext}"))
            have = f" (present: {', '.join(present)})" if present else ""
            raise NotBuiltError(
                f"{path}: not built yet (rule {STATS_FILES[stem + ext]}){looked_in(path)}; build it with {_make(path)}{have}"
            )
        return path


def _make(target) -> str:
    """The command that makes a missing output, as a user runs it from their own folder."""
    return f"`snakemake --cores all --configfile=<your config> {target}` (and -s <lcaflow>/Snakefile outside the lcaflow folder)"


class Runs:
    """Several finished runs lined up for comparison: each array has one row per run (in the order given,
    named by `names`) and one column per group (`groups`: every run's groups, in order of first appearance),
    class (`classes`) or iteration; NaN where a run has no such group, class or iteration. `runs[name]` (or
    `runs[i]`) is one `Run` with everything `open_run` gives."""

    def __init__(self, paths):
        self.runs: list[Run] = []
        try:
            for path in paths:
                self.runs.append(Run(path))
        except BaseException:
            self.close()
            raise
        if not self.runs:
            raise LCAError("open_runs: no run folder given; pass a list of run folders")
        names = [r.name for r in self.runs]
        self.names: tuple[str, ...] = tuple(n if names.count(n) == 1 else str(r.path) for n, r in zip(names, self.runs))

    def close(self) -> None:
        for run in self.runs:
            run.close()

    def __enter__(self) -> Runs:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.runs)

    def __iter__(self):
        return iter(self.runs)

    def __getitem__(self, key) -> Run:
        if isinstance(key, int):
            return self.runs[key]
        if key not in self.names:
            raise LCAError(f"open_runs: no run {key!r}{did_you_mean(key, self.names)}; the runs are {', '.join(self.names)}")
        return self.runs[self.names.index(key)]

    def __repr__(self) -> str:
        return f"<Runs {', '.join(self.names)}: groups {', '.join(self.groups)}>"

    @property
    def groups(self) -> tuple[str, ...]:
        """Every run's groups, in order of first appearance: the columns of `totals()`."""
        return tuple(dict.fromkeys(g for r in self.runs for g in r.groups))

    @property
    def classes(self) -> list[str] | None:
        """Every run's classes, in order of first appearance (the columns of `by_class()`); None when no run has classes."""
        found = [c for r in self.runs for c in r.classes or ()]
        return list(dict.fromkeys(found)) if found else None

    @property
    def iterations(self) -> np.ndarray:
        """(R,) each run's T."""
        return np.array([r.iterations for r in self.runs])

    def totals(self, split: str = "train") -> np.ndarray:
        """(R, G) LCA of each group summed over training (nats; < 0: the group helped)."""
        return _lined_up([r.totals(split) for r in self.runs], self.groups)

    def by_class(self) -> np.ndarray:
        """(R, C) LCA of each class's loss summed over training; NaN for a run without that class."""
        if self.classes is None:
            raise LCAError(f"open_runs: no run's loss has classes ({', '.join(self.names)}), so there is no per-class LCA")
        sums = [dict(zip(r.classes, r.by_class().sum(axis=0))) if r.classes else {} for r in self.runs]
        return _lined_up(sums, self.classes)

    def per_iteration(self, split: str = "train") -> np.ndarray:
        """(R, T_max) total LCA of every iteration; NaN past a shorter run's end."""
        return _padded([r.per_iteration(split) for r in self.runs])

    def group(self, name: str, split: str = "train") -> np.ndarray:
        """(R, T_max) LCA of the group `name` at every iteration; NaN for a run without it or past its end."""
        if name not in self.groups:
            raise LCAError(f"open_runs: no group {name!r}{did_you_mean(name, self.groups)}; the groups are {', '.join(self.groups)}")
        return _padded(
            [r.by_group(split)[:, r.groups.index(name)] if name in r.groups else np.full(r.iterations, np.nan) for r in self.runs]
        )


def _siblings(path: Path) -> str:
    """The runs beside a missing run folder: ' (runs there: a, b; did you mean 'a'?)', or ''."""
    parent = path.parent if path.parent.is_dir() else None
    runs = sorted(p.name for p in parent.iterdir() if Path(RunPaths(str(p)).lca).is_file()) if parent else []
    return f" (runs there: {', '.join(runs)}{did_you_mean(path.name, runs).replace(' (', '; ').rstrip(')')})" if runs else ""


def _lined_up(rows: list[dict], columns) -> np.ndarray:
    return np.array([[row.get(c, np.nan) for c in columns] for row in rows], dtype=np.float64)


def _padded(rows: list[np.ndarray]) -> np.ndarray:
    out = np.full((len(rows), max(len(r) for r in rows)), np.nan)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def _suffix(split: str) -> str:
    if split not in SPLITS:
        raise LCAError(f"split {split!r}: use 'train' or 'val'")
    return SPLITS[split]
