"""Maps of a pixel-regression head: float32 bands in the target's unit, NaN no-data (issue #15)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from mapping_helpers import Conv, away_from_window_edges, smooth_scene, write_tif

from landlearn.bundle import Predictor, meta_from_specs, save_bundle
from landlearn.errors import LandlearnError
from landlearn.mapping import map_scene
from landlearn.mapping.scene import predict_scene_array
from landlearn.schema import HeadSpec, InputSpec

BANDS = ("blue", "green", "red", "nir")


def _predictor(kernel: int = 1, targets: tuple[str, ...] = ("ndvi",)) -> Predictor:
    torch.manual_seed(0)
    inputs = [InputSpec("image", "raster", bands=BANDS, mean=[100.0] * 4, std=[50.0] * 4,
                        chip_size=32)]  # fmt: skip
    t = len(targets)
    head = HeadSpec(targets[0] if t == 1 else "values", "pixel_regression", targets=targets,
                    units=["index"] * t, mean=[0.3] * t, std=[0.2] * t)  # fmt: skip
    meta = meta_from_specs(inputs, [head], model=f"test_conv{kernel}x{kernel}")
    return Predictor(Conv(4, t, kernel, 0.0), meta)


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    data = smooth_scene(80, 72)
    data[:, :5, :7] = 0  # no-data corner
    return write_tif(tmp_path / "scene.tif", data, nodata=0)


def _expected(pred: Predictor, scene: Path) -> np.ndarray:
    """The head's mean + std × conv(normalised image), the whole scene at once: (T, H, W)."""
    with rasterio.open(scene) as src:
        img = torch.from_numpy(src.read().astype(np.float32))[None]
    with torch.no_grad():
        out = pred.model((img - pred._mean) / pred._std)
    return (out[0] * 0.2 + 0.3).numpy()


def test_value_map_is_float32_in_units_with_nan_nodata(tmp_path: Path, scene: Path) -> None:
    pred = _predictor()
    result = map_scene(pred, scene, tmp_path / "ndvi.tif", tile=32, overlap=8, preview=True)
    with rasterio.open(result.path) as src:
        assert src.count == 1
        assert src.dtypes == ("float32",)
        assert np.isnan(src.nodata)
        assert src.descriptions == ("ndvi (index)",)
        assert src.units == ("index",)
        assert src.tags(1)["TARGET"] == "ndvi"
        assert json.loads(src.tags()["TARGETS"]) == ["ndvi"]
        assert "CLASS_NAMES" not in src.tags()
        assert src.colorinterp[0].name != "palette"
        values = src.read(1)
    assert np.isnan(values[:5, :7]).all()
    expected = _expected(pred, scene)[0]
    ok = ~np.isnan(values)
    assert ok.sum() == values.size - 35
    np.testing.assert_allclose(values[ok], expected[ok], rtol=1e-5, atol=1e-5)
    stats = json.loads(result.areas.read_text())
    (entry,) = stats["targets"]
    assert entry["name"] == "ndvi"
    assert entry["unit"] == "index"
    assert entry["pixels"] == ok.sum()
    assert entry["mean"] == pytest.approx(float(values[ok].mean()), rel=1e-5)
    assert entry["min"] == pytest.approx(float(values[ok].min()))
    lo, hi = entry["p2_p98"]
    assert entry["min"] <= lo < hi <= entry["max"]
    assert stats["nodata_pixels"] == 35
    style = (tmp_path / "ndvi.qml").read_text()
    assert 'type="singlebandpseudocolor"' in style
    assert f'classificationMin="{lo:.6g}"' in style
    assert result.preview is not None
    assert result.preview.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_value_map_blends_windows_like_the_whole_scene(tmp_path: Path, scene: Path) -> None:
    """A 3×3 conv: away from window edges the blended map equals the whole-scene prediction."""
    pred = _predictor(kernel=3, targets=("a", "b"))
    arrays = predict_scene_array(pred, scene, tile=32, overlap=12)
    values = arrays["values"]
    assert values.shape == (2, 80, 72)
    expected = _expected(pred, scene)
    ok = away_from_window_edges(80, 72, 32, 12)
    ok[:7, :9] = False  # the no-data corner and the pixels whose 3×3 neighbourhood reaches it
    np.testing.assert_allclose(values[:, ok], expected[:, ok], rtol=1e-5, atol=1e-5)


def test_value_map_with_tta_has_a_std_band_per_target(tmp_path: Path, scene: Path) -> None:
    pred = _predictor(kernel=3, targets=("a", "b"))
    result = map_scene(pred, scene, tmp_path / "v.tif", tile=32, overlap=8, tta="d4")
    with rasterio.open(result.path) as src:
        assert src.descriptions == ("a (index)", "b (index)", "a std (index)", "b std (index)")
        std = src.read([3, 4])
    ok = ~np.isnan(std)
    assert (std[ok] >= 0).all()
    assert std[ok].max() > 1e-4  # a 3×3 conv is not invariant to flips and turns
    arrays = predict_scene_array(pred, scene, tile=32, overlap=8, tta="d4")
    assert arrays["std"].shape == (2, 80, 72)


def test_a_scene_regression_bundle_cannot_map(tmp_path: Path, scene: Path) -> None:
    inputs = [InputSpec("image", "raster", bands=BANDS, mean=[0.0] * 4, std=[1.0] * 4)]
    head = HeadSpec("yield", "regression", targets=["yield"], mean=[1.0], std=[1.0])
    meta = meta_from_specs(inputs, [head], model="mlp_regressor")
    torch.manual_seed(0)
    from landlearn.models.regressors import MLPRegressor

    bundle = save_bundle(tmp_path / "scene_reg.safetensors", MLPRegressor(4, 1), meta)
    with pytest.raises(LandlearnError, match="one value per sample"):
        map_scene(bundle, scene, tmp_path / "m.tif")
    assert not (tmp_path / "m.tif").exists()
