"""Blocks of a scene, mapped one at a time, join into the one-piece map without seams."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mapping_helpers import make_bundle, smooth_scene, write_tif

from landlearn.errors import LandlearnError
from landlearn.mapping import Block, MapOptions, predict_scene_array
from landlearn.mapping.blend import BlockGrid, TileGrid


def _assembled(bundle: Path, scene: Path, size: int, opts: MapOptions) -> dict[str, np.ndarray]:
    h, w = 300, 420
    out: dict[str, np.ndarray] = {}
    for block in Block.tiling(h, w, size):
        part = predict_scene_array(bundle, scene, opts, block=block)
        ys = slice(block.row_off, block.row_off + block.height)
        xs = slice(block.col_off, block.col_off + block.width)
        for name, value in part.items():
            if name not in out:
                shape = (*value.shape[:-2], h, w)
                out[name] = np.full(shape, np.nan if value.dtype != bool else False, value.dtype)
            out[name][..., ys, xs] = value
    return out


@pytest.mark.parametrize(
    ("size", "opts"),
    [(100, MapOptions(tile=64, overlap=16)),
     (128, MapOptions(tile=64, overlap=24, blend="linear", batch_size=3)),
     (77, MapOptions(tile=48, overlap=16, tta="d4"))],
)  # fmt: skip
def test_blocks_equal_the_one_piece_map(tmp_path: Path, size: int, opts: MapOptions) -> None:
    # a 3x3 convolution with zero padding: window borders differ, so only exact blending
    # across block borders gives the one-piece values there
    bundle = make_bundle(tmp_path / "c3.safetensors", "test_conv3x3", seed=3)
    image = smooth_scene(300, 420)
    image[:, 140:150, 200:260] = 0  # no-data (all bands 0) across a block border
    scene = write_tif(tmp_path / "scene.tif", image, nodata=0)
    whole = predict_scene_array(bundle, scene, opts)
    joined = _assembled(bundle, scene, size, opts)
    assert set(joined) == set(whole)
    np.testing.assert_array_equal(joined["valid"], whole["valid"])
    assert not whole["valid"][140:150, 200:260].any()
    assert whole["valid"].mean() > 0.99
    assert np.isfinite(whole["probabilities"]).mean() > 0.99
    for name in whole:
        if name != "valid":
            np.testing.assert_allclose(joined[name], whole[name], atol=1e-5, equal_nan=True)


def test_a_block_reads_only_the_windows_that_reach_it() -> None:
    full = TileGrid.build(300, 420, 64, 16)
    blocks = Block.tiling(300, 420, 100)
    owned = 0
    for block in blocks:
        g = BlockGrid.build(full, block)
        assert 0 < len(g) < len(full)
        for i in range(len(g)):
            ys, xs = g.own(i)
            owned += (ys.stop - ys.start) * (xs.stop - xs.start)
    assert owned == 300 * 420  # the owned parts tile the scene once over all blocks
    corner = BlockGrid.build(full, Block(0, 0, 100, 100))
    assert (corner.rows, corner.cols) == (3, 3)  # windows start every 48 px from -8


def test_bad_blocks_and_options_are_one_line(tmp_path: Path, bundle: Path, scene: Path) -> None:
    with pytest.raises(LandlearnError, match=r"scene\.tif: block .* reaches outside"):
        predict_scene_array(bundle, scene, block=Block(250, 0, 100, 100))
    with pytest.raises(LandlearnError, match="empty or negative block"):
        predict_scene_array(bundle, scene, block=Block(0, 0, 0, 10))
    with pytest.raises(LandlearnError, match="unknown map option 'tiles'; did you mean 'tile'"):
        predict_scene_array(bundle, scene, tiles=64)
    with pytest.raises(LandlearnError, match="did you mean 'overlap'"):
        MapOptions().replace(overlapp=3)


def test_options_and_keywords_give_the_same_map(bundle: Path, scene: Path) -> None:
    opts = MapOptions(tile=64, overlap=16, batch_size=2)
    a = predict_scene_array(bundle, scene, opts)
    b = predict_scene_array(bundle, scene, tile=64, overlap=16, batch_size=2)
    c = predict_scene_array(bundle, scene, MapOptions(tile=128), tile=64, overlap=16, batch_size=2)
    for other in (b, c):
        np.testing.assert_array_equal(a["probabilities"], other["probabilities"])
