"""GeoTIFF image + label pairs: alignment checks, chips, remap, NaN, spatial split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from rasterio.windows import Window

from landlearn.conventions import IGNORE_INDEX
from landlearn.data.rasters import (
    RasterPairDataset,
    grid_windows,
    pad_chip,
    remap_codes,
    spatial_split,
)
from landlearn.errors import LandlearnError

REMAP = {1: 0, 2: 1, 3: 2, 8: 3}


def test_grid_windows_cover_with_padding() -> None:
    windows = grid_windows(48, 40, 16)
    assert len(windows) == 9
    assert windows[-1] == Window(32, 32, 16, 16)  # reaches 8 px past the 40 px width
    assert len(grid_windows(10, 10, 16)) == 1
    assert len(grid_windows(48, 40, 16, stride=8)) == 5 * 4


def test_remap_codes_unmapped_to_ignore() -> None:
    codes = np.array([[0, 1, 2], [8, 9, 3]], np.int16)
    out = remap_codes(codes, {**REMAP, 0: IGNORE_INDEX})
    np.testing.assert_array_equal(out, [[IGNORE_INDEX, 0, 1], [3, IGNORE_INDEX, 2]])
    assert out.dtype == np.int64


def test_pad_chip_reflects_image_and_ignores_mask() -> None:
    image = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    mask = np.zeros((2, 3), np.int64)
    img, msk = pad_chip(image, mask, (0, 1, 0, 2))
    assert img.shape == (1, 3, 5)
    np.testing.assert_array_equal(img[0, 2, :3], image[0, 0])  # reflected row
    assert msk is not None
    assert (msk[2] == IGNORE_INDEX).all()
    assert (msk[:, 3:] == IGNORE_INDEX).all()


def test_grid_dataset_chips_remap_nodata_nan(pair: Path) -> None:
    ds = RasterPairDataset(pair / "scene.tif", pair / "label.tif", 16, "grid", remap=REMAP)
    assert len(ds) == 9
    assert ds.band_names == ["B02", "B03", "B04", "B08"]
    assert ds.crs.to_epsg() == 32633
    first = ds[0]
    assert first["image"].shape == (4, 16, 16)
    assert first["image"].dtype == torch.float32
    assert first["mask"].dtype == torch.int64
    assert not torch.isnan(first["image"]).any()
    assert (first["mask"][:2, :3] == IGNORE_INDEX).all()  # NaN pixels → ignored
    assert (first["image"][:, :2, :3] == 0).all()  # ... and their image value → 0
    last = ds[8]  # rows 32..48, cols 32..48 of a 40-wide scene; label nodata in rows 44..47
    assert (last["mask"][:, 8:] == IGNORE_INDEX).all()
    assert (last["mask"][12:] == IGNORE_INDEX).all()
    assert set(last["mask"][:12, :8].unique().tolist()) <= {0, 1, 2, 3}
    counts = ds.label_counts()
    assert counts[:4].sum() == 44 * 40  # every labelled pixel (the image is not read)
    assert counts[4:].sum() == 0


def test_random_dataset_is_deterministic_per_index(pair: Path) -> None:
    a = RasterPairDataset(pair / "scene.tif", pair / "label.tif", 16, length=7, seed=1)
    b = RasterPairDataset(pair / "scene.tif", pair / "label.tif", 16, length=7, seed=1)
    c = RasterPairDataset(pair / "scene.tif", pair / "label.tif", 16, length=7, seed=2)
    assert len(a) == 7
    assert [a.window(i)[0] for i in range(7)] == [b.window(i)[0] for i in range(7)]
    assert [a.window(i)[0] for i in range(7)] != [c.window(i)[0] for i in range(7)]
    assert torch.equal(a[3]["image"], b[3]["image"])


def test_label_codes_without_remap(pair: Path) -> None:
    ds = RasterPairDataset(pair / "scene.tif", pair / "label.tif", 16, "grid")
    assert set(ds.label_counts().nonzero()[0].tolist()) == {1, 2, 3, 8}


def test_windows_restrict_chips_to_their_region(pair: Path) -> None:
    region = Window(0, 16, 20, 16)  # cols 0..20, rows 16..32
    ds = RasterPairDataset(pair / "scene.tif", pair / "label.tif", 16, "grid", windows=[region])
    assert len(ds) == 2
    second = ds[1]  # cols 16..32, only 16..20 inside the region
    assert (second["mask"][:, 4:] == IGNORE_INDEX).all()
    assert (second["mask"][:, :4] != IGNORE_INDEX).all()


@pytest.mark.parametrize(
    ("label", "message"),
    [
        ("label_crs.tif", "CRS differ"),
        ("label_shape.tif", "shapes differ: image 48×40, label 48×36"),
        ("label_shift.tif", "transforms differ"),
    ],
)
def test_misaligned_pair_names_both_files(pair: Path, label: str, message: str) -> None:
    with pytest.raises(LandlearnError, match=message) as err:
        RasterPairDataset(pair / "scene.tif", pair / label)
    assert "scene.tif" in str(err.value)
    assert label in str(err.value)


def test_bad_arguments(pair: Path) -> None:
    with pytest.raises(LandlearnError, match="sampler"):
        RasterPairDataset(pair / "scene.tif", pair / "label.tif", sampler="bogus")
    with pytest.raises(LandlearnError, match="4-band"):
        RasterPairDataset(pair / "scene.tif", pair / "label.tif", bands=[5])
    with pytest.raises(LandlearnError, match="expected 1"):
        RasterPairDataset(pair / "scene.tif", pair / "scene.tif")
    with pytest.raises(LandlearnError, match="remap classes"):
        RasterPairDataset(pair / "scene.tif", pair / "label.tif", remap={1: 300})


def test_spatial_split_blocks_are_disjoint_and_seeded() -> None:
    train, val, test = spatial_split(48, 40, 16, 0.2, 0.2, seed=0)
    assert (len(train), len(val), len(test)) == (5, 2, 2)
    keys = [(w.row_off, w.col_off) for w in train + val + test]
    assert len(set(keys)) == 9
    assert all(w.col_off + w.width <= 40 for w in train + val + test)  # clipped to the scene
    assert spatial_split(48, 40, 16, 0.2, 0.2, seed=0) == (train, val, test)
    assert spatial_split(48, 40, 16, 0.2, 0.2, seed=5) != (train, val, test)
    with pytest.raises(LandlearnError, match="too few"):
        spatial_split(30, 30, 32, 0.2, 0.2)


@pytest.mark.real
def test_real_slovenia_pair(shared_data: Path) -> None:
    root = shared_data / "slovenia_s2_lulc"
    remap = {1: 0, 2: 1, 3: 2, 4: 3, 8: 4, 0: IGNORE_INDEX}
    ds = RasterPairDataset(root / "s2_l1c_20150909.tif", root / "lulc.tif", 32, "grid", remap=remap)
    assert len(ds.band_names) == 13
    assert ds.band_names[8] == "B8A"
    assert len(ds) == 4 * 4  # 101 × 100 px in 32 px chips
    sample = ds[5]
    assert sample["image"].shape == (13, 32, 32)
    assert 0 < float(sample["image"].mean()) < 1  # TOA reflectance 0..1
    np.testing.assert_array_equal(ds.label_counts()[:5], [11, 7601, 1777, 358, 198])
