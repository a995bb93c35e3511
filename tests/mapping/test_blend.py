"""Tile grid, weights and the streaming blender against a whole-scene accumulator."""

from __future__ import annotations

import numpy as np
import pytest

from landlearn.mapping.blend import StreamingBlender, TileGrid, reflect_index, weight_window


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_reflect_index_matches_numpy_reflect(size: int) -> None:
    row = np.arange(size) * 10
    pad = 3 * size + 2
    expected = np.pad(row, pad, mode="reflect") if size > 1 else np.full(size + 2 * pad, 0)
    got = row[reflect_index(np.arange(-pad, size + pad), size)]
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("kind", ["cosine", "linear", "none"])
def test_weights_positive_flat_middle_symmetric(kind: str) -> None:
    w = weight_window(64, 48, 16, kind)
    assert w.shape == (64, 48)
    assert w.dtype == np.float32
    assert (w > 0).all()
    assert w.max() == pytest.approx(1.0)
    np.testing.assert_allclose(w, w[::-1, ::-1])
    assert w[16:48, 16:32].min() == pytest.approx(1.0)
    if kind != "none":
        assert w[0, 24] < 0.1


def test_weights_reject_unknown_blend() -> None:
    with pytest.raises(ValueError, match="blend"):
        weight_window(8, 8, 2, "gauss")


@pytest.mark.parametrize(
    ("h", "w", "tile", "overlap"),
    [(100, 130, 32, 8), (37, 200, 64, 16), (5, 9, 32, 8), (90, 70, 32, 20), (64, 64, 32, 0)],
)
def test_grid_covers_scene_with_margin(h: int, w: int, tile: int, overlap: int) -> None:
    g = TileGrid.build(h, w, tile, overlap)
    assert g.y0(0) == -(overlap // 2)
    assert g.x0(0) == -(overlap // 2)
    assert g.y0(g.rows - 1) + g.tile_h >= h + g.margin
    assert g.x0(g.cols - 1) + g.tile_w >= w + g.margin
    assert g.tile_h <= tile
    assert g.tile_w <= tile
    assert g.tile_h > overlap


@pytest.mark.parametrize(
    ("h", "w", "tile", "overlap", "flat"),
    [
        (100, 130, 32, 8, False),
        (37, 61, 16, 10, False),
        (50, 40, 16, 4, True),
        (20, 20, 64, 8, False),
    ],
)
def test_streaming_equals_whole_scene_accumulator(
    h: int, w: int, tile: int, overlap: int, flat: bool
) -> None:
    rng = np.random.default_rng(0)
    g = TileGrid.build(h, w, tile, overlap)
    weight = weight_window(g.tile_h, g.tile_w, overlap, "cosine")
    c = 3
    shape = (c,) if flat else (c, g.tile_h, g.tile_w)
    windows = [rng.random(shape, dtype=np.float32) for _ in range(len(g))]
    valids = [rng.random((g.tile_h, g.tile_w)) > 0.1 for _ in range(len(g))]
    # reference: the whole padded scene in memory
    m = g.margin
    hp, wp = g.y0(g.rows - 1) + g.tile_h + m, g.x0(g.cols - 1) + g.tile_w + m
    acc = np.zeros((c + 1, hp, wp), np.float32)
    for i, (v, ok) in enumerate(zip(windows, valids, strict=True)):
        r, col = divmod(i, g.cols)
        ys = slice(r * g.stride_y, r * g.stride_y + g.tile_h)
        xs = slice(col * g.stride_x, col * g.stride_x + g.tile_w)
        ww = weight * ok
        acc[:c, ys, xs] += (v[:, None, None] if flat else v) * ww
        acc[c, ys, xs] += ww
    expected = acc[:, m : m + h, m : m + w]
    got = np.full((c + 1, h, w), np.nan, np.float32)
    seen = np.zeros((h, w), int)

    def sink(y0: int, x0: int, a: np.ndarray, ws: np.ndarray) -> None:
        got[:c, y0 : y0 + ws.shape[0], x0 : x0 + ws.shape[1]] = a
        got[c, y0 : y0 + ws.shape[0], x0 : x0 + ws.shape[1]] = ws
        seen[y0 : y0 + ws.shape[0], x0 : x0 + ws.shape[1]] += 1

    rows: list[int] = []
    blender = StreamingBlender(g, c, weight, sink, rows.append)
    for i, (v, ok) in enumerate(zip(windows, valids, strict=True)):
        blender.add(i, v, ok)
    assert blender.finished
    assert rows == list(range(g.rows))
    assert (seen == 1).all()  # every pixel emitted exactly once
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_blender_refuses_out_of_order_windows() -> None:
    g = TileGrid.build(40, 40, 16, 4)
    blender = StreamingBlender(g, 1, weight_window(16, 16, 4), lambda *a: None)
    with pytest.raises(RuntimeError, match="order"):
        blender.add(1, None)
