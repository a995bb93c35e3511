"""Real rasters from ../shared/data, mapped with tiny bundles trained inside the test."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from mapping_helpers import Conv, PatchClassifier

from landlearn.bundle import BundleMeta, save_bundle
from landlearn.conventions import IGNORE_INDEX
from landlearn.mapping import map_scene

pytestmark = pytest.mark.real


def _need(shared_data: Path, rel: str) -> Path:
    path = shared_data / rel
    if not path.exists():
        pytest.skip(f"{rel} not found in {shared_data}")
    return path


def _train_pixels(
    x: np.ndarray, y: np.ndarray, classes: int, out: Path, band_names: Sequence[str]
) -> Path:
    """A 1×1-conv bundle fitted for a few Adam steps on (N, C) pixels with labels (N,)."""
    torch.manual_seed(0)
    pick = np.random.default_rng(0).permutation(len(x))[:20000]
    x, y = x[pick], y[pick]
    mean, std = x.mean(0), x.std(0) + 1e-6
    model = Conv(x.shape[1], classes, 1, 0.0)
    xt = torch.from_numpy(((x - mean) / std).astype(np.float32))[:, :, None, None]
    yt = torch.from_numpy(y.astype(np.int64))[:, None, None]
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(60):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xt), yt, ignore_index=IGNORE_INDEX)
        loss.backward()
        opt.step()
    meta = BundleMeta(
        task="segmentation",
        model_name="test_conv1x1",
        model_kwargs={},
        band_names=list(band_names),
        mean=mean.tolist(),
        std=std.tolist(),
        class_names=[f"c{i}" for i in range(classes)],
    )
    return save_bundle(out, model, meta)


def _brightness_classes(img: np.ndarray, valid: np.ndarray) -> np.ndarray:
    bright = img.mean(0)
    cuts = np.quantile(bright[valid], [1 / 3, 2 / 3])
    return np.digitize(bright, cuts)


def test_rgb_byte_landsat(shared_data: Path, tmp_path: Path) -> None:
    scene = _need(shared_data, "rasterio/RGB.byte.tif")
    with rasterio.open(scene) as src:
        img = src.read().astype(np.float32)
        valid = (img != 0).any(0)
        crs, transform = src.crs, src.transform
    labels = _brightness_classes(img, valid)
    bundle = _train_pixels(
        img[:, valid].T, labels[valid], 3, tmp_path / "rgb.safetensors", ["red", "green", "blue"]
    )
    res = map_scene(bundle, scene, tmp_path / "rgb_map.tif", tile=256, overlap=32)
    with rasterio.open(res.path) as m:
        assert m.crs == crs
        assert m.transform == transform
        cls = m.read(1)
    assert (cls[~valid] == IGNORE_INDEX).all()
    assert (cls[valid] < 3).all()
    assert (cls[valid] == labels[valid]).mean() > 0.8
    areas = json.loads(res.areas.read_text())
    assert areas["unit"] == "km2"
    assert areas["valid_pixels"] == int(valid.sum())


def test_slovenia_s2_by_band_alias(shared_data: Path, tmp_path: Path) -> None:
    scene = _need(shared_data, "slovenia_s2_lulc/s2_l1c_20150909.tif")
    lulc = _need(shared_data, "slovenia_s2_lulc/lulc.tif")
    with rasterio.open(scene) as src:
        names = list(src.descriptions)
        img = src.read([names.index(b) + 1 for b in ("B02", "B03", "B04", "B08")])
    with rasterio.open(lulc) as src:
        codes = src.read(1)
    present = [c for c in np.unique(codes) if c != 0]
    y = np.full(codes.shape, IGNORE_INDEX, np.int64)
    for i, c in enumerate(present):
        y[codes == c] = i
    # the bundle names its bands by colour; the scene by Sentinel-2 number
    bundle = _train_pixels(
        img.reshape(4, -1).T,
        y.ravel(),
        len(present),
        tmp_path / "s2.safetensors",
        ["blue", "green", "red", "nir"],
    )
    res = map_scene(bundle, scene, tmp_path / "s2_map.tif", tile=128, overlap=16, tta="d4")
    with rasterio.open(res.path) as m:
        assert m.shape == (101, 100)
        assert m.descriptions[2] == "entropy"
        cls = m.read(1)
    labelled = y != IGNORE_INDEX
    majority = np.bincount(y[labelled]).max() / labelled.sum()
    assert (cls[labelled] == y[labelled]).mean() >= majority - 0.05


def test_naip_four_unnamed_bands(
    shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    scene = _need(shared_data, "opengeos/naip/m_4709963_se_14_1_20200831.tif")
    with rasterio.open(scene) as src:
        img = src.read().astype(np.float32)
    valid = (img != 0).any(0)
    ndvi = (img[3] - img[0]) / (img[3] + img[0] + 1e-6)
    labels = (ndvi > np.median(ndvi[valid])).astype(np.int64)
    bundle = _train_pixels(
        img[:, valid].T, labels[valid], 2, tmp_path / "naip.safetensors", ["r", "g", "b", "nir"]
    )
    with caplog.at_level("WARNING"):
        res = map_scene(bundle, scene, tmp_path / "naip_map.tif", tile=256, overlap=32)
    assert "in order" in caplog.text
    with rasterio.open(res.path) as m:
        cls = m.read(1)
    assert (cls[valid] == labels[valid]).mean() > 0.8


def test_eurosat_classifier_on_sentinel2_scene(shared_data: Path, tmp_path: Path) -> None:
    """A EuroSAT-style patch classifier gives a patch-level land-use map of an S2 scene."""
    chips = sorted(_need(shared_data, "eurosat_ms").glob("*/*.tif"))
    scene = _need(shared_data, "slovenia_s2_lulc/s2_l1c_20150909.tif")
    order = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12"]
    order.append("B8A")  # EuroSAT MS band order
    x = np.stack([rasterio.open(p).read().astype(np.float32) / 10000 for p in chips])
    classes = [p.parent.name for p in chips]
    mean, std = x.mean((0, 2, 3)), x.std((0, 2, 3)) + 1e-6
    torch.manual_seed(0)
    model = PatchClassifier(13, len(classes))
    xt = torch.from_numpy((x - mean[:, None, None]) / std[:, None, None])
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xt), torch.arange(len(classes))).backward()
        opt.step()
    meta = BundleMeta(
        task="classification",
        model_name="test_patch",
        model_kwargs={},
        band_names=order,
        mean=mean.tolist(),
        std=std.tolist(),
        class_names=classes,
        chip_size=64,
    )
    bundle = save_bundle(tmp_path / "eurosat.safetensors", model, meta)
    res = map_scene(bundle, scene, tmp_path / "landuse.tif", overlap=32)
    with rasterio.open(res.path) as m:
        cls = m.read(1)
        assert json.loads(m.tags()["LANDLEARN_TILING"])["tile"] == 64
    assert cls.shape == (101, 100)
    assert (cls < len(classes)).all()
