"""Splits and datamodules: seeded splits, train-only statistics, normalised batches, TorchGeo."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import WeightedRandomSampler

from landlearn.conventions import IGNORE_INDEX
from landlearn.data import datamodules
from landlearn.data.datamodules import (
    ImageFolderDataModule,
    MaskFolderDataModule,
    RasterPairDataModule,
    describe_datamodule,
)
from landlearn.data.splits import label_subset, random_split_indices, stratified_split
from landlearn.errors import LandlearnError

REMAP = {1: 0, 2: 1, 3: 2, 8: 3}


def _normalised_images(dm: Any) -> torch.Tensor:
    loader = torch.utils.data.DataLoader(dm.train_dataset, batch_size=64)
    return torch.cat([dm.on_after_batch_transfer(b, 0)["image"] for b in loader])


def test_stratified_split_deterministic_and_covering() -> None:
    targets = [0] * 50 + [1] * 20 + [2] * 3 + [3]
    train, val, test = stratified_split(targets, 0.2, 0.1, seed=7)
    assert stratified_split(targets, 0.2, 0.1, seed=7) == (train, val, test)
    assert stratified_split(targets, 0.2, 0.1, seed=8) != (train, val, test)
    assert sorted(train + val + test) == list(range(len(targets)))
    assert {targets[i] for i in train} == {0, 1, 2, 3}  # every class, even the single item
    assert sum(targets[i] == 0 for i in val) == 10
    assert sum(targets[i] == 0 for i in test) == 5
    with pytest.raises(LandlearnError, match="below 1"):
        stratified_split(targets, 0.6, 0.5, 0)


def test_label_subset_keeps_fraction_per_class() -> None:
    targets = np.array([0] * 40 + [1] * 4)
    keep = label_subset(range(44), targets, 0.1, seed=0)
    assert sum(targets[keep] == 0) == 4
    assert sum(targets[keep] == 1) == 1
    assert keep == label_subset(range(44), targets, 0.1, seed=0)
    assert label_subset([3, 1], targets, 1.0) == [1, 3]
    with pytest.raises(LandlearnError, match="label fraction"):
        label_subset(range(44), targets, 0.0)


def test_random_split_indices_small() -> None:
    train, val, test = random_split_indices(4, 0.1, 0.1, seed=0)
    assert (len(train), len(val), len(test)) == (2, 1, 1)
    assert random_split_indices(1, 0.2, 0.2) == ([0], [], [])


def test_image_folder_datamodule_stats_on_train_only(
    images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Any] = []
    real = datamodules.compute_stats

    def spy(dataset: Any, **kwargs: Any) -> tuple[list[float], list[float]]:
        seen.append(dataset)
        return real(dataset, **kwargs)

    monkeypatch.setattr(datamodules, "compute_stats", spy)
    dm = ImageFolderDataModule(str(images / "rgb"), val_fraction=0.2, test_fraction=0.2, seed=1)
    dm.setup("fit")
    dm.setup("test")  # idempotent: no second split, no second statistics
    assert seen == [dm.train_dataset]
    train, val, test = (set(d.files) for d in (dm.train_dataset, dm.val_dataset, dm.test_dataset))
    assert not (train & val)
    assert not (train & test)
    assert not (val & test)
    assert len(train | val | test) == 20
    assert dm.class_names == ["Forest", "River", "Urban"]
    assert dm.band_names == ["red", "green", "blue"]
    assert dm.chip_size == 16
    assert dm.num_classes == 3
    assert dm.task == "classification"
    x = _normalised_images(dm)
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-3)
    assert torch.allclose(x.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-3)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape[1:] == (3, 16, 16)
    assert batch["label"].dtype == torch.int64
    weights = dm.class_weights
    assert weights.shape == (3,)
    assert weights[2] > weights[0]
    assert describe_datamodule(dm)["mean"] == dm.mean


def test_image_folder_datamodule_options(images: Path) -> None:
    full = ImageFolderDataModule(str(images / "rgb"), val_fraction=0.1, test_fraction=0.1)
    full.setup("fit")
    few = ImageFolderDataModule(str(images / "rgb"), label_fraction=0.25, balance=True)
    few.setup("fit")
    assert set(few.train_dataset.files) <= set(full.train_dataset.files)
    assert sorted(set(few.train_dataset.targets)) == [0, 1, 2]
    assert len(few.train_dataset) < len(full.train_dataset)
    assert isinstance(few.train_dataloader().sampler, WeightedRandomSampler)
    fixed = ImageFolderDataModule(
        str(images / "ms"), test_root=str(images / "ms"), mean=[1.0] * 5, std=[2.0] * 5
    )
    fixed.setup("test")
    assert fixed.mean == [1.0] * 5
    assert len(fixed.test_dataset) == 8
    with pytest.raises(LandlearnError, match="5 bands"):
        ImageFolderDataModule(str(images / "ms"), mean=[0.0], std=[1.0]).setup("fit")
    with pytest.raises(LandlearnError, match="no test split"):
        ImageFolderDataModule(str(images / "rgb"), test_fraction=0.0).test_dataloader()


def test_augment_only_in_training(images: Path) -> None:
    dm = ImageFolderDataModule(str(images / "rgb"), mean=[0.0] * 3, std=[1.0] * 3)
    dm.setup("fit")

    class AddTen(nn.Module):
        def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {**batch, "image": batch["image"] + 10}

    dm.train_aug = AddTen()
    batch = {"image": torch.zeros(2, 3, 4, 4), "label": torch.zeros(2, dtype=torch.int64)}
    dm.trainer = SimpleNamespace(training=True)  # type: ignore[assignment]
    assert dm.on_after_batch_transfer(dict(batch), 0)["image"].eq(10).all()
    dm.trainer = SimpleNamespace(training=False)  # type: ignore[assignment]
    assert dm.on_after_batch_transfer(dict(batch), 0)["image"].eq(0).all()


def test_mask_folder_datamodule(masks: Path) -> None:
    root = masks / "deepglobe"
    dm = MaskFolderDataModule(
        str(root / "images"), str(root / "masks"), classes_csv=str(root / "classes.csv"),
        chip_size=16, val_fraction=0.25, test_fraction=0.25, label_fraction_pixels=0.05,
    )  # fmt: skip
    dm.setup("fit")
    assert dm.class_names == ["urban_land", "agriculture_land", "water"]
    assert dm.class_colors == [[0, 255, 255], [255, 255, 0], [0, 0, 255]]
    assert dm.task == "segmentation"
    assert dm.chip_size == 16
    files = [set(d.files) for d in (dm.train_dataset, dm.val_dataset, dm.test_dataset)]
    assert [len(f) for f in files] == [2, 1, 1]
    batch = next(iter(dm.train_dataloader()))
    assert batch["mask"].shape[1:] == (16, 16)
    assert batch["mask"].dtype == torch.int64
    sparse = torch.stack([dm.train_dataset[i]["mask"] for i in range(len(dm.train_dataset))])
    dense = torch.stack([dm.val_dataset[i]["mask"] for i in range(len(dm.val_dataset))])
    assert (sparse != IGNORE_INDEX).float().mean() < 0.15  # about 5 % of labelled pixels kept
    assert (dense != IGNORE_INDEX).float().mean() > 0.5
    x = _normalised_images(dm)
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-3)
    assert dm.class_weights.shape == (3,)


def test_mask_folder_datamodule_codes_and_test_folders(masks: Path) -> None:
    root = masks / "index"
    dm = MaskFolderDataModule(
        str(root / "images"), str(root / "masks"), remap=REMAP, chip_size=16, val_fraction=0.3,
        test_images=str(root / "images"), test_masks=str(root / "masks"),
    )  # fmt: skip
    dm.setup("test")
    assert dm.class_names == ["class_0", "class_1", "class_2", "class_3"]
    assert dm.class_colors is None
    assert len(dm.test_dataset.files) == 3
    with pytest.raises(LandlearnError, match="class_names has 2 names"):
        MaskFolderDataModule(str(root), str(root), remap=REMAP, class_names=["a", "b"])


def test_raster_pair_datamodule_spatial_split(pair: Path) -> None:
    dm = RasterPairDataModule(
        str(pair / "scene.tif"), str(pair / "label.tif"), remap=REMAP, chip_size=16,
        samples_per_epoch=12, batch_size=4, seed=3,
    )  # fmt: skip
    dm.setup("fit")
    assert dm.class_names == ["class_0", "class_1", "class_2", "class_3"]
    assert dm.band_names == ["B02", "B03", "B04", "B08"]
    assert dm.crs.to_epsg() == 32633
    regions = [set(d.regions) for d in (dm.train_dataset, dm.val_dataset, dm.test_dataset)]
    assert not (regions[0] & regions[1])
    assert not (regions[0] & regions[2])
    assert not (regions[1] & regions[2])
    assert len(dm.train_dataset) == 12
    for i in range(len(dm.train_dataset)):  # random chips stay inside train blocks
        window, region = dm.train_dataset.window(i)
        row, col, height, width = region
        assert region in regions[0]
        assert row <= window.row_off
        assert window.row_off + 16 <= row + max(height, 16)
        assert col <= window.col_off
        assert window.col_off + 16 <= col + max(width, 16)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 4, 16, 16)
    out = dm.on_after_batch_transfer(batch, 0)
    assert torch.isfinite(out["image"]).all()
    assert abs(float(_normalised_images(dm).mean())) < 0.05
    assert dm.class_weights.shape == (4,)
    assert set(describe_datamodule(dm)) == {
        "band_names", "class_names", "class_colors", "mean", "std", "chip_size",
    }  # fmt: skip


def test_raster_pair_datamodule_separate_files(pair: Path) -> None:
    scene, label = str(pair / "scene.tif"), str(pair / "label.tif")
    dm = RasterPairDataModule(
        scene, label, remap=REMAP, chip_size=16, samples_per_epoch=4,
        val_image=scene, val_label=label, test_image=scene, test_label=label,
    )  # fmt: skip
    dm.setup("fit")
    assert len(dm.val_dataset) == 9
    assert len(dm.test_dataset) == 9
    assert dm.train_dataset.regions == [(0, 0, 48, 40)]
    with pytest.raises(LandlearnError, match="give both val_image and val_label"):
        RasterPairDataModule(scene, label, val_image=scene)


def test_constructors_parse_with_jsonargparse() -> None:
    from jsonargparse import ArgumentParser

    for cls in (ImageFolderDataModule, MaskFolderDataModule, RasterPairDataModule):
        parser = ArgumentParser()
        parser.add_class_arguments(cls, "data")
    cfg = parser.parse_args(
        ["--data.image=a.tif", "--data.label=b.tif", "--data.remap={1: 0, 0: 255}"]
    )
    assert cfg.data.remap == {1: 0, 0: 255}


def test_describe_torchgeo_eurosat(images: Path) -> None:
    from torchgeo.datamodules import EuroSATDataModule

    dm = EuroSATDataModule(root=str(images / "eurosat"), batch_size=2, bands=("B04", "B03", "B02"))
    dm.setup("fit")
    info = describe_datamodule(dm)
    assert info["band_names"] == ["B04", "B03", "B02"]
    assert info["class_names"] == ["AnnualCrop", "Forest"]
    assert info["mean"] == pytest.approx([947.62620298, 1042.92983953, 1118.24399958])
    assert len(info["std"]) == 3
    assert info["chip_size"] == 16
    assert info["class_colors"] is None
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) >= {"image", "label"}
    assert batch["image"].shape == (2, 3, 16, 16)


def test_describe_torchgeo_deepglobe_before_setup() -> None:
    from torchgeo.datamodules import DeepGlobeLandCoverDataModule

    info = describe_datamodule(DeepGlobeLandCoverDataModule(root="nowhere", patch_size=32))
    assert info["class_names"][0] == "Urban land"
    assert len(info["class_names"]) == 7
    assert info["class_colors"][1] == [255, 255, 0]
    assert info["chip_size"] == 32
    assert info["std"] == [255.0] * len(info["band_names"])


@pytest.mark.real
def test_real_slovenia_datamodule(shared_data: Path) -> None:
    root = shared_data / "slovenia_s2_lulc"
    dm = RasterPairDataModule(
        str(root / "s2_l1c_20150909.tif"), str(root / "lulc.tif"),
        class_names=["cultivated", "forest", "grassland", "shrubland", "artificial"],
        remap={1: 0, 2: 1, 3: 2, 4: 3, 8: 4, 0: IGNORE_INDEX}, chip_size=32,
        samples_per_epoch=16, batch_size=8,
    )  # fmt: skip
    dm.setup("fit")
    assert len(dm.band_names) == 13
    assert len(dm.mean) == 13
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert batch["image"].shape == (8, 13, 32, 32)
    assert set(batch["mask"].unique().tolist()) <= {0, 1, 2, 3, 4, IGNORE_INDEX}


def test_raster_pair_takes_class_colours_from_the_label_colour_table(tmp_path: Path) -> None:
    from landlearn.data import synthetic
    from landlearn.data.datamodules import RasterPairDataModule

    img, lab = synthetic.write_scene(tmp_path / "i.tif", tmp_path / "l.tif", 96, 96, seed=3)
    dm = RasterPairDataModule(str(img), str(lab), class_names=synthetic.CLASSES, chip_size=32)
    dm.setup("fit")
    assert dm.class_colors == synthetic.COLORS
    remapped = RasterPairDataModule(
        str(img), str(lab), remap={1: 0, 0: 1}, class_names=["forest", "water"], chip_size=32
    )
    remapped.setup("fit")
    assert remapped.class_colors == [synthetic.COLORS[1], synthetic.COLORS[0]]


def test_mask_folder_label_fraction_and_pseudo_masks(masks: Path, tmp_path: Path) -> None:
    from PIL import Image

    root = masks / "deepglobe"
    kw: dict[str, Any] = {"classes_csv": str(root / "classes.csv"), "chip_size": 16,
                          "val_fraction": 0.25, "test_fraction": 0.25}  # fmt: skip
    dm = MaskFolderDataModule(str(root / "images"), str(root / "masks"), label_fraction=0.5, **kw)
    dm.setup("fit")
    assert len(dm.labelled_files) == 1
    assert len(dm.unlabelled_files) == 1
    assert set(dm.train_dataset.files) == set(dm.labelled_files)
    batch = next(iter(dm.unlabelled_dataloader()))
    assert "mask" not in batch
    assert batch["image"].shape[1:] == (3, 16, 16)
    # pseudo-labels for the unlabelled image: class 1 on the left half, ignored on the right
    unlabelled = Path(dm.unlabelled_files[0])
    with Image.open(unlabelled) as im:
        w, h = im.size
    code = np.full((h, w), IGNORE_INDEX, np.uint8)
    code[:, : w // 2] = 1
    pseudo = tmp_path / "pseudo"
    pseudo.mkdir()
    Image.fromarray(code).save(pseudo / f"{unlabelled.stem}.png")
    student = MaskFolderDataModule(str(root / "images"), str(root / "masks"), label_fraction=0.5,
                                   pseudo_masks=str(pseudo), **kw)  # fmt: skip
    student.setup("fit")
    n_labelled = len(dm.train_dataset)
    assert len(student.train_dataset) > n_labelled  # labelled chips, then pseudo-labelled ones
    pseudo_masks = [
        student.train_dataset[i]["mask"] for i in range(n_labelled, len(student.train_dataset))
    ]
    values = torch.unique(torch.stack(pseudo_masks))
    assert set(values.tolist()) <= {1, IGNORE_INDEX}
    assert [set(d.files) for d in (student.val_dataset, student.test_dataset)] == [
        set(d.files) for d in (dm.val_dataset, dm.test_dataset)
    ]
    with pytest.raises(LandlearnError, match="label_fraction below 1"):
        MaskFolderDataModule(str(root / "images"), str(root / "masks"), pseudo_masks=str(pseudo))


def test_raster_pair_point_labels_are_fixed_and_the_test_split_stays_dense(pair: Path) -> None:
    from landlearn.data.rasters import point_mask

    kwargs = {"remap": REMAP, "chip_size": 16, "samples_per_epoch": 12, "batch_size": 4,
              "seed": 3}  # fmt: skip
    dense = RasterPairDataModule(str(pair / "scene.tif"), str(pair / "label.tif"), **kwargs)
    sparse = RasterPairDataModule(str(pair / "scene.tif"), str(pair / "label.tif"),
                                  label_fraction_pixels=0.2, **kwargs)  # fmt: skip
    for dm in (dense, sparse):
        dm.setup("fit")
        dm.setup("test")
    for name in ("train_dataset", "val_dataset", "test_dataset"):
        full, few = getattr(dense, name), getattr(sparse, name)
        for i in range(min(4, len(full))):
            window, _ = full.window(i)
            keep = point_mask((int(window.row_off), int(window.col_off)), (16, 16), 0.2, 3)
            want = full[i]["mask"].numpy().copy()
            if name != "test_dataset":
                want[~keep] = IGNORE_INDEX
            assert np.array_equal(few[i]["mask"].numpy(), want), name
    with pytest.raises(LandlearnError, match="label_fraction_pixels must be in"):
        RasterPairDataModule(str(pair / "scene.tif"), str(pair / "label.tif"),
                             label_fraction_pixels=1.5)  # fmt: skip


def test_raster_pair_label_fraction_sends_the_other_blocks_to_the_unlabelled_loader(
    pair: Path,
) -> None:
    dm = RasterPairDataModule(str(pair / "scene.tif"), str(pair / "label.tif"), remap=REMAP,
                              chip_size=16, samples_per_epoch=12, batch_size=4, seed=3,
                              label_fraction=0.5)  # fmt: skip
    dm.setup("fit")
    labelled = set(dm.train_dataset.regions)
    unlabelled = set(dm.unlabelled_dataset.regions)
    assert labelled
    assert unlabelled
    assert not labelled & unlabelled
    assert not unlabelled & set(dm.val_dataset.regions)
    batch = next(iter(dm.unlabelled_dataloader()))
    assert set(batch) == {"image"}
    assert batch["image"].shape == (4, 4, 16, 16)
    whole = RasterPairDataModule(str(pair / "scene.tif"), str(pair / "label.tif"), remap=REMAP,
                                 chip_size=16, seed=3)  # fmt: skip
    whole.setup("fit")
    assert labelled | unlabelled == set(whole.train_dataset.regions)
    with pytest.raises(LandlearnError, match="label_fraction must be in"):
        RasterPairDataModule(str(pair / "scene.tif"), str(pair / "label.tif"), label_fraction=0)
