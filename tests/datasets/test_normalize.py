"""Band statistics from datasets and rasters, and the Normalize module."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from landlearn.conventions import MIN_STD
from landlearn.data.normalize import (
    Normalize,
    compute_raster_stats,
    compute_stats,
    normalize,
    normalize_batch,
    normalize_input,
)
from landlearn.errors import LandlearnError
from landlearn.schema import InputSpec


class _ListDataset:
    def __init__(self, images: list[np.ndarray]) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": torch.from_numpy(self.images[i])}


def _images(n: int = 6, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = np.stack([rng.normal(100.0, 5.0, (8, 8)), rng.normal(-2.0, 0.5, (8, 8))])
        img[0, 0, :3] = np.nan
        out.append(img.astype(np.float32))
    return out


def test_compute_stats_matches_nan_aware_numpy() -> None:
    images = _images()
    mean, std = compute_stats(_ListDataset(images))
    stacked = np.stack(images).astype(np.float64)
    np.testing.assert_allclose(mean, np.nanmean(stacked, axis=(0, 2, 3)), rtol=1e-10)
    np.testing.assert_allclose(std, np.nanstd(stacked, axis=(0, 2, 3)), rtol=1e-8)


def test_compute_stats_subset_is_seeded_and_bounded() -> None:
    images = _images(20)
    images = [img + 10.0 * i for i, img in enumerate(images)]  # each sample shifts the mean
    a = compute_stats(_ListDataset(images), max_samples=5, seed=1)
    b = compute_stats(_ListDataset(images), max_samples=5, seed=1)
    c = compute_stats(_ListDataset(images), max_samples=5, seed=2)
    assert a == b
    assert a != c
    chosen = np.sort(np.random.default_rng(1).choice(20, size=5, replace=False))
    expect = np.nanmean(np.stack([images[i] for i in chosen]), axis=(0, 2, 3))
    np.testing.assert_allclose(a[0], expect, rtol=1e-6)


def test_compute_stats_floor_and_errors() -> None:
    const = [np.ones((2, 4, 4), dtype=np.float32)]
    mean, std = compute_stats(_ListDataset(const))
    assert mean == [1.0, 1.0]
    assert std == [1e-6, 1e-6]
    with pytest.raises(LandlearnError, match="empty"):
        compute_stats(_ListDataset([]))
    nan_band = [np.stack([np.ones((4, 4)), np.full((4, 4), np.nan)])]
    with pytest.raises(LandlearnError, match=r"band\(s\) \[1\]"):
        compute_stats(_ListDataset(nan_band))


def test_compute_raster_stats_skips_nodata(tmp_path: Path) -> None:
    rasterio = pytest.importorskip("rasterio")
    rng = np.random.default_rng(0)
    data = rng.integers(1, 200, size=(3, 64, 64)).astype(np.uint8)
    data[:, :10] = 0
    path = tmp_path / "r.tif"
    profile = {"driver": "GTiff", "height": 64, "width": 64, "count": 3, "dtype": "uint8"}
    profile |= {"crs": "EPSG:32633", "transform": rasterio.transform.Affine(10, 0, 0, 0, -10, 0)}
    with rasterio.open(path, "w", nodata=0, **profile) as dst:
        dst.write(data)
    mean, std = compute_raster_stats(path)
    valid = data[:, 10:].reshape(3, -1).astype(np.float64)
    np.testing.assert_allclose(mean, valid.mean(1))
    np.testing.assert_allclose(std, valid.std(1))
    small_mean, _ = compute_raster_stats(path, max_pixels=256)  # decimated 16 x 16 read
    np.testing.assert_allclose(small_mean, valid.mean(1), rtol=0.15)
    with pytest.raises(LandlearnError, match=r"missing\.tif"):
        compute_raster_stats(tmp_path / "missing.tif")


@pytest.mark.real
def test_compute_raster_stats_real(shared_data: Path) -> None:
    path = shared_data / "slovenia_s2_lulc" / "s2_l1c_20150909.tif"
    mean, std = compute_raster_stats(path)
    assert len(mean) == 13
    assert all(np.isfinite(mean))
    assert all(s > 0 for s in std)


def test_normalize_tensor_and_dict() -> None:
    norm = Normalize([1.0, 10.0], [2.0, 0.0], nan_value=0.0)
    x = torch.tensor([[[[3.0]], [[10.0]]], [[[float("nan")]], [[11.0]]]])  # (2, 2, 1, 1)
    out = norm(x)
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out.flatten(), torch.tensor([1.0, 0.0, 0.0, 1e6]))
    batch = {"image": x[0], "label": torch.tensor(3)}
    out_d = norm(batch)
    assert isinstance(out_d, dict)
    assert out_d["label"] is batch["label"]
    torch.testing.assert_close(out_d["image"].flatten(), torch.tensor([1.0, 0.0]))
    with pytest.raises(LandlearnError, match="expected 2 bands"):
        norm(torch.zeros(1, 3, 4, 4))
    assert "mean" in dict(norm.named_buffers())


def test_normalize_is_one_function_for_rasters_tables_and_arrays() -> None:
    x = torch.tensor([[[[3.0]], [[10.0]]]])  # (1, 2, 1, 1)
    out = normalize(x, [1.0, 10.0], [2.0, 0.0])  # a zero std is floored at MIN_STD
    torch.testing.assert_close(out.flatten(), torch.tensor([1.0, 0.0]))
    assert normalize(torch.tensor([[11.0]]), [10.0], [0.0], channel_dim=-1).item() == pytest.approx(
        1.0 / MIN_STD
    )
    table = np.array([[1.0, np.nan], [3.0, 4.0]])  # (rows, columns), float64 stays float64
    got = normalize(table, [2.0, 4.0], [1.0, 2.0], channel_dim=-1, nan_value=0.0)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, [[-1.0, 0.0], [1.0, 0.0]])
    assert normalize(torch.ones(2, 3, 4, 4, dtype=torch.uint8), [0.0] * 3, [1.0] * 3).dtype == (
        torch.float32
    )
    with pytest.raises(LandlearnError, match="expected 3 bands, got shape"):
        normalize(torch.zeros(1, 2, 4, 4), [0.0] * 3, [1.0] * 3)


def test_normalize_input_and_batch_use_each_inputs_spec() -> None:
    s2 = InputSpec("s2", bands=["a", "b"], mean=[10.0, 20.0], std=[2.0, 4.0])
    s1 = InputSpec("s1", bands=["vv"], mean=[-10.0], std=[5.0])
    meta = InputSpec("meta", "table", bands=["x", "y", "z"], mean=[1.0, 2.0, 3.0], std=[1.0] * 3)
    batch = {
        "s2": torch.full((2, 2, 3, 3), 14.0),
        "s1": torch.full((2, 1, 3, 3), -5.0),
        "meta": torch.tensor([[1.0, 3.0, 5.0]]),
        "mask": torch.zeros(2, 3, 3, dtype=torch.long),
    }
    out = normalize_batch(batch, [s2, s1, meta])
    torch.testing.assert_close(out["s2"][:, :, 0, 0], torch.tensor([[2.0, -1.5]] * 2))
    assert out["s1"].eq(1.0).all()
    assert out["mask"] is batch["mask"]
    torch.testing.assert_close(out["meta"], torch.tensor([[0.0, 1.0, 2.0]]))
    with pytest.raises(LandlearnError, match="no mean / std"):
        normalize_input(batch["s1"], InputSpec("s1", bands=["vv"]))
