"""Direct visualisation of per-parameter LCA (the paper's Fig. 2 and section 2.2): the pixel arrangement of
a layer's parameters, reading rows of the LCA matrix, and the still figure.

Every parameter is one pixel. A Linear kernel (out, in) is an out x in image; a convolution kernel
(out, in, kh, kw) is a grid of kh x kw tiles with output channels down the rows and input channels
across the columns; the layer's 1-D parameters (bias, normalisation scale/shift) are extra rows under
the kernel after one empty (NaN) row. Green = negative LCA = the parameter lowered the whole
training-set loss at that iteration, purple = positive = it raised it.

`heatmap_figure` draws chosen iterations as a still (rows = iterations, columns = layers); the animation
(plots.animate) draws every sampled iteration with the same pieces. Both read only the rows of the
(T, K) LCA matrix they show, and write byte-identical files for identical inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, CorruptFileError
from ..layout import Layout
from ..storage import Matrix, matrix, open_lca
from .style import PERCENTILE, PIXEL_DPI, diverging_cmap, figure, symmetric_limit

MAX_SIDE = 400  # display pixels per layer and direction before block-summing
_MAX_EXTRA_ROWS = 8  # rows a downsampled 1-D tensor may take under its kernel


# ----------------------------------------------------------------------------------------------
# Arrangement of a layer's parameters as pixels
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PixelMap:
    """Which flat parameters make each pixel of a layer's image: pixel `dst[n]` adds `values[src[n]]`."""

    layer: str
    shape: tuple[int, int]
    src: np.ndarray  # (n,) flat parameter index into theta
    dst: np.ndarray  # (n,) flat pixel index into the (H, W) image
    covered: np.ndarray  # (H*W,) bool: pixel holds at least one parameter
    block: tuple[int, int]  # kernel pixels are sums of block[0] x block[1] parameters; (1, 1) = one each
    group: int  # 1-D tensors: pixels are sums of up to `group` consecutive entries

    @property
    def downsampled(self) -> bool:
        return self.block != (1, 1) or self.group != 1

    def render(self, values: np.ndarray) -> np.ndarray:
        """The layer's image (float64, NaN where no parameter) from a length-K vector. NaN entries (parameters
        a sampled run did not store) are left out of their pixel's sum; a pixel with none stored is NaN."""
        h, w = self.shape
        v = np.asarray(values, dtype=np.float64)[self.src]
        stored = ~np.isnan(v)
        out = np.bincount(self.dst, weights=np.where(stored, v, 0.0), minlength=h * w)
        out[~self.covered | (np.bincount(self.dst, weights=stored, minlength=h * w) == 0)] = np.nan
        return out.reshape(h, w)

    def describe_block(self) -> str:
        parts = []
        if self.block != (1, 1):
            parts.append(f"{self.block[0]}×{self.block[1]} blocks")
        if self.group != 1:
            parts.append(f"1-D runs of {self.group}")
        return "pixels = sums of " + ", ".join(parts)


def _kernel_grid(shape: tuple[int, ...], offset: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Flat indices of a 2+-D tensor arranged as the paper's image, and its tile size (kh, kw)."""
    idx = offset + np.arange(math.prod(shape), dtype=np.int64).reshape(shape)
    if len(shape) == 2:
        return idx, (1, 1)
    o, i, rest = shape[0], shape[1], shape[2:]
    kh, kw = (1, rest[0]) if len(rest) == 1 else (rest[0], math.prod(rest[1:]))
    grid = idx.reshape(o, i, kh, kw).transpose(0, 2, 1, 3).reshape(o * kh, i * kw)  # pixel (o*kh + y, i*kw + x)
    return grid, (kh, kw)


def _block_factor(n: int, tile: int, max_side: int) -> int:
    """Smallest block size that brings n pixels down to max_side, aligned to tiles so no block straddles two."""
    if n <= max_side * 5 // 4:  # "about max_side": a 448-row conv stem (64 x 7) stays at full resolution
        return 1
    f = math.ceil(n / max_side)
    if tile > 1:
        f = min(d for d in range(f, tile + 1) if tile % d == 0) if f < tile else tile * math.ceil(f / tile)
    return f


def pixel_map(layout: Layout, layer: str, max_side: int | None = None) -> PixelMap:
    """Pixel arrangement of one layer; `max_side=None` keeps one pixel per parameter."""
    members = [j for j, name in enumerate(layout.layer_of_param) if name == layer]
    if not members:
        raise ConfigError(f"layer {layer!r} not in the layout; layers are {', '.join(layout.layers)}")
    kernel = next((j for j in members if len(layout.shapes[j]) >= 2), None)
    # any further 2+-D tensor of the same layer is shown flattened, like the 1-D ones
    extras = [j for j in members if j != kernel]
    src_parts, dst_parts = [], []
    block, group, row = (1, 1), 1, 0

    if kernel is not None:
        grid, (kh, kw) = _kernel_grid(layout.shapes[kernel], layout.offsets[kernel])
        hk, wk = grid.shape
        if max_side is not None:
            block = (_block_factor(hk, kh, max_side), _block_factor(wk, kw, max_side))
        width = math.ceil(wk / block[1])
        rows, cols = np.divmod(np.arange(hk * wk, dtype=np.int64), wk)
        src_parts.append(grid.reshape(-1))
        dst_parts.append((rows // block[0]) * width + cols // block[1])
        row = math.ceil(hk / block[0]) + 1  # one NaN row between the kernel and the 1-D parameters
    else:
        longest = max(layout.sizes[j] for j in extras)
        width = longest if longest <= (max_side or MAX_SIDE) else math.ceil(math.sqrt(longest))

    for n_extra, j in enumerate(extras):
        size = layout.sizes[j]
        g = 1 if max_side is None else max(1, math.ceil(size / (width * _MAX_EXTRA_ROWS)))
        group = max(group, g)
        pixel = np.arange(size, dtype=np.int64) // g
        src_parts.append(layout.offsets[j] + np.arange(size, dtype=np.int64))
        dst_parts.append(row * width + pixel)
        row += math.ceil(math.ceil(size / g) / width)
        if n_extra < len(extras) - 1:
            row += 1  # NaN row between consecutive 1-D tensors
    height = row - 1 if kernel is not None and not extras else row
    dst = np.concatenate(dst_parts)
    covered = np.bincount(dst, minlength=height * width) > 0
    return PixelMap(layer, (height, width), np.concatenate(src_parts), dst, covered, block, group)


def layer_matrix(layout: Layout, layer: str, values: np.ndarray) -> np.ndarray:
    """One layer's entries of the length-K vector `values` as a 2-D float array, one pixel per parameter.

    Linear kernel (out, in): an out x in image. Conv kernel (out, in, kh, kw): kh x kw tiles, parameter
    (o, i, y, x) at pixel (o*kh + y, i*kw + x). Then one NaN row, then each 1-D tensor (bias, norm
    scale/shift) wrapped to the kernel's width and NaN-padded, consecutive tensors separated by a NaN row.
    A layer without a 2+-D kernel shows its tensors as such rows only."""
    values = np.asarray(values)
    if values.shape != (layout.num_params,):
        raise ValueError(f"values has shape {values.shape}, expected ({layout.num_params},)")
    return pixel_map(layout, layer).render(values)


# ----------------------------------------------------------------------------------------------
# Reading the LCA file
# ----------------------------------------------------------------------------------------------


def read_header(f, path) -> tuple[Layout, Matrix, np.ndarray]:
    try:
        layout = Layout.from_h5(f["layout"])
        lca = matrix(f, "lca", path)
        loss = f["loss"][()].astype(np.float64)
    except KeyError as err:
        raise CorruptFileError(f"{path}: lacks {err}; delete it and rerun the assemble stage") from err
    if lca.dset.ndim != 2 or lca.shape[1] != lca.columns.size or lca.columns.size > layout.num_params or lca.shape[0] < 1:
        raise CorruptFileError(
            f"{path}: 'lca' has shape {lca.shape}, expected (T >= 1, {layout.num_params}); delete it and rerun the assemble stage"
        )
    if loss.shape != (lca.shape[0] + 1,):
        raise CorruptFileError(f"{path}: 'loss' has shape {loss.shape}, expected ({lca.shape[0] + 1},); rerun the assemble stage")
    return layout, lca, loss


def read_row(lca: Matrix, t: int, path, K: int) -> np.ndarray:
    """Row t as a length-K vector; with a sampled matrix NaN (a blank pixel) where a parameter is not stored."""
    try:
        if not lca.sampled:
            return lca[t]
        row = np.full(K, np.nan, dtype=np.float32)
        row[lca.columns] = lca[t]
        return row
    except OSError as err:
        raise CorruptFileError(f"{path}: 'lca' row {t} is damaged ({err}); delete the file and rerun the assemble stage") from err


def _check_iterations(iterations, T: int, path) -> list[int]:
    checked = []
    for t in iterations:
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
            raise ConfigError(f"iteration {t!r} is not an integer; {path} has iterations 0..{T - 1}")
        if not 0 <= t < T:
            raise ConfigError(f"iteration {t} out of range: {path} has iterations 0..{T - 1}")
        checked.append(int(t))
    if not checked:
        raise ConfigError(f"no iterations chosen; {path} has iterations 0..{T - 1}")
    return checked


def default_iterations(T: int) -> list[int]:
    """Up to 4 distinct iterations to show: first, ~2.5 %, ~25 % and last (the paper's 20 and 220 of 880)."""
    if T < 1:
        raise ConfigError(f"no iterations to show (T = {T})")
    picks = {0, min(T - 1, math.floor(0.025 * T + 0.5)), min(T - 1, math.floor(0.25 * T + 0.5)), T - 1}
    t = 1
    while len(picks) < min(4, T):  # tiny T: fill with the earliest iterations not yet chosen
        picks.add(t)
        t += 1
    return sorted(picks)


# ----------------------------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------------------------


def width_ratios(maps: list[PixelMap]) -> list[float]:
    widest = max(m.shape[1] for m in maps)
    return [max(m.shape[1] / widest, 0.4) for m in maps]


def colorbar(fig, im, ax, limit: float, downsampled: bool, fontsize: float):
    from matplotlib import ticker

    label = "LCA summed per pixel (nats)" if downsampled else "LCA (nats)"
    cbar = fig.colorbar(im, ax=ax, location="bottom", extend="both", shrink=0.9, aspect=25)
    cbar.set_ticks([-limit, 0.0, limit])
    cbar.ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: "0" if v == 0 else f"{v:.2g}"))
    cbar.ax.tick_params(labelsize=fontsize)
    cbar.set_label(f"{label}\nclipped at {PERCENTILE:.0f}th percentile of |LCA|", fontsize=fontsize)
    return cbar


_EXPLAIN = "green = helped (lowered the training-set loss), purple = hurt (raised it), white = no effect, grey = no parameter"


def explain(lca: Matrix, K: int) -> str:
    if not lca.sampled:
        return _EXPLAIN
    share = 100 * lca.columns.size / K
    return _EXPLAIN + f" or not stored (lca.store: sampled: about {share:.2g}% of the parameters)"


_ARRANGEMENT = (
    "One pixel per parameter. Linear: rows = output units, columns = inputs. Conv: kh×kw tiles, output channels down, "
    "input channels across. Bias / norm parameters: rows under the grey gap."
)


def wrap(fig, text: str, fontsize: float) -> str:
    """Word-wrap each line of a figure title to the figure's width, measured with the figure's own renderer."""
    from matplotlib.font_manager import FontProperties

    renderer, prop, limit = fig.canvas.get_renderer(), FontProperties(size=fontsize), 0.97 * fig.bbox.width
    width = lambda s: renderer.get_text_width_height_descent(s, prop, ismath="$" in s)[0]
    lines = []
    for line in text.splitlines():
        words = line.split(" ")  # a $...$ expression holds no spaces, so it stays whole
        current = words[0]
        for word in words[1:]:
            if width(f"{current} {word}") <= limit:
                current = f"{current} {word}"
            else:
                lines.append(current)
                current = word
        lines.append(current)
    return "\n".join(lines)


def heatmap_figure(lca_path, iterations: list[int] | None, out_png) -> Path:
    """Still of per-parameter LCA: rows = `iterations` (None: default_iterations), columns = layers;
    colour limits per layer."""
    lca_path, out_png = Path(lca_path), Path(out_png)
    with open_lca(lca_path) as f:
        layout, lca, loss = read_header(f, lca_path)
        T = lca.shape[0]
        iterations = _check_iterations(default_iterations(T) if iterations is None else iterations, T, lca_path)
        maps = [pixel_map(layout, layer, MAX_SIDE) for layer in layout.layers]
        images = []
        for t in iterations:  # one row read per chosen iteration; memory does not grow with T
            row = read_row(lca, t, lca_path, layout.num_params)
            images.append([m.render(row) for m in maps])
    limits = [symmetric_limit(np.concatenate([images[r][c].ravel() for r in range(len(iterations))])) for c in range(len(maps))]

    ratios = width_ratios(maps)
    n_rows, n_cols = len(iterations), len(maps)
    size = (max(7.0, 0.8 + 4.6 * sum(ratios)), 1.5 + 1.9 * n_rows + 0.9)
    with figure(out_png, n_rows, n_cols, size, dpi=PIXEL_DPI, gridspec_kw={"width_ratios": ratios}) as (fig, axes):
        _draw_heatmaps(fig, axes, maps, images, limits, iterations, loss)
        fig.suptitle(
            wrap(
                fig,
                f"Per-parameter loss change allocation (LCA), {T} iterations of {lca_path.name}\n{explain(lca, layout.num_params)}\n{_ARRANGEMENT}",
                9.5,
            ),
            fontsize=9.5,
        )
    return out_png


def _draw_heatmaps(fig, axes, maps, images, limits, iterations, loss) -> None:
    """The still's panels: one row per iteration, one column per layer, one colour bar per layer."""
    cmap = diverging_cmap()
    for c, m in enumerate(maps):
        im = None
        for r, t in enumerate(iterations):
            ax = axes[r, c]
            im = ax.imshow(images[r][c], cmap=cmap, vmin=-limits[c], vmax=limits[c], aspect="auto", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            title = f"{m.layer} · iteration {t}"
            if m.downsampled:
                title += f"\n{m.describe_block()}"
            ax.set_title(title, fontsize=8.5)
            if c == 0:
                ax.set_ylabel(
                    f"iteration {t}\ntrain loss {loss[t]:.4g} nats\nthis step ΔL = {loss[t + 1] - loss[t]:+.3g}", fontsize=8.5
                )
        colorbar(fig, im, axes[:, c], limits[c], m.downsampled, 8)
