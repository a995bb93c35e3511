"""Reading rasters, images and masks, with one clear error per bad file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rasterio.windows import Window

from landlearn.data.io import raster_info, read_mask, read_raster
from landlearn.errors import LandlearnError


def test_read_geotiff_float32_with_window_and_bands(pair: Path) -> None:
    full = read_raster(pair / "scene.tif")
    assert full.shape == (4, 48, 40)
    assert full.dtype == np.float32
    part = read_raster(pair / "scene.tif", window=Window(5, 10, 8, 6), bands=[2, 4])
    np.testing.assert_array_equal(part, full[[1, 3], 10:16, 5:13])


def test_read_jpeg_and_grayscale_png(images: Path, tmp_path: Path) -> None:
    jpg = next((images / "rgb" / "Forest").glob("*.jpg"))
    image = read_raster(jpg)
    assert image.shape == (3, 16, 16)
    assert image.dtype == np.float32
    gray = tmp_path / "g.png"
    Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4)).save(gray)
    arr = read_raster(gray, window=Window(1, 1, 2, 2))
    np.testing.assert_array_equal(arr, [[[5, 6], [9, 10]]])


def test_nan_rejected_only_when_asked(pair: Path) -> None:
    assert np.isnan(read_raster(pair / "scene.tif")).any()
    with pytest.raises(LandlearnError, match="NaN in band 1 at row 0, col 0"):
        read_raster(pair / "scene.tif", allow_nan=False)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.tif", b"", "empty file"),
        ("text.tif", b"hello, this is not a raster\n", "not a raster"),
        ("broken.jpg", b"\xff\xd8\xff\xe0 truncated", "corrupt"),
        ("text.png", b"not a png", "corrupt"),
    ],
)
def test_bad_files_name_file_and_problem(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(LandlearnError, match=message) as err:
        read_raster(path)
    assert err.value.path == str(path)


def test_missing_file_and_bad_bands(pair: Path, tmp_path: Path) -> None:
    with pytest.raises(LandlearnError, match="not found"):
        read_raster(tmp_path / "nope.tif")
    with pytest.raises(LandlearnError, match="start at 1"):
        read_raster(pair / "scene.tif", bands=[0])
    with pytest.raises(LandlearnError, match="4-band"):
        read_raster(pair / "scene.tif", bands=[5])


def test_read_mask_kinds(pair: Path, tmp_path: Path) -> None:
    codes = read_mask(pair / "label.tif")
    assert codes.shape == (48, 40)
    assert codes.dtype == np.uint8
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.full((4, 5, 3), 200, np.uint8)).save(rgb)
    assert read_mask(rgb).shape == (4, 5, 3)
    pal = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), mode="P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    pal.save(tmp_path / "pal.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "pal.png"), [[0, 1], [2, 1]])
    with pytest.raises(LandlearnError, match="float"):
        read_mask(pair / "scene.tif")


def test_raster_info(pair: Path, images: Path) -> None:
    info = raster_info(pair / "scene.tif")
    assert info.band_names == ["B02", "B03", "B04", "B08"]
    assert info.shape == (4, 48, 40)
    assert info.crs.to_epsg() == 32633
    assert info.dtype == "float32"
    label = raster_info(pair / "label.tif")
    assert label.nodata == 0
    assert label.band_names == ["B1"]
    jpg = raster_info(next((images / "rgb" / "Urban").glob("*.jpg")))
    assert jpg.band_names == ["red", "green", "blue"]
    assert jpg.crs is None
