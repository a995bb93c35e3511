"""Synthetic scenes and patches: determinism, shapes, coherence, spectra, GeoTIFF output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from landlearn.conventions import IGNORE_INDEX
from landlearn.data.synthetic import (
    CLASSES,
    COLORS,
    band_names,
    make_patches,
    make_scene,
    signatures,
    write_patch_folder,
    write_scene,
)
from landlearn.errors import LandlearnError


def test_legend() -> None:
    assert len(CLASSES) == len(COLORS) == 5
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in COLORS)


def test_scene_shapes_dtypes_and_profile() -> None:
    image, label, profile = make_scene(48, 40, bands=6, seed=1)
    assert image.shape == (6, 48, 40)
    assert image.dtype == np.float32
    assert label.shape == (48, 40)
    assert label.dtype == np.uint8
    assert 0.0 <= image.min()
    assert image.max() <= 1.0
    assert set(np.unique(label)) <= set(range(5))
    assert profile["count"] == 6
    assert profile["height"] == 48
    assert profile["width"] == 40
    assert profile["crs"].to_epsg() == 32633
    assert profile["transform"].c == 500000.0
    assert profile["transform"].f == 5100000.0
    assert profile["transform"].a == 10.0
    assert profile["transform"].e == -10.0


def test_scene_deterministic_by_seed() -> None:
    a = make_scene(64, 64, seed=3, clouds=0.1)
    b = make_scene(64, 64, seed=3, clouds=0.1)
    c = make_scene(64, 64, seed=4, clouds=0.1)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert (a[1] != c[1]).mean() > 0.2


def test_regions_are_coherent_and_all_classes_present() -> None:
    _, label, _ = make_scene(256, 256, seed=0)
    same_right = (label[:, 1:] == label[:, :-1]).mean()
    same_down = (label[1:] == label[:-1]).mean()
    assert same_right > 0.95
    assert same_down > 0.95
    counts = np.bincount(label.ravel(), minlength=5)
    assert (counts > 0.03 * label.size).all()


def test_class_spectra_separable() -> None:
    image, label, _ = make_scene(128, 128, seed=0, noise=0.02)
    means = np.stack([image[:, label == k].mean(axis=1) for k in range(5)])
    np.testing.assert_allclose(means, signatures(4, 5), atol=0.01)
    nir = band_names(4).index("nir")
    assert means[0, nir] == means[:, nir].min()  # water darkest in NIR
    assert means[1, nir] == means[:, nir].max()  # forest brightest in NIR
    gaps = np.abs(means[:, None] - means[None]).max(axis=2)
    assert gaps[~np.eye(5, dtype=bool)].min() > 0.02


def test_clouds_and_nodata_are_ignored() -> None:
    image, label, profile = make_scene(128, 128, seed=2, clouds=0.15, nodata_fraction=0.1)
    hole = np.isnan(image).any(axis=0)
    assert 0.02 < hole.mean() < 0.25
    assert np.isnan(image[:, hole]).all()  # every band is no-data there
    assert (label[hole] == IGNORE_INDEX).all()
    bright = ~hole & (image.min(axis=0) > 0.6)  # cloud cores: bright in all bands
    assert bright.mean() > 0.02
    assert (label[bright] == IGNORE_INDEX).all()
    assert np.isnan(profile["nodata"])


def test_uint16_scene() -> None:
    image, _, profile = make_scene(32, 32, dtype="uint16", nodata_fraction=0.2, seed=5)
    ref, _, _ = make_scene(32, 32, seed=5, nodata_fraction=0.2)
    assert image.dtype == np.uint16
    assert profile["dtype"] == "uint16"
    assert profile["nodata"] == 0
    valid = ~np.isnan(ref)
    np.testing.assert_allclose(image[valid], np.clip(np.round(ref[valid] * 10000), 1, None))
    assert (image[~valid] == 0).all()


def test_bad_arguments() -> None:
    with pytest.raises(LandlearnError, match="dtype"):
        make_scene(8, 8, dtype="int8")
    with pytest.raises(LandlearnError, match="clouds"):
        make_scene(8, 8, clouds=1.5)


def test_write_scene_blocks_equal_one_shot(tmp_path: Path) -> None:
    rasterio = pytest.importorskip("rasterio")
    kw = {"bands": 4, "seed": 7, "clouds": 0.1, "nodata_fraction": 0.05, "origin": (1000.0, 2000.0)}
    image, label, _ = make_scene(200, 168, **kw)
    p_img, p_lab = write_scene(tmp_path / "img.tif", tmp_path / "lab.tif", 200, 168, block=64, **kw)
    with rasterio.open(p_img) as src:
        np.testing.assert_array_equal(src.read(), image)
        assert src.crs.to_epsg() == 32633
        assert src.transform.c == 1000.0
        assert src.transform.f == 2000.0
        assert src.descriptions == ("blue", "green", "red", "nir")
        assert np.isnan(src.nodata)
        assert src.profile["tiled"]
        assert src.compression.value.lower() == "deflate"
    with rasterio.open(p_lab) as src:
        np.testing.assert_array_equal(src.read(1), label)
        assert src.nodata == IGNORE_INDEX
        assert src.colormap(1)[1] == (*COLORS[1], 255)
        assert json.loads(src.tags()["class_names"]) == CLASSES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.tif", "lab.tif"]  # no temp files


def test_write_scene_unknown_argument(tmp_path: Path) -> None:
    with pytest.raises(LandlearnError, match="colour"):
        write_scene(tmp_path / "a.tif", tmp_path / "b.tif", 32, 32, colour=1)
    assert not list(tmp_path.iterdir())


def test_make_patches_balanced_and_learnable() -> None:
    x, y = make_patches(100, size=32, bands=3, seed=0)
    assert x.shape == (100, 3, 32, 32)
    assert x.dtype == np.float32
    assert y.dtype == np.int64
    assert np.bincount(y).tolist() == [20] * 5
    x2, y2 = make_patches(100, size=32, bands=3, seed=0)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    # nearest class mean on (band means, texture energy) already separates most patches
    feats = np.concatenate([x.mean(axis=(2, 3)), np.abs(np.diff(x, axis=3)).mean(axis=(2, 3))], 1)
    centres = np.stack([feats[y == k].mean(0) for k in range(5)])
    scale = feats.std(0)
    dist = (((feats[:, None] - centres[None]) / scale) ** 2).sum(-1)
    assert (dist.argmin(1) == y).mean() > 0.8


def test_write_patch_folder_png_and_tif(tmp_path: Path) -> None:
    from PIL import Image

    root = write_patch_folder(tmp_path / "png", 3, size=16, seed=1)
    assert sorted(p.name for p in root.iterdir()) == sorted(CLASSES)
    files = sorted((root / "water").iterdir())
    assert [f.name for f in files] == ["0.png", "1.png", "2.png"]
    arr = np.asarray(Image.open(files[0]))
    assert arr.shape == (16, 16, 3)
    assert arr.dtype == np.uint8
    rasterio = pytest.importorskip("rasterio")
    root = write_patch_folder(tmp_path / "tif", 1, size=16, bands=13, fmt="tif")
    with rasterio.open(root / "forest" / "0.tif") as src:
        assert src.count == 13
        assert src.crs is not None
        assert src.dtypes[0] == "float32"
    with pytest.raises(LandlearnError, match="bands=3"):
        write_patch_folder(tmp_path / "bad", 1, bands=4)


@pytest.mark.slow
def test_make_scene_2048_is_fast() -> None:
    import time

    start = time.perf_counter()
    image, label, _ = make_scene(2048, 2048, clouds=0.1, nodata_fraction=0.05)
    assert image.shape == (4, 2048, 2048)
    assert label.shape == (2048, 2048)
    assert time.perf_counter() - start < 10.0  # about 2 s on one shared core
