"""Band-per-file archives stacked into one GeoTIFF on the finest band's grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

from landlearn.data.stacks import S2_BANDS_NO_B10, ssl4eo_pairs, stack_band_files
from landlearn.errors import LandlearnError


def _band(path: Path, data: np.ndarray, res: float, crs: str = "EPSG:32633") -> Path:
    data = data if data.ndim == 3 else data[None]
    grid = Affine(res, 0, 500_000.0, 0, -res, 5_000_000.0)
    with rasterio.open(path, "w", driver="GTiff", height=data.shape[1], width=data.shape[2],
                       count=data.shape[0], dtype=str(data.dtype), crs=crs,
                       transform=grid) as dst:  # fmt: skip
        dst.write(data)
    return path


def test_bands_of_two_resolutions_land_on_the_finest_grid(tmp_path: Path) -> None:
    fine = np.arange(64, dtype=np.uint16).reshape(8, 8)
    coarse = np.array([[1, 2], [3, 4]], dtype=np.uint16).repeat(2, 0).repeat(2, 1)  # 4 x 4
    paths = [_band(tmp_path / "B2.tif", fine, 10.0), _band(tmp_path / "B5.tif", coarse, 20.0)]
    out = stack_band_files(paths, tmp_path / "out" / "stack.tif", resampling="nearest")
    with rasterio.open(out) as src:
        assert (src.count, src.height, src.width) == (2, 8, 8)
        assert src.descriptions == ("B2", "B5")
        assert src.transform.a == 10.0
        data = src.read()
    assert np.array_equal(data[0], fine)
    assert np.array_equal(data[1], coarse.repeat(2, 0).repeat(2, 1))  # each 20 m pixel → 2 x 2
    assert not list((tmp_path / "out").glob(".*.tmp"))  # written through a temporary name
    with pytest.raises(LandlearnError, match="one-band file"):
        stack_band_files([_band(tmp_path / "two.tif", np.zeros((2, 4, 4), "uint16"), 10.0)],
                         tmp_path / "x.tif")  # fmt: skip
    with pytest.raises(LandlearnError, match="differs from"):
        stack_band_files([paths[0], _band(tmp_path / "geo.tif", fine, 10.0, "EPSG:4326")],
                         tmp_path / "x.tif")  # fmt: skip
    with pytest.raises(LandlearnError, match="1 band names for 2 band files"):
        stack_band_files(paths, tmp_path / "x.tif", names=["a"])
    with pytest.raises(LandlearnError, match="expected s1/ and s2c/"):
        ssl4eo_pairs(tmp_path, tmp_path / "y")


@pytest.mark.real
def test_ssl4eo_dates_pair_with_the_nearest_s1_date(shared_data: Path, tmp_path: Path) -> None:
    pairs = ssl4eo_pairs(shared_data / "ssl4eo_s12", tmp_path)
    assert [Path(p["s2"]).name for p in pairs] == ["ssl4eo_0000200_20200604_s2.tif",
                                                   "ssl4eo_0000200_20200823_s2.tif"]  # fmt: skip
    with rasterio.open(pairs[0]["s2"]) as s2, rasterio.open(pairs[0]["s1"]) as s1:
        assert s2.descriptions == S2_BANDS_NO_B10
        assert s1.descriptions == ("VV", "VH")
        assert (s2.width, s2.height) == (264, 264)  # the 10 m bands' grid
        assert np.isfinite(s1.read()).all()
