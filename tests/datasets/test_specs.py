"""Every datamodule describes its inputs and heads (``input_specs`` / ``head_specs``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from landlearn.data.datamodules import (
    ImageFolderDataModule,
    MaskFolderDataModule,
    RasterPairDataModule,
    datamodule_specs,
)
from landlearn.errors import LandlearnError
from landlearn.schema import HeadSpec, InputSpec

REMAP = {1: 0, 2: 1, 3: 2, 8: 3}


def test_image_folder_specs_hold_the_train_statistics(images: Path) -> None:
    dm = ImageFolderDataModule(str(images / "rgb"), val_fraction=0.2, test_fraction=0.2, seed=1)
    dm.setup("fit")
    (spec,) = dm.input_specs
    assert isinstance(spec, InputSpec)
    assert spec.name == "image"
    assert spec.kind == "raster"
    assert spec.bands == ("red", "green", "blue")
    assert spec.chip_size == 16
    assert spec.mean == tuple(dm.mean or [])
    assert spec.std == tuple(dm.std or [])
    (head,) = dm.head_specs
    assert isinstance(head, HeadSpec)
    assert head.name == head.kind == "classification"
    assert head.classes == ("Forest", "River", "Urban")
    assert head.target_key == "label"
    assert dm.input_names == ["image"]
    assert dm.input_stats == {"image": (dm.mean, dm.std)}


def test_image_folder_label_fraction_keeps_the_rest_unlabelled(images: Path) -> None:
    full = ImageFolderDataModule(str(images / "rgb"), val_fraction=0.1, test_fraction=0.1)
    full.setup("fit")
    few = ImageFolderDataModule(str(images / "rgb"), label_fraction=0.25, batch_size=4)
    few.setup("fit")
    assert few.unlabelled_dataset is not None
    assert len(few.train_dataset) + len(few.unlabelled_dataset) == len(full.train_dataset)
    batch = next(iter(few.unlabelled_dataloader()))
    assert set(batch) == {"image"}
    assert batch["image"].shape[1:] == (3, 16, 16)
    with pytest.raises(LandlearnError, match="label_fraction below 1"):
        full.unlabelled_dataloader()


def test_mask_folder_specs(masks: Path) -> None:
    root = masks / "deepglobe"
    dm = MaskFolderDataModule(
        str(root / "images"), str(root / "masks"), classes_csv=str(root / "classes.csv"),
        chip_size=16, val_fraction=0.25, test_fraction=0.25,
    )  # fmt: skip
    dm.setup("fit")
    (spec,) = dm.input_specs
    assert spec.num_bands == len(dm.band_names) == 3
    assert spec.chip_size == 16
    (head,) = dm.head_specs
    assert head.kind == "segmentation"
    assert head.target_key == "mask"
    assert head.ignore_index == 255
    assert head.classes == ("urban_land", "agriculture_land", "water")
    assert head.colors == ((0, 255, 255), (255, 255, 0), (0, 0, 255))


def test_raster_pair_specs_carry_nodata_and_resolution(pair: Path) -> None:
    dm = RasterPairDataModule(str(pair / "scene.tif"), str(pair / "label.tif"), remap=REMAP,
                              chip_size=16, samples_per_epoch=8)  # fmt: skip
    (spec,) = dm.input_specs  # runs setup
    assert spec.bands == ("B02", "B03", "B04", "B08")
    assert spec.chip_size == 16
    assert spec.resolution == pytest.approx(abs(dm.transform.a))
    assert spec.mean == tuple(dm.mean or [])
    assert dm.head_specs[0].classes == ("class_0", "class_1", "class_2", "class_3")
    batch = next(iter(dm.train_dataloader()))
    out = dm.on_after_batch_transfer(dict(batch), 0)
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1)
    torch.testing.assert_close(out["image"], (batch["image"] - mean) / std)


def test_datamodule_specs_of_ours_and_torchgeo(images: Path) -> None:
    from torchgeo.datamodules import EuroSATDataModule

    ours = ImageFolderDataModule(str(images / "rgb"))
    assert datamodule_specs(ours) == (ours.input_specs, ours.head_specs)
    dm = EuroSATDataModule(root=str(images / "eurosat"), batch_size=2, bands=("B04", "B03", "B02"))
    dm.setup("fit")
    (spec,), (head,) = datamodule_specs(dm, "classification")
    assert spec.name == "image"
    assert spec.bands == ("B04", "B03", "B02")
    assert spec.chip_size == 16
    assert spec.mean == pytest.approx([947.62620298, 1042.92983953, 1118.24399958])
    assert head.kind == "classification"
    assert len(head.classes) >= 2
