"""Aligned multi-raster chips and datamodule: alignment, warping, label_fraction, stats, errors."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import Affine

from landlearn.conventions import IGNORE_INDEX
from landlearn.data.aligned import AlignedRasterDataset, parse_inputs, resampling_method
from landlearn.data.aligned_datamodule import AlignedRasterDataModule
from landlearn.errors import LandlearnError

SIZE = 48


def _write(path: Path, data: np.ndarray, transform: Affine, crs: str = "EPSG:32633",
           nodata: float | None = None, names: list[str] | None = None) -> str:  # fmt: skip
    data = data if data.ndim == 3 else data[None]
    profile = {"driver": "GTiff", "height": data.shape[1], "width": data.shape[2],
               "count": data.shape[0], "dtype": str(data.dtype), "crs": crs,
               "transform": transform}  # fmt: skip
    with rasterio.open(path, "w", nodata=nodata, **profile) as dst:
        dst.write(data)
        for i, name in enumerate(names or [], start=1):
            dst.set_band_description(i, name)
    return str(path)


def _grid(res: float = 10.0, x0: float = 500_000.0, y0: float = 5_000_000.0) -> Affine:
    return Affine(res, 0, x0, 0, -res, y0)


@pytest.fixture
def scene(tmp_path: Path) -> dict[str, str]:
    """Two inputs on one grid whose band 0 is the pixel number, a 20 m input, a label."""
    index = np.arange(SIZE * SIZE, dtype=np.float32).reshape(SIZE, SIZE)
    a = np.stack([index, index * 2, -index]).astype(np.float32)
    b = np.stack([index, index + 0.5]).astype(np.float32)
    coarse = np.arange((SIZE // 2) ** 2, dtype=np.float32).reshape(SIZE // 2, SIZE // 2)
    label = (index.astype(np.int64) % 3 - 1).astype(np.int16)  # -1 no data, 0, 1
    far = _grid(x0=900_000.0)
    return {
        "a": _write(tmp_path / "a.tif", a, _grid(), names=["red", "green", "blue"]),
        "b": _write(tmp_path / "b.tif", b, _grid(), nodata=float("nan"), names=["VV", "VH"]),
        "c": _write(tmp_path / "c.tif", coarse[None], _grid(20.0)),
        "label": _write(tmp_path / "label.tif", label, _grid()),
        "far": _write(tmp_path / "far.tif", b, far),
    }


def test_inputs_and_mask_are_chips_of_the_same_pixels(scene: dict[str, str]) -> None:
    inputs = parse_inputs({"a": scene["a"], "b": scene["b"]})
    ds = AlignedRasterDataset(inputs, scene["label"], chip_size=16, sampler="random", length=6,
                              remap={0: 0, 1: 1})  # fmt: skip
    for i in range(len(ds)):
        sample = ds[i]
        assert list(sample) == ["a", "b", "mask"]
        assert sample["a"].shape == (3, 16, 16)
        assert sample["b"].shape == (2, 16, 16)
        assert torch.equal(sample["a"][0], sample["b"][0])  # the same pixel numbers
        window, _ = ds.window(i)
        r, c = int(window.row_off), int(window.col_off)
        expected = torch.arange(SIZE * SIZE).reshape(SIZE, SIZE)[r : r + 16, c : c + 16]
        assert torch.equal(sample["a"][0].long(), expected)
        code = expected % 3 - 1  # the label's -1 (not in remap) becomes ignored
        want = torch.where(code < 0, IGNORE_INDEX, code)
        assert torch.equal(sample["mask"], want)
    assert ds.band_names == {"a": ["red", "green", "blue"], "b": ["VV", "VH"]}


def test_an_input_on_another_grid_is_warped_onto_the_first(scene: dict[str, str]) -> None:
    inputs = parse_inputs({"a": scene["a"], "c": {"path": scene["c"], "resampling": "nearest"}})
    ds = AlignedRasterDataset(inputs, None, chip_size=SIZE, sampler="grid")
    assert ds.warped == {"a": False, "c": True}
    assert "mask" not in ds[0]
    coarse = np.arange((SIZE // 2) ** 2, dtype=np.float32).reshape(SIZE // 2, SIZE // 2)
    np.testing.assert_array_equal(ds[0]["c"][0].numpy(), coarse.repeat(2, 0).repeat(2, 1))
    assert np.isnan(ds.nodata("c"))
    bilinear = AlignedRasterDataset(parse_inputs({"a": scene["a"], "c": scene["c"]}), None,
                                    chip_size=SIZE, sampler="grid")  # fmt: skip
    inner = bilinear[0]["c"][0, 2:-2, 2:-2].numpy()
    assert not np.array_equal(inner, coarse.repeat(2, 0).repeat(2, 1)[2:-2, 2:-2])
    assert np.abs(np.diff(inner, axis=1)).max() <= 1.0  # smooth, not blocky


def test_label_on_another_grid_and_partial_cover_become_ignored(
    scene: dict[str, str], tmp_path: Path
) -> None:
    half = SIZE // 2
    coarse = (np.arange(half * half).reshape(half, half) % 2).astype(np.uint8)
    label = _write(tmp_path / "coarse_label.tif", coarse, _grid(20.0))
    east = np.ones((2, SIZE, half), dtype=np.float32)  # covers the eastern half only
    shifted = _write(tmp_path / "east.tif", east, _grid(x0=500_000.0 + 10.0 * half))
    ds = AlignedRasterDataset(parse_inputs({"a": scene["a"], "e": shifted}), label,
                              chip_size=SIZE, sampler="grid")  # fmt: skip
    sample = ds[0]
    assert ds.warped == {"a": False, "e": True}
    assert ds.label_warped
    west = sample["mask"][:, :half]
    assert (west == IGNORE_INDEX).all()
    assert (sample["e"][:, :, :half] == 0).all()
    expected = torch.from_numpy(coarse.repeat(2, 0).repeat(2, 1)).long()[:, half:]
    assert torch.equal(sample["mask"][:, half:], expected)  # nearest: the 20 m classes
    assert (sample["e"][:, :, half:] == 1).all()


def test_training_batches_move_every_input_and_the_mask_together(scene: dict[str, str]) -> None:
    dm = AlignedRasterDataModule(inputs={"a": scene["a"], "b": scene["b"]}, label=scene["label"],
                                 remap={0: 0, 1: 1}, chip_size=16, samples_per_epoch=4,
                                 batch_size=4, augment={"hflip": 1.0})  # fmt: skip
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    dm.trainer = SimpleNamespace(training=True)  # type: ignore[assignment]
    out = dm.on_after_batch_transfer(dict(batch), 0)
    (a, b) = dm.input_specs
    assert a.mean is not None
    assert a.std is not None
    assert b.mean is not None
    assert b.std is not None
    raw_a = out["a"][:, 0] * a.std[0] + a.mean[0]
    raw_b = out["b"][:, 0] * b.std[0] + b.mean[0]
    torch.testing.assert_close(raw_a, batch["a"][:, 0].flip(-1), rtol=0, atol=1e-2)
    torch.testing.assert_close(raw_b, batch["b"][:, 0].flip(-1), rtol=0, atol=1e-2)
    assert torch.equal(out["mask"], batch["mask"].flip(-1))


def test_datamodule_specs_stats_and_unlabelled_remainder(scene: dict[str, str]) -> None:
    dm = AlignedRasterDataModule(
        inputs={"a": scene["a"], "b": scene["b"]}, label=scene["label"], remap={0: 0, 1: 1},
        class_names=["zero", "one"], chip_size=8, samples_per_epoch=10, val_fraction=0.2,
        test_fraction=0.2, label_fraction=0.5, batch_size=4,
    )  # fmt: skip
    dm.setup("fit")
    specs = dm.input_specs
    assert [s.name for s in specs] == ["a", "b"]
    assert dm.input_names == ["a", "b"]
    assert specs[0].bands == ("red", "green", "blue")
    assert specs[1].bands == ("VV", "VH")
    assert specs[0].chip_size == 8
    assert specs[0].resolution == 10.0
    head = dm.head_specs[0]
    assert head.kind == "segmentation"
    assert head.classes == ("zero", "one")
    # statistics of every train block (labelled or not), none from val / test blocks
    assert isinstance(dm.train_dataset, AlignedRasterDataset)
    assert isinstance(dm.unlabelled_dataset, AlignedRasterDataset)
    regions = dm.train_dataset.regions + dm.unlabelled_dataset.regions
    index = np.arange(SIZE * SIZE, dtype=np.float64).reshape(SIZE, SIZE)
    pixels = np.concatenate([index[r : r + h, c : c + w].ravel() for r, c, h, w in regions])
    assert specs[1].mean is not None
    assert specs[1].std is not None
    assert specs[1].mean[0] == pytest.approx(pixels.mean(), rel=1e-6)
    assert specs[1].std[0] == pytest.approx(pixels.std(), rel=1e-6)
    assert specs[1].mean[1] == pytest.approx(pixels.mean() + 0.5, rel=1e-6)
    # labelled and unlabelled train blocks are disjoint; val and test blocks are neither
    labelled = set(dm.train_dataset.regions)
    unlabelled = set(dm.unlabelled_dataset.regions)
    assert labelled
    assert unlabelled
    assert not labelled & unlabelled
    assert dm.val_dataset is not None
    assert dm.test_dataset is not None
    held = set(dm.val_dataset.regions) | set(dm.test_dataset.regions)  # type: ignore[attr-defined]
    assert not held & (labelled | unlabelled)
    batch = next(iter(dm.unlabelled_dataloader()))
    assert set(batch) == {"a", "b"}
    assert batch["a"].shape == (4, 3, 8, 8)
    normalised = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert set(normalised) == {"a", "b", "mask"}
    raw = dm.train_dataset[0]["b"]
    torch.testing.assert_close(
        dm.normalize(raw[None], "b")[0, 0], (raw[0] - specs[1].mean[0]) / specs[1].std[0]
    )


def test_label_fraction_one_keeps_every_label(scene: dict[str, str]) -> None:
    dm = AlignedRasterDataModule(inputs={"a": scene["a"]}, label=scene["label"],
                                 remap={0: 0, 1: 1}, chip_size=8, samples_per_epoch=4)  # fmt: skip
    dm.setup("fit")
    assert dm.unlabelled_dataset is None
    with pytest.raises(LandlearnError, match="label_fraction below 1"):
        dm.unlabelled_dataloader()
    stats = AlignedRasterDataModule(inputs={"a": {"path": scene["a"], "mean": [1, 2, 3],
                                                  "std": [1, 1, 1]}}, chip_size=8)  # fmt: skip
    stats.setup("fit")
    assert stats.input_specs[0].mean == (1.0, 2.0, 3.0)
    assert stats.head_specs == []


def test_bad_inputs_are_one_line_errors(scene: dict[str, str], tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere.tif")
    with pytest.raises(LandlearnError, match="nowhere") as info:
        AlignedRasterDataset(parse_inputs({"a": scene["a"], "b": missing}))
    assert "\n" not in str(info.value)
    with pytest.raises(LandlearnError, match="does not overlap") as info:
        AlignedRasterDataset(parse_inputs({"a": scene["a"], "far": scene["far"]}))
    assert info.value.path is not None
    assert "far.tif" in str(info.value.path)
    with pytest.raises(LandlearnError, match=r"expected 4 bands \(B1, B2, B3, B4\), got 3"):
        AlignedRasterDataset(
            parse_inputs({"a": {"path": scene["a"], "band_names": ["B1", "B2", "B3", "B4"]}})
        )
    with pytest.raises(LandlearnError, match=r"bands \[5\] not valid for a 3-band raster"):
        AlignedRasterDataset(parse_inputs({"a": {"path": scene["a"], "bands": [1, 5]}}))
    with pytest.raises(LandlearnError, match="label code -1 is not a class index"):
        AlignedRasterDataset(parse_inputs({"a": scene["a"]}), scene["label"], chip_size=8)[0]
    with pytest.raises(LandlearnError, match="unknown resampling 'bilinaer'; did you mean"):
        resampling_method("bilinaer")
    with pytest.raises(LandlearnError, match="unknown key 'pth'"):
        parse_inputs({"a": {"pth": scene["a"]}})
    with pytest.raises(LandlearnError, match="2 bands here but 3 in the training raster"):
        AlignedRasterDataModule(inputs={"a": scene["a"]}, test_inputs={"a": scene["b"]},
                                chip_size=8).setup("fit")  # fmt: skip
    with pytest.raises(LandlearnError, match=r"test_inputs names \['b'\] differ"):
        AlignedRasterDataModule(inputs={"a": scene["a"]}, test_inputs={"b": scene["b"]})
    with pytest.raises(LandlearnError, match="label_fraction must be in"):
        AlignedRasterDataModule(inputs={"a": scene["a"]}, label=scene["label"], label_fraction=0)


def test_constructor_parses_with_jsonargparse(scene: dict[str, str]) -> None:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(AlignedRasterDataModule, "data")
    cfg = parser.parse_object({"data": {
        "inputs": {"s2": scene["a"], "s1": {"path": scene["b"], "resampling": "nearest"}},
        "label": scene["label"], "remap": {0: 0, 1: 1}, "label_fraction": 0.5,
    }})  # fmt: skip
    dm = AlignedRasterDataModule(**cfg.data.as_dict())
    assert [i.name for i in dm.inputs] == ["s2", "s1"]
    assert dm.inputs[1].resampling == "nearest"


# ---- real data: Sen1Floods11, S1 + S2 + hand-labelled water, two chips ----------------------


def _sen1floods11(root: Path, chip: str) -> dict[str, str]:
    return {
        "s2": str(root / "S2" / f"{chip}_S2Hand.tif"),
        "s1": str(root / "S1" / f"{chip}_S1Hand.tif"),
    }


@pytest.mark.real
def test_real_sen1floods11_one_chip_trains_the_other_tests(shared_data: Path) -> None:
    root = shared_data / "sen1floods11"
    dm = AlignedRasterDataModule(
        inputs=_sen1floods11(root, "Spain_7370579"),
        label=str(root / "Labels" / "Spain_7370579_LabelHand.tif"),
        test_inputs=_sen1floods11(root, "India_900498"),
        test_label=str(root / "Labels" / "India_900498_LabelHand.tif"),
        remap={0: 0, 1: 1}, class_names=["not_water", "water"], chip_size=64,
        samples_per_epoch=32, val_fraction=0.2, test_fraction=0.0, batch_size=8,
    )  # fmt: skip
    dm.setup("fit")
    s2, s1 = dm.input_specs
    assert s2.name == "s2"
    assert s2.bands[0] == "B1"
    assert s2.bands[-1] == "B12"
    assert len(s2.bands) == 13
    assert s1.bands == ("VV", "VH")
    assert s2.nodata == 0.0
    assert s1.nodata is not None
    assert s2.mean is not None
    assert 500 < s2.mean[3] < 3000
    assert s1.mean is not None
    assert -25 < s1.mean[0] < -5
    assert -30 < s1.mean[1] < -10
    assert dm.test_dataset is not None
    assert len(dm.test_dataset) == 64
    # India's 152 no-data pixels (-1) are ignored, its water and land kept
    masks = torch.stack([dm.test_dataset[i]["mask"] for i in range(len(dm.test_dataset))])
    counts = {int(k): int(v) for k, v in zip(*torch.unique(masks, return_counts=True), strict=True)}
    assert counts == {0: 138_039, 1: 123_953, IGNORE_INDEX: 152}
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert batch["s2"].shape == (8, 13, 64, 64)
    assert batch["s1"].shape == (8, 2, 64, 64)
    assert torch.isfinite(batch["s2"]).all()
    assert torch.isfinite(batch["s1"]).all()
    assert abs(float(batch["s1"].mean())) < 1.5  # normalised with Spain's own statistics


@pytest.fixture
def target(tmp_path: Path) -> str:
    """Two targets on the inputs' grid: pixel number / 10 and its negative; -9 no-data."""
    index = np.arange(SIZE * SIZE, dtype=np.float32).reshape(SIZE, SIZE) / 10.0
    values = np.stack([index, -index]).astype(np.float32)
    values[:, :3, :4] = -9.0
    return _write(tmp_path / "target.tif", values, _grid(), nodata=-9.0, names=["lai", "neg"])


def test_a_target_raster_gives_pixel_targets_aligned_with_the_inputs(
    scene: dict[str, str], target: str
) -> None:
    inputs = parse_inputs({"a": scene["a"], "b": scene["b"]})
    t = parse_inputs({"t": target})[0]
    ds = AlignedRasterDataset(inputs, None, chip_size=16, sampler="random", length=8, target=t)
    for i in range(len(ds)):
        sample = ds[i]
        assert list(sample) == ["a", "b", "target"]
        assert sample["target"].shape == (2, 16, 16)
        assert sample["target"].dtype == torch.float32
        known = ~torch.isnan(sample["target"][0])
        # target = pixel number / 10 = input band 0 / 10, pixel for pixel
        torch.testing.assert_close(sample["target"][0][known], sample["a"][0][known] / 10.0)
        torch.testing.assert_close(sample["target"][1], -sample["target"][0], equal_nan=True)
        window, _ = ds.window(i)
        r, c = int(window.row_off), int(window.col_off)
        nodata = np.zeros((SIZE, SIZE), bool)
        nodata[:3, :4] = True
        assert torch.equal(~known, torch.from_numpy(nodata[r : r + 16, c : c + 16]))
    assert ds.target_names == ["lai", "neg"]


def test_target_datamodule_is_pixel_regression_with_train_stats(
    scene: dict[str, str], target: str
) -> None:
    dm = AlignedRasterDataModule({"a": scene["a"]}, target=target, target_units=["m²/m²", "-"],
                                 chip_size=16, samples_per_epoch=8, batch_size=4)  # fmt: skip
    dm.setup("fit")
    (head,) = dm.head_specs
    assert head.kind == "pixel_regression"
    assert dm.task == "regression"
    assert head.targets == ("lai", "neg")
    assert head.units == ("m²/m²", "-")
    # statistics of the train blocks' known pixels, computed here from the file
    train = dm._dataset(dm.inputs, None, "grid", dm._stats_windows or None, target=dm.target)
    with rasterio.open(target) as src:
        values = src.read().astype(np.float64)
    values[values == -9.0] = np.nan
    seen = np.zeros((SIZE, SIZE), bool)
    for w in train.grid_read_windows():
        seen[
            int(w.row_off) : int(w.row_off + w.height), int(w.col_off) : int(w.col_off + w.width)
        ] = True
    mean = np.nanmean(values[:, seen], axis=1)
    std = np.nanstd(values[:, seen], axis=1)
    np.testing.assert_allclose(head.mean, mean, rtol=1e-6)
    np.testing.assert_allclose(head.std, std, rtol=1e-6)
    batch = next(iter(dm.train_dataloader()))
    assert batch["target"].shape == (4, 2, 16, 16)


def test_bad_target_options_are_one_line_errors(scene: dict[str, str], target: str) -> None:
    with pytest.raises(LandlearnError, match="not both"):
        AlignedRasterDataModule({"a": scene["a"]}, label=scene["label"], target=target)
    with pytest.raises(LandlearnError, match="test_target exactly"):
        AlignedRasterDataModule({"a": scene["a"]}, target=target, test_inputs={"a": scene["a"]})
    dm = AlignedRasterDataModule({"a": scene["a"]}, target=target, target_units=["m"], chip_size=16)
    with pytest.raises(LandlearnError, match="1 units for 2 targets"):
        dm.setup("fit")
    flat = str(Path(target).with_name("flat.tif"))
    _write(Path(flat), np.ones((1, SIZE, SIZE), np.float32), _grid())
    with pytest.raises(LandlearnError, match="constant"):
        AlignedRasterDataModule({"a": scene["a"]}, target=flat, chip_size=16).setup("fit")


def test_point_labels_are_the_same_pixels_in_every_chip(scene: dict[str, str]) -> None:
    """label_fraction_pixels keeps one fixed set of points: overlapping chips agree on it."""
    from landlearn.data.aligned import point_mask

    whole = point_mask((0, 0), (SIZE, SIZE), 0.25, seed=3)
    assert 0.18 < whole.mean() < 0.32  # about a quarter of the pixels
    assert np.array_equal(point_mask((5, 7), (16, 16), 0.25, seed=3), whole[5:21, 7:23])
    assert not np.array_equal(point_mask((0, 0), (SIZE, SIZE), 0.25, seed=4), whole)
    dm = AlignedRasterDataModule({"a": scene["a"]}, scene["label"], remap={0: 0, 1: 1},
                                 chip_size=16, samples_per_epoch=8, val_fraction=0.25,
                                 test_fraction=0.25, block_size=16, label_fraction_pixels=0.25,
                                 seed=3)  # fmt: skip
    dm.setup("fit")
    dm.setup("test")
    dense = (torch.arange(SIZE * SIZE).reshape(SIZE, SIZE) % 3 - 1).numpy()
    for ds, sparse in ((dm.train_dataset, True), (dm.val_dataset, True), (dm.test_dataset, False)):
        assert isinstance(ds, AlignedRasterDataset)
        for i in range(len(ds)):
            window, _ = ds.window(i)
            r, c = int(window.row_off), int(window.col_off)
            mask = ds[i]["mask"].numpy()
            code = dense[r : r + 16, c : c + 16]
            keep = whole[r : r + 16, c : c + 16] if sparse else np.ones_like(code, dtype=bool)
            want = np.where((code >= 0) & keep, code, IGNORE_INDEX)
            assert np.array_equal(mask, want)
    with pytest.raises(LandlearnError, match="label_fraction_pixels must be in"):
        AlignedRasterDataModule({"a": scene["a"]}, scene["label"], label_fraction_pixels=0.0)
    with pytest.raises(LandlearnError, match="needs a label raster"):
        AlignedRasterDataModule({"a": scene["a"]}, label_fraction_pixels=0.5)


def test_unlabelled_scenes_join_pretraining_chips_or_the_unlabelled_loader(
    scene: dict[str, str], tmp_path: Path
) -> None:
    """unlabelled_inputs: more scenes of the same inputs, chips by area, in the stats too."""
    half = np.full((3, SIZE // 2, SIZE), 5000.0, dtype=np.float32)  # half the area, other values
    other = _write(tmp_path / "other.tif", half, _grid(x0=700_000.0))
    dm = AlignedRasterDataModule({"a": scene["a"]}, chip_size=8, samples_per_epoch=10,
                                 val_fraction=0.0, test_fraction=0.0,
                                 unlabelled_inputs=[{"a": other}])  # fmt: skip
    dm.setup("fit")
    assert dm.train_dataset is not None
    assert len(dm.train_dataset) == 10 + 5  # type: ignore[arg-type]
    assert float(dm.train_dataset[14]["a"][0, 0, 0]) == 5000.0  # the other scene's chips
    alone = AlignedRasterDataModule({"a": scene["a"]}, chip_size=8, samples_per_epoch=10,
                                    val_fraction=0.0, test_fraction=0.0)  # fmt: skip
    alone.setup("fit")
    assert dm.input_specs[0].mean[0] > alone.input_specs[0].mean[0] + 100  # its pixels count
    labelled = AlignedRasterDataModule({"a": scene["a"]}, scene["label"], remap={0: 0, 1: 1},
                                       chip_size=8, samples_per_epoch=10,
                                       unlabelled_inputs=[{"a": other}])  # fmt: skip
    labelled.setup("fit")
    assert len(labelled.train_dataset) == 10  # type: ignore[arg-type]
    assert len(labelled.unlabelled_dataset) == 5  # type: ignore[arg-type]
    assert "mask" not in labelled.unlabelled_dataset[0]
    assert labelled.has_unlabelled()  # what a semi-supervised task asks
    assert not alone.has_unlabelled()
    with pytest.raises(LandlearnError, match=r"unlabelled_inputs\[0\] names"):
        AlignedRasterDataModule({"a": scene["a"]}, unlabelled_inputs=[{"b": other}])
    two_bands = _write(tmp_path / "two.tif", half[:2], _grid())
    bad = AlignedRasterDataModule({"a": scene["a"]}, chip_size=8, test_fraction=0.0,
                                  unlabelled_inputs=[{"a": two_bands}])  # fmt: skip
    with pytest.raises(LandlearnError, match="has 2 bands here but 3"):
        bad.setup("fit")
