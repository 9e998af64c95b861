"""The one matplotlib set-up of lcaflow: its settings, every colour, the diverging colour map, the colour
limits of a heat map, and the atomic, deterministic save. This is the only module that imports
matplotlib.pyplot or chooses a backend (tests/test_structure.py checks it).

Helping (negative LCA) is green and hurting (positive LCA) purple throughout, distinguishable with
red-green colour blindness; the other colours are Okabe-Ito's (colour-blind safe). The same inputs give
the same bytes: no timestamps, no software version, a fixed SVG hash salt."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

# Okabe-Ito colours, and the greys
BLUE, ORANGE, BLUISH_GREEN, REDDISH_PURPLE = "#0072b2", "#e69f00", "#009e73", "#cc79a7"
SKY_BLUE, VERMILION, YELLOW, BLACK = "#56b4e9", "#d55e00", "#f0e442", "#000000"
OKABE_ITO = (BLUE, ORANGE, BLUISH_GREEN, REDDISH_PURPLE, SKY_BLUE, VERMILION, YELLOW, BLACK)
PALE_BLUE = "#cde5f5"
LIGHT_GREY, MID_GREY, DARK_GREY = "#d9d9d9", "#7f7f7f", "#555555"

# what each colour means
HELP_COLOR, HURT_COLOR = "#1b7837", "#762a83"  # green / purple: distinguishable with red-green colour blindness
ZERO_COLOR = LIGHT_GREY  # parameters with zero LCA; in heat maps, pixels with no parameter (NaN)
TRAIN_COLOR, VAL_COLOR, VAL_LIGHT_COLOR = "black", BLUE, SKY_BLUE  # the light one drawn under a train curve
FIRST_ORDER_COLOR = REBUILT_COLOR = ORANGE  # first-order LCA; the loss rebuilt from LCA in the overview
SYNC_COLOR = VERMILION  # a moment of learning in enough layers at once
MOMENT_COLOR = TRAPEZOID_COLOR = MID_GREY  # a moment in one layer; the trapezoid's error before its removal
NOTE_COLOR = DARK_GREY  # secondary text
TOP_CLASSES_COLORS = (BLUE, SKY_BLUE, PALE_BLUE)  # neurons' top 1, 2, 3 classes

DIVERGING = "PRGn_r"  # green (negative, helped) -> white (zero) -> purple (positive, hurt)
DIVERGING_MID = "#f7f7f7"  # PRGn's white at zero: the middle of the explorer's diverging scales
NAN_COLOR = ZERO_COLOR  # no parameter there (padding, separators, not stored)
PERCENTILE = 99.0  # heat maps' colours are clipped at this percentile of |LCA|

DPI = 110  # figures drawn from the tables, and the overview
PIXEL_DPI = 100  # heat maps and the animation: the size they are drawn at is the size they are saved at


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "lcaflow", "font.size": 9, "axes.titlesize": 10})
    return plt


def subplots(nrows: int = 1, ncols: int = 1, size=(12, 4), **kw):
    """A new figure with constrained layout and a 2-D array of axes (close it with `close`)."""
    return _pyplot().subplots(nrows, ncols, figsize=size, dpi=PIXEL_DPI, layout="constrained", squeeze=False, **kw)


def close(fig) -> None:
    _pyplot().close(fig)


def partial_path(path) -> Path:
    """The name a file is written under before it is renamed to `path` (its folder made)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(path.name + ".partial")


def save(fig, path, dpi: int = DPI) -> None:
    """Save `fig` to `path` deterministically (no metadata that changes) and atomically (under a partial
    name, then renamed: an interrupted job never leaves a finished-looking file)."""
    path = Path(path)
    tmp = partial_path(path)
    try:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=dpi, metadata={"Software": None})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def figure(path, nrows=1, ncols=1, size=(12, 4), dpi: int = DPI, **kw):
    """A figure saved (`save`) to `path` when the block ends without an error, and closed in any case."""
    fig, axes = subplots(nrows, ncols, size, **kw)
    try:
        yield fig, axes
        save(fig, path, dpi)
    finally:
        close(fig)


def skipped_figure(out_png, run: str, title: str, reason: str) -> None:
    """A figure that says why its analysis does not apply to this run (the DAG still gets its file)."""
    with figure(out_png, 1, 1, (8, 2.2)) as (fig, axes):
        ax = axes[0, 0]
        ax.axis("off")
        ax.text(0.5, 0.6, f"{run}: {title}", ha="center", va="center", fontsize=12)
        ax.text(0.5, 0.3, reason, ha="center", va="center", fontsize=10, color=NOTE_COLOR, wrap=True)


def sign_colors(values) -> list[str]:
    return [HELP_COLOR if v < 0 else HURT_COLOR for v in values]


def palette(n: int):
    """Okabe-Ito colours for n lines; a perceptual map when there are more."""
    if n <= len(OKABE_ITO):
        return list(OKABE_ITO[:n])
    import matplotlib

    return [matplotlib.colormaps["viridis"](v) for v in np.linspace(0, 0.95, n)]


def diverging_cmap():
    """The diverging colour map, NaN (no parameter) in NAN_COLOR."""
    import matplotlib

    return matplotlib.colormaps[DIVERGING].with_extremes(bad=NAN_COLOR)


def symmetric_limit(values) -> float:
    """The colour limit ±v of a heat map: the PERCENTILE-th percentile of the finite |values|; where that is 0
    (mostly zeros) their largest, and a positive number even when all are zero or none is finite."""
    values = np.asarray(values)
    finite = np.abs(values[np.isfinite(values)])
    v = float(np.percentile(finite, PERCENTILE)) if finite.size else 0.0
    if not v > 0:
        v = float(finite.max()) if finite.size and finite.max() > 0 else 1e-12
    return v
