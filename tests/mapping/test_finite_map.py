"""Non-finite and absurd pixels in ``map`` (counted once per scene pixel); window, memory guards."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
from mapping_helpers import make_bundle, smooth_scene, write_tif

from landlearn.bundle import load_bundle
from landlearn.errors import LandlearnError
from landlearn.mapping import map_scene
from landlearn.mapping.blend import TileGrid
from landlearn.mapping.budget import ALIVE_FACTOR, activation_bytes


@pytest.mark.parametrize(
    ("h", "w", "tile", "overlap"),
    [(64, 64, 33, 31), (300, 420, 64, 16), (7, 300, 32, 8), (128, 128, 128, 0), (100, 90, 40, 9)],
)
def test_owned_parts_tile_the_scene_once(h: int, w: int, tile: int, overlap: int) -> None:
    grid = TileGrid.build(h, w, tile, overlap)
    seen = np.zeros((h, w), int)
    for i in range(len(grid)):
        ys, xs = grid.own(i)
        r, c = divmod(i, grid.cols)
        y0, x0 = grid.y0(r), grid.x0(c)
        seen[y0 + ys.start : y0 + ys.stop, x0 + xs.start : x0 + xs.stop] += 1
        assert 0 <= ys.start <= ys.stop <= grid.tile_h
        assert xs.stop <= grid.tile_w
    assert (seen == 1).all()


def _dirty_scene(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    data = smooth_scene(150, 170).astype(np.float32)
    data[:, 40:50, 60:75] = np.nan  # 150 pixels, across window borders
    data[2, 100, 5] = np.inf
    data[0, 120:122, 100:103] = 3e38  # 6 absurd pixels
    nan = ~np.isfinite(data).all(axis=0)
    absurd = np.zeros_like(nan)
    absurd[120:122, 100:103] = True
    return write_tif(tmp_path / "dirty.tif", data), nan, absurd


@pytest.mark.parametrize("model", ["test_conv1x1", "test_conv3x3"])
def test_map_voids_nonfinite_pixels_and_counts_them_once(
    tmp_path: Path, model: str, caplog: pytest.LogCaptureFixture
) -> None:
    scene, nan, absurd = _dirty_scene(tmp_path)
    bundle = make_bundle(tmp_path / "b.safetensors", model)
    with caplog.at_level(logging.WARNING, logger="landlearn"):
        res = map_scene(bundle, scene, tmp_path / "m.tif", tile=48, overlap=16)
    with rasterio.open(res.path) as src:
        cls, conf = src.read(1), src.read(2)
    assert (cls[nan] == 255).all()
    assert (cls[~nan] < 3).all()  # every other pixel mapped, the absurd ones too
    assert (conf[absurd] > 0).all()
    summary = json.loads(res.areas.read_text())
    assert summary["screened"] == {
        "pixels": 150 * 170,
        "nonfinite": int(nan.sum()),
        "absurd": 6,
        "nonfinite_outputs": 0,
    }
    assert f"{int(nan.sum())} of 25,500 pixels hold NaN or inf" in caplog.text
    assert "6 of 25,500 pixels lie beyond ±50 std" in caplog.text


def test_ensemble_and_classification_maps_follow_the_rule(tmp_path: Path) -> None:
    scene, nan, _ = _dirty_scene(tmp_path)
    a = make_bundle(tmp_path / "a.safetensors", seed=1)
    b = make_bundle(tmp_path / "b.safetensors", seed=2)
    res = map_scene(a, scene, tmp_path / "e.tif", ensemble=[b], tile=48, overlap=16)
    with rasterio.open(res.path) as src:
        cls = src.read(1)
    assert (cls[nan] == 255).all()
    assert (cls[~nan] < 3).all()
    patch = make_bundle(tmp_path / "p.safetensors", "test_patch", chip_size=16)
    res = map_scene(patch, scene, tmp_path / "p.tif", overlap=0)
    with rasterio.open(res.path) as src:
        cls = src.read(1)
    assert (cls[nan] == 255).all()
    assert (cls[~nan] < 3).all()


def test_clean_scene_has_no_screened_entry(tmp_path: Path, bundle: Path, scene: Path) -> None:
    res = map_scene(bundle, scene, tmp_path / "m.tif")
    assert "screened" not in json.loads(res.areas.read_text())


def test_wasteful_overlap_warns_with_the_count(
    tmp_path: Path, bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    scene = write_tif(tmp_path / "s.tif", smooth_scene(64, 64))
    with caplog.at_level(logging.WARNING, logger="landlearn"):
        map_scene(bundle, scene, tmp_path / "m.tif", tile=33, overlap=31)
    assert "--tile 33 --overlap 31 makes 1,024 windows for a 64×64 scene" in caplog.text
    assert "--overlap 8 would take 9" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="landlearn"):
        map_scene(bundle, scene, tmp_path / "m.tif", tile=32, overlap=8, overwrite=True)
    assert "windows for a" not in caplog.text


def test_batch_that_cannot_fit_is_refused_before_any_work(
    tmp_path: Path, bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = write_tif(tmp_path / "s.tif", smooth_scene(300, 300))
    per_window = activation_bytes(load_bundle(bundle), 256, 256)
    assert per_window == 4 * 256 * 256 * 4  # conv1x1: the largest activation is its 4-band input
    free = ALIVE_FACTOR * per_window * 3  # room for 3 windows, not 8
    monkeypatch.setattr("landlearn.mapping.budget.available_bytes", lambda device: free)
    expect = r"--tile 256 with --batch-size 8 needs about \d+ MiB .*; --batch-size 3 might fit"
    with pytest.raises(LandlearnError, match=expect) as err:
        map_scene(bundle, scene, tmp_path / "m.tif", tile=256, overlap=0, batch_size=8)
    assert str(err.value.path) == str(scene)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conv1x1.safetensors", "s.tif"]
    map_scene(bundle, scene, tmp_path / "m.tif", tile=256, overlap=0, batch_size=3)


def test_allocation_failure_is_one_line_and_writes_nothing(
    tmp_path: Path, bundle: Path, scene: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from landlearn.mapping import uncertainty

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:118] DefaultCPUAllocator: not enough "
                           "memory: you tried to allocate 34359738368 bytes.")  # fmt: skip

    monkeypatch.setattr(uncertainty.WindowModel, "_forward", boom)
    with pytest.raises(LandlearnError, match="out of memory with --tile 364 and --batch-size 4"):
        map_scene(bundle, scene, tmp_path / "m.tif")
    assert not list(tmp_path.glob("m*"))
    assert not list(tmp_path.glob(".m*"))
