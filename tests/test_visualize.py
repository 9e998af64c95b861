"""Direct visualisation of per-parameter LCA: pixel arrangement, still figure, animation."""

from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from lcaflow.errors import ConfigError, CorruptFileError
from lcaflow.layout import Layout
from lcaflow.plots import animation, default_iterations, heatmap_figure, layer_matrix
from lcaflow.plots.animate import _frame_iterations

T = 7
LAYOUT = Layout(
    names=("fc.weight", "fc.bias", "conv.weight", "conv.bias"),
    shapes=((4, 3), (4,), (2, 3, 2, 2), (2,)),
    offsets=(0, 12, 16, 40),
    layer_of_param=("fc", "fc", "conv", "conv"),
    layers=("fc", "conv"),
)
K = LAYOUT.num_params  # 42


def conv_index(o, i, y, x):
    return 16 + ((o * 3 + i) * 2 + y) * 2 + x


def write_lca(path: Path, layout: Layout, T: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    lca = (rng.standard_normal((T, layout.num_params)) * 1e-3).astype(np.float32)
    lca[:, ::5] -= 2e-3  # mostly helping, as in real training
    loss = 2.3 * np.exp(-np.arange(T + 1) / 4.0)
    with h5py.File(path, "w") as f:
        f.create_dataset("lca", data=lca)
        f.create_dataset("loss", data=loss)
        layout.to_h5(f.create_group("layout"))
    return path


@pytest.fixture
def lca_file(tmp_path) -> Path:
    return write_lca(tmp_path / "lca.h5", LAYOUT, T)


def test_conv_parameter_lands_on_its_tile_pixel():
    values = np.zeros(K)
    values[conv_index(1, 2, 0, 1)] = 7.0
    m = layer_matrix(LAYOUT, "conv", values)
    assert m.shape == (2 * 2 + 1 + 1, 3 * 2)  # kernel tiles, NaN row, bias row
    assert m[1 * 2 + 0, 2 * 2 + 1] == 7.0
    assert np.count_nonzero(np.nan_to_num(m)) == 1
    # every conv parameter at (o*kh + y, i*kw + x)
    values = np.arange(K, dtype=float)
    m = layer_matrix(LAYOUT, "conv", values)
    for o in range(2):
        for i in range(3):
            for y in range(2):
                for x in range(2):
                    assert m[o * 2 + y, i * 2 + x] == conv_index(o, i, y, x)


def test_biases_below_kernel_after_a_nan_row():
    values = np.arange(K, dtype=float)
    fc = layer_matrix(LAYOUT, "fc", values)
    np.testing.assert_array_equal(fc[:4], values[:12].reshape(4, 3))  # Linear (out, in) as out x in
    assert np.isnan(fc[4]).all()
    np.testing.assert_array_equal(fc[5], [12, 13, 14])  # bias of 4 wrapped to the kernel's width 3
    assert fc[6, 0] == 15 and np.isnan(fc[6, 1:]).all()
    conv = layer_matrix(LAYOUT, "conv", values)
    assert np.isnan(conv[4]).all()
    assert list(conv[5, :2]) == [40, 41] and np.isnan(conv[5, 2:]).all()
    # every parameter appears exactly once
    seen = np.concatenate([fc[np.isfinite(fc)], conv[np.isfinite(conv)]])
    np.testing.assert_array_equal(np.sort(seen), values)


def test_layer_without_kernel_and_with_norm_parameters():
    layout = Layout(
        names=("conv.weight", "bn.weight", "bn.bias", "scale"),
        shapes=((3, 1, 1, 1), (3,), (3,), (5,)),
        offsets=(0, 3, 6, 9),
        layer_of_param=("conv", "conv", "conv", "scale"),
        layers=("conv", "scale"),
    )
    values = np.arange(layout.num_params, dtype=float)
    conv = layer_matrix(layout, "conv", values)
    assert conv.shape == (3 + 1 + 3 + 1 + 3, 1)  # kernel, gap, bn.weight, gap, bn.bias (width 1)
    np.testing.assert_array_equal(conv[4:7, 0], [3, 4, 5])
    assert np.isnan(conv[7, 0])
    np.testing.assert_array_equal(layer_matrix(layout, "scale", values), [[9, 10, 11, 12, 13]])
    with pytest.raises(ConfigError, match="not in the layout"):
        layer_matrix(layout, "nope", values)


def test_heatmap_is_deterministic_and_checks_iterations(lca_file, tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    heatmap_figure(lca_file, [0, 3, T - 1], a)
    heatmap_figure(lca_file, [0, 3, T - 1], b)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob("*.partial"))
    for bad in ([T], [-1], []):
        with pytest.raises(ConfigError, match=rf"0\.\.{T - 1}"):
            heatmap_figure(lca_file, bad, tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


def test_heatmap_missing_file_is_one_line(tmp_path):
    with pytest.raises(CorruptFileError, match="missing"):
        heatmap_figure(tmp_path / "none.h5", [0], tmp_path / "x.png")


def gif_frames(path: Path) -> list[bytes]:
    with Image.open(path) as im:
        frames = []
        for k in range(im.n_frames):
            im.seek(k)
            frames.append(im.convert("RGB").tobytes())
    return frames


def test_animation_deterministic(lca_file, tmp_path, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)  # the GIF path alone; the MP4 needs ffmpeg
    a, b = tmp_path / "a.gif", tmp_path / "b.gif"
    assert animation(lca_file, a, max_frames=4, fps=5) is None
    animation(lca_file, b, max_frames=4, fps=5)
    assert a.read_bytes() == b.read_bytes()
    assert not list(tmp_path.glob("*.partial"))
    assert not a.with_suffix(".mp4").exists()
    with Image.open(a) as im:
        assert im.n_frames == 4  # T = 7, stride 2: iterations 0, 2, 4, 6
        assert im.info["loop"] == 0
    with pytest.raises(ConfigError, match="max_frames"):
        animation(lca_file, tmp_path / "x.gif", max_frames=1)


@pytest.mark.parametrize("T", [1, 2, 3, 7, 100, 880, 881])
@pytest.mark.parametrize("max_frames", [2, 3, 4, 120])
def test_frame_iterations_keep_first_and_last(T, max_frames):
    frames = _frame_iterations(T, max_frames)
    assert frames[0] == 0 and frames[-1] == T - 1
    assert len(frames) <= max_frames and frames == sorted(set(frames))
    if T <= max_frames:
        assert frames == list(range(T))


def test_animation_frames_are_the_sampled_iterations(tmp_path, monkeypatch):
    """Rows with the same |LCA| but different signs: the colour limits do not depend on which frames are
    sampled, so frame k of a strided animation must equal the full animation's frame of that iteration."""
    monkeypatch.setattr("shutil.which", lambda name: None)
    path = write_lca(tmp_path / "signs.h5", LAYOUT, T)
    rng = np.random.default_rng(1)
    base = rng.uniform(1e-4, 1e-3, K)
    with h5py.File(path, "r+") as f:
        f["lca"][...] = (base * rng.choice([-1.0, 1.0], size=(T, K))).astype(np.float32)
    full, strided = tmp_path / "full.gif", tmp_path / "strided.gif"
    animation(path, full)
    animation(path, strided, max_frames=3)
    full_frames, strided_frames = gif_frames(full), gif_frames(strided)
    assert len(full_frames) == T and len(strided_frames) == 3
    assert len(set(full_frames)) == T  # every frame shows something different
    for k, t in enumerate(_frame_iterations(T, 3)):  # 0, 3, 6: first and last included
        assert strided_frames[k] == full_frames[t]
    assert strided_frames[-1] == full_frames[T - 1]


def test_animation_single_iteration(tmp_path, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    path = write_lca(tmp_path / "one.h5", LAYOUT, 1)
    out = tmp_path / "one.gif"
    animation(path, out)
    with Image.open(out) as im:
        assert im.n_frames == 1


@pytest.mark.parametrize(
    "T, expected",
    [(1, [0]), (2, [0, 1]), (3, [0, 1, 2]), (4, [0, 1, 2, 3]), (5, [0, 1, 2, 4]), (880, [0, 22, 220, 879])],
)
def test_default_iterations(T, expected):
    got = default_iterations(T)
    assert got == expected
    assert len(set(got)) == len(got) and all(0 <= t < T for t in got)
