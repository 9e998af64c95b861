"""The animation of per-parameter LCA: a GIF (and an MP4 when ffmpeg is installed) with one frame per
sampled iteration, all layers side by side in the heat maps' arrangement (plots.heatmaps), colour limits
fixed for the whole animation. It reads one row of the (T, K) LCA matrix at a time and writes
byte-identical files for identical inputs. (The module is `animate` so that `plots.animation` is the
function, not a module hidden behind it.)"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..storage import Matrix, open_lca
from .heatmaps import MAX_SIDE, PixelMap, colorbar, explain, pixel_map, read_header, read_row, width_ratios, wrap
from .style import NAN_COLOR, close, diverging_cmap, partial_path, subplots, symmetric_limit

_MAX_SAMPLES = 1_000_000  # |LCA| values kept per layer to estimate the animation's colour limits
_SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
_TITLE_SIZE = 9.5


def animation(lca_path, out_gif, max_frames: int = 120, fps: int = 8) -> Path | None:
    """GIF of per-parameter LCA, one frame per sampled iteration (first and last always in), all layers
    side by side with colour limits fixed for the whole animation. With ffmpeg on PATH also an MP4 beside
    the GIF; returns its path, else None."""
    lca_path, out_gif = Path(lca_path), Path(out_gif)
    if fps < 1:
        raise ConfigError(f"fps = {fps}: need at least 1 frame per second")
    with open_lca(lca_path) as f:
        layout, lca, loss = read_header(f, lca_path)
        frames = _frame_iterations(lca.shape[0], max_frames)
        maps = [pixel_map(layout, layer, MAX_SIDE) for layer in layout.layers]
        limits = _colour_limits(lca, lca_path, layout.num_params, maps, frames)
        palette = _palette_image()
        mp4 = _Mp4(out_gif.with_suffix(".mp4"), fps)
        gif_tmp = partial_path(out_gif)
        canvas = _Canvas.set_up(maps, limits, explain(lca, layout.num_params), loss, frames[-1])
        try:
            pictures = []
            for t in frames:
                rgb = canvas.draw(read_row(lca, t, lca_path, layout.num_params), t)
                pictures.append(_quantize(rgb, palette))
                mp4.write(rgb)
            canvas.close()
            _save_gif(pictures, gif_tmp, fps)
            os.replace(gif_tmp, out_gif)
            return mp4.finish()
        finally:
            canvas.close()
            mp4.abandon()
            gif_tmp.unlink(missing_ok=True)


def _frame_iterations(T: int, max_frames: int) -> list[int]:
    """Every stride-th iteration, the first and the last always among them, at most max_frames in all."""
    if T == 1:
        return [0]
    if max_frames < 2:
        raise ConfigError(f"max_frames = {max_frames}: need at least 2 to show the first and the last iteration")
    stride = max(1, math.ceil((T - 1) / (max_frames - 1)))
    frames = list(range(0, T - 1, stride)) + [T - 1]
    return frames


def _colour_limits(lca: Matrix, lca_path, K: int, maps: list[PixelMap], frames: list[int]) -> list[float]:
    """Pass 1: each layer's colour limit from (a bounded sample of) its |LCA| over the sampled frames."""
    steps = [max(1, math.ceil(int(m.covered.sum()) * len(frames) / _MAX_SAMPLES)) for m in maps]
    samples: list[list[np.ndarray]] = [[] for _ in maps]
    for t in frames:
        row = read_row(lca, t, lca_path, K)
        for k, m in enumerate(maps):
            img = m.render(row)
            samples[k].append(np.abs(img[np.isfinite(img)])[:: steps[k]].astype(np.float32))
    return [symmetric_limit(np.concatenate(s)) for s in samples]


@dataclass
class _Canvas:
    """Pass 2's figure: laid out once, then each frame redraws only its images, their frames and the title
    (blitting: the colour bars and labels are drawn once into the background)."""

    fig: object
    maps: list[PixelMap]
    images: list  # one AxesImage per layer
    title: object
    spines: list
    background: object
    explain: str  # the wrapped explanation under every frame's title
    loss: np.ndarray

    @classmethod
    def set_up(cls, maps: list[PixelMap], limits: list[float], explanation: str, loss: np.ndarray, last: int) -> _Canvas:
        ratios = width_ratios(maps)
        fig, axes = subplots(1, len(maps), (max(6.0, 0.6 + 4.4 * sum(ratios)), 3.6), gridspec_kw={"width_ratios": ratios})
        cmap = diverging_cmap()
        images = []
        for k, m in enumerate(maps):
            ax = axes[0, k]
            im = ax.imshow(np.full(m.shape, np.nan), cmap=cmap, vmin=-limits[k], vmax=limits[k], aspect="auto", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(m.layer + (f"\n{m.describe_block()}" if m.downsampled else ""), fontsize=8.5)
            colorbar(fig, im, ax, limits[k], m.downsampled, 7.5)
            images.append(im)
        explanation = wrap(fig, explanation, _TITLE_SIZE)
        title = fig.suptitle(_frame_title(fig, last, loss, explanation), fontsize=_TITLE_SIZE)  # the longest iteration number sizes the layout
        fig.canvas.draw()  # settle the constrained layout once, then keep it fixed for every frame
        fig.set_layout_engine("none")
        for artist in [*images, title]:
            artist.set_animated(True)
        fig.canvas.draw()
        background = fig.canvas.copy_from_bbox(fig.bbox)
        spines = [spine for ax in axes[0] for spine in ax.spines.values()]
        return cls(fig, maps, images, title, spines, background, explanation, loss)

    def draw(self, row: np.ndarray, t: int) -> np.ndarray:
        """The frame of iteration t (its row of the LCA matrix) as an (H, W, 3) uint8 picture."""
        for im, m in zip(self.images, self.maps):
            im.set_data(m.render(row))
        self.title.set_text(_frame_title(self.fig, t, self.loss, self.explain))
        self.fig.canvas.restore_region(self.background)
        for artist in [*self.images, self.title, *self.spines]:
            self.fig.draw_artist(artist)
        return np.ascontiguousarray(np.asarray(self.fig.canvas.buffer_rgba())[..., :3])

    def close(self) -> None:
        close(self.fig)


def _frame_title(fig, t: int, loss: np.ndarray, explanation: str) -> str:
    """Plain text with Unicode subscripts: mathtext would cost ~0.1 s a frame."""
    theta = "θ" + str(t).translate(_SUBSCRIPTS)
    head = f"iteration {t} of {len(loss) - 1}, train loss L({theta}) = {loss[t]:.4f} nats (this step ΔL = {loss[t + 1] - loss[t]:+.3g})"
    return wrap(fig, head, _TITLE_SIZE) + "\n" + explanation


def _palette_image():
    """A fixed 256-colour palette: the colour map, its NaN grey and a grey ramp for text and edges."""
    from PIL import Image

    cmap = diverging_cmap()
    ramp = (np.asarray(cmap(np.linspace(0.0, 1.0, 199)))[:, :3] * 255).round().astype(np.uint8)
    greys = np.repeat(np.linspace(0, 255, 56).round().astype(np.uint8)[:, None], 3, axis=1)
    nan = np.array([[int(NAN_COLOR[k : k + 2], 16) for k in (1, 3, 5)]], dtype=np.uint8)
    colours = np.concatenate([ramp, greys, nan])  # 256 entries
    pal = Image.new("P", (1, 1))
    pal.putpalette(colours.reshape(-1).tolist())
    return pal


def _quantize(rgb: np.ndarray, palette):
    from PIL import Image

    return Image.fromarray(rgb).quantize(palette=palette, dither=Image.Dither.NONE)


def _save_gif(pictures: list, path: Path, fps: int) -> None:
    pictures[0].save(path, format="GIF", save_all=True, append_images=pictures[1:], duration=round(1000 / fps), loop=0, optimize=False)


class _Mp4:
    """The MP4 beside the GIF, written by ffmpeg (when on PATH) from the same frames as they are drawn."""

    def __init__(self, path: Path, fps: int):
        self.path, self.fps = path, fps
        self.ffmpeg = shutil.which("ffmpeg")
        self.tmp = partial_path(path)
        self.proc = None

    def write(self, rgb: np.ndarray) -> None:
        if self.ffmpeg and self.proc is None:
            self.proc = _start_ffmpeg(self.ffmpeg, (rgb.shape[1], rgb.shape[0]), self.fps, self.tmp)
        if self.proc is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.write(rgb.tobytes())
            except BrokenPipeError:  # ffmpeg gave up; its message comes with the warning in finish
                self.proc.stdin.close()

    def finish(self) -> Path | None:
        """The MP4's path once ffmpeg has written it; None without ffmpeg or (with a warning) when it failed."""
        proc = self.proc
        if proc is None:
            return None
        if not proc.stdin.closed:
            proc.stdin.close()
        err = proc.stderr.read().decode(errors="replace").strip()
        if proc.wait() == 0:
            os.replace(self.tmp, self.path)
            return self.path
        warnings.warn(f"ffmpeg could not write {self.path}: {err.splitlines()[-1] if err else 'exit ' + str(proc.returncode)}", stacklevel=3)
        return None

    def abandon(self) -> None:
        """Stop ffmpeg if it still runs and remove its partial file (after finish: nothing left to do)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.tmp.unlink(missing_ok=True)


def _start_ffmpeg(ffmpeg: str, size: tuple[int, int], fps: int, tmp: Path):
    w, h = size
    cmd = [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-",
        "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2:color=white", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-threads", "1",
        "-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata", "-1", "-f", "mp4", str(tmp),
    ]  # fmt: skip
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
