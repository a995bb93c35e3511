"""Histogram matching: quantiles move to the reference, dtype and no-data kept, GeoTIFFs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from landlearn.data.histmatch import match_histograms, match_raster
from landlearn.errors import LandlearnError

QS = np.linspace(0.05, 0.95, 19)


def test_float_quantiles_match_reference() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(0.0, 1.0, (2, 64, 64)).astype(np.float32)
    reference = np.stack([rng.gamma(2.0, 3.0, (50, 40)), rng.uniform(5, 9, (50, 40))])
    out = match_histograms(image, reference)
    assert out.dtype == np.float32
    assert out.shape == image.shape
    for b in range(2):
        np.testing.assert_allclose(
            np.quantile(out[b], QS), np.quantile(reference[b], QS), rtol=0.02, atol=0.02
        )
    # monotone: the order of pixel values within a band is kept
    order = np.argsort(image[0].ravel())
    assert (np.diff(out[0].ravel()[order]) >= -1e-6).all()


def test_matches_hand_computed_mapping() -> None:
    image = np.array([[[1, 1, 2, 3]]], dtype=np.uint8)  # cdf: 1 -> .5, 2 -> .75, 3 -> 1
    reference = np.array([[[10, 20, 30, 40]]], dtype=np.uint8)  # cdf .25 .5 .75 1
    out = match_histograms(image, reference)
    assert out.dtype == np.uint8
    assert out.tolist() == [[[20, 20, 30, 40]]]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_integer_dtype_and_nodata_kept(dtype: type) -> None:
    rng = np.random.default_rng(1)
    top = np.iinfo(dtype).max
    image = rng.integers(1, top // 4, (3, 32, 32)).astype(dtype)
    image[:, :4] = 0
    reference = rng.integers(top // 2, top, (3, 32, 32)).astype(dtype)
    reference[:, -4:] = 0
    out = match_histograms(image, reference, nodata=0)
    assert out.dtype == dtype
    assert (out[:, :4] == 0).all()  # no-data unchanged
    valid = out[:, 4:].astype(np.float64)
    assert valid.min() >= top // 2 - 1  # reference no-data (0) was not part of its histogram
    np.testing.assert_allclose(
        valid.mean(axis=(1, 2)), reference[:, :-4].mean(axis=(1, 2)), rtol=0.02
    )


def test_nan_pixels_untouched_and_band_mismatch() -> None:
    rng = np.random.default_rng(2)
    image = rng.random((1, 16, 16))
    image[0, 0, 0] = np.nan
    reference = rng.random((1, 8, 8)) + 5.0
    reference[0, 1, 1] = np.nan
    out = match_histograms(image, reference)
    assert np.isnan(out[0, 0, 0])
    assert np.isfinite(out[0]).sum() == 255
    assert np.nanmin(out) >= 5.0
    with pytest.raises(LandlearnError, match="3 bands but reference has 1"):
        match_histograms(np.zeros((3, 4, 4)), reference)


def _write(path: Path, data: np.ndarray, nodata: float | None) -> None:
    import rasterio
    from affine import Affine

    count, height, width = data.shape
    geo = {"crs": "EPSG:32633", "transform": Affine(10, 0, 5e5, 0, -10, 5e6), "nodata": nodata}
    shape = {"height": height, "width": width, "count": count, "dtype": data.dtype}
    with rasterio.open(path, "w", driver="GTiff", **shape, **geo) as dst:
        dst.write(data)


def test_match_raster_equals_in_memory(tmp_path: Path) -> None:
    rasterio = pytest.importorskip("rasterio")
    rng = np.random.default_rng(3)
    src = rng.integers(1, 120, (2, 70, 90)).astype(np.uint8)
    src[:, :5, :5] = 0
    ref = rng.integers(100, 250, (2, 40, 50)).astype(np.uint8)
    _write(tmp_path / "src.tif", src, 0)
    _write(tmp_path / "ref.tif", ref, 0)
    out = match_raster(tmp_path / "src.tif", tmp_path / "ref.tif", tmp_path / "out.tif", block=32)
    with rasterio.open(out) as dst:
        got = dst.read()
        assert dst.crs.to_epsg() == 32633
        assert dst.nodata == 0
        assert dst.dtypes[0] == "uint8"
    # full-resolution histograms (small files are read whole), so identical to in-memory matching
    np.testing.assert_array_equal(got, match_histograms(src, ref, nodata=0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif", "ref.tif", "src.tif"]


def test_match_raster_errors(tmp_path: Path) -> None:
    pytest.importorskip("rasterio")
    _write(tmp_path / "a.tif", np.ones((2, 8, 8), np.uint8), None)
    _write(tmp_path / "b.tif", np.ones((3, 8, 8), np.uint8), None)
    with pytest.raises(LandlearnError, match="has 2 bands but reference"):
        match_raster(tmp_path / "a.tif", tmp_path / "b.tif", tmp_path / "o.tif")
    with pytest.raises(LandlearnError, match="cannot read reference"):
        match_raster(tmp_path / "a.tif", tmp_path / "none.tif", tmp_path / "o.tif")
    assert not (tmp_path / "o.tif").exists()


@pytest.mark.real
def test_deepglobe_means_move_to_reference(shared_data: Path) -> None:
    from PIL import Image

    folder = shared_data / "deepglobe" / "train"

    def load(name: str) -> np.ndarray:
        with Image.open(folder / name) as im:
            return np.asarray(im.convert("RGB").reduce(8)).transpose(2, 0, 1)

    image, reference = load("6399_sat.jpg"), load("119_sat.jpg")
    out = match_histograms(image, reference)
    assert out.dtype == np.uint8
    assert out.shape == image.shape
    before = np.abs(image.mean(axis=(1, 2)) - reference.mean(axis=(1, 2)))
    after = np.abs(out.mean(axis=(1, 2)) - reference.mean(axis=(1, 2)))
    assert (after < 1.5).all()
    assert (after < before / 4 + 0.5).all()
    np.testing.assert_allclose(
        np.quantile(out, QS, axis=(1, 2)), np.quantile(reference, QS, axis=(1, 2)), atol=3
    )
