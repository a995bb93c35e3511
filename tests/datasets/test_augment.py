"""Batch augmentation: identity, geometry shared by image and mask, ignore pixels, any bands."""

from __future__ import annotations

import pytest
import torch

from landlearn.conventions import IGNORE_INDEX
from landlearn.data.augment import build_augment, list_augmentations
from landlearn.errors import LandlearnError

ALL_ON = {
    "hflip": 1.0,
    "vflip": 1.0,
    "rot90": 1.0,
    "crop": {"p": 1.0, "scale": [0.5, 1.0]},
    "brightness": {"p": 1.0, "limit": 0.1},
    "contrast": {"p": 1.0, "limit": 0.1},
    "blur": {"p": 1.0, "sigma": [0.1, 1.0]},
}


def _batch(bands: int = 3, size: tuple[int, int] = (16, 16), seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(4, bands, *size, generator=g)
    mask = torch.randint(0, 4, (4, *size), generator=g)
    mask[:, :2] = IGNORE_INDEX
    return {"image": image, "mask": mask, "label": torch.tensor([0, 1, 2, 3])}


@pytest.mark.parametrize("cfg", [None, {}, {"hflip": 0.0}])
def test_identity(cfg: dict | None) -> None:
    batch = _batch()
    out = build_augment(cfg, "segmentation")(batch)
    assert out["image"] is batch["image"]
    assert out["mask"] is batch["mask"]


def test_hflip_moves_image_and_mask_together() -> None:
    batch = _batch(bands=5)
    out = build_augment({"hflip": 1.0}, "segmentation")(batch)
    torch.testing.assert_close(out["image"], batch["image"].flip(-1))
    assert torch.equal(out["mask"], batch["mask"].flip(-1))
    assert out["mask"].dtype == torch.int64
    assert out["label"] is batch["label"]


def test_rot90_keeps_values_and_pairs() -> None:
    batch = _batch(size=(8, 8))
    batch["mask"] = torch.arange(64).reshape(1, 8, 8).repeat(4, 1, 1)
    batch["image"] = batch["mask"][:, None].float().repeat(1, 2, 1, 1)
    out = build_augment({"rot90": 1.0}, "segmentation")(batch)
    for i in range(4):
        turned = [torch.rot90(batch["mask"][i], k, (0, 1)) for k in (1, 2, 3)]
        assert any(torch.equal(out["mask"][i], t) for t in turned)
    torch.testing.assert_close(out["image"][:, 0], out["mask"].float())


def test_ignore_preserved_and_padding_becomes_ignore() -> None:
    batch = _batch(size=(12, 20))  # not square: a 90° turn pads
    batch["mask"][:] = 1
    batch["mask"][:, :, :3] = IGNORE_INDEX
    torch.manual_seed(0)
    out = build_augment({"rot90": 1.0}, "segmentation")(batch)
    values = set(out["mask"].unique().tolist())
    assert values == {1, IGNORE_INDEX}
    assert 0 not in values
    assert (out["mask"] == IGNORE_INDEX).sum() > (batch["mask"] == IGNORE_INDEX).sum()


def test_all_ops_on_13_bands_deterministic() -> None:
    batch = _batch(bands=13, size=(16, 24))
    aug = build_augment(ALL_ON, "segmentation")
    torch.manual_seed(0)
    first = aug(batch)
    torch.manual_seed(0)
    second = aug(batch)
    assert first["image"].shape == (4, 13, 16, 24)
    assert first["mask"].shape == (4, 16, 24)
    assert torch.equal(first["image"], second["image"])
    assert torch.equal(first["mask"], second["mask"])
    assert set(first["mask"].unique().tolist()) <= {0, 1, 2, 3, IGNORE_INDEX}
    assert not torch.equal(first["image"], batch["image"])
    assert torch.equal(first["label"], batch["label"])


def test_brightness_is_one_gain_per_sample_on_raw_units() -> None:
    """On 0-255 data a brightness of limit 0.2 changes values by up to 20 %, not by 0.2."""
    torch.manual_seed(1)
    image = torch.rand(4, 13, 8, 8) * 200 + 20
    out = build_augment({"brightness": {"p": 1.0, "limit": 0.2}}, "segmentation")({"image": image})
    gain = out["image"] / image  # one gain per sample, the same on every band and pixel
    assert ((gain - gain[:, :1, :1, :1]).abs() < 1e-5).all()
    assert ((gain - 1).abs() <= 0.2 + 1e-6).all()
    assert (gain - 1).abs().max() > 0.02


def test_contrast_scales_deviations_from_each_band_mean() -> None:
    torch.manual_seed(2)
    image = torch.rand(4, 5, 8, 8) * 3000 + torch.arange(5).view(1, 5, 1, 1) * 1000.0
    out = build_augment({"contrast": {"p": 1.0, "limit": 0.3}}, "segmentation")({"image": image})
    mean = image.mean(dim=(-2, -1), keepdim=True)
    torch.testing.assert_close(out["image"].mean(dim=(-2, -1), keepdim=True), mean)
    factor = (out["image"] - mean) / (image - mean)  # one factor per sample on every band
    assert ((factor - factor[:, :1, :1, :1]).abs() < 1e-3).all()
    assert ((factor - 1).abs() <= 0.3 + 1e-4).all()
    assert (factor - 1).abs().max() > 0.03


def test_classification_leaves_label() -> None:
    batch = {"image": torch.rand(2, 3, 8, 8), "label": torch.tensor([3, 1])}
    out = build_augment({"vflip": 1.0}, "classification")(batch)
    torch.testing.assert_close(out["image"], batch["image"].flip(-2))
    assert out["label"] is batch["label"]
    assert "mask" not in out


def test_config_errors() -> None:
    with pytest.raises(LandlearnError, match="did you mean 'hflip'"):
        build_augment({"hflp": 0.5}, "segmentation")
    with pytest.raises(LandlearnError, match="did you mean 'limit'"):
        build_augment({"brightness": {"p": 0.5, "limt": 0.1}}, "segmentation")
    with pytest.raises(LandlearnError, match="probability"):
        build_augment({"vflip": 1.5}, "segmentation")
    with pytest.raises(LandlearnError, match="task"):
        build_augment({}, "segmentaton")
    with pytest.raises(LandlearnError, match=r"\(B, C, H, W\)"):
        build_augment({"hflip": 1.0}, "segmentation")({"image": torch.rand(3, 8, 8)})
    assert list_augmentations() == list(ALL_ON)


def test_no_state_dict_entries_after_use() -> None:
    aug = build_augment(ALL_ON, "segmentation")
    aug(_batch())
    assert aug.state_dict() == {}


def _quadrants(size: int = 32) -> dict:
    """Masks of four class blocks, and an image whose band 0 is the mask (float) itself."""
    half = size // 2
    mask = torch.zeros(4, size, size, dtype=torch.long)
    mask[:, :half, half:], mask[:, half:, :half], mask[:, half:, half:] = 1, 2, 3
    image = mask[:, None].float().repeat(1, 2, 1, 1)
    return {"image": image, "mask": mask}


def test_crop_moves_image_and_mask_together() -> None:
    batch = _quadrants()
    torch.manual_seed(0)
    out = build_augment({"crop": {"p": 1.0, "scale": [0.2, 0.4]}}, "segmentation")(batch)
    assert out["image"].shape == batch["image"].shape
    assert out["mask"].shape == batch["mask"].shape
    assert not torch.equal(out["mask"], batch["mask"])  # it cropped
    assert set(out["mask"].unique().tolist()) <= {0, 1, 2, 3}  # nearest: no new classes
    # where the bilinear image sits on a whole class value, the mask carries the same class
    img = out["image"][:, 0]
    whole = (img - img.round()).abs() < 1e-4
    assert whole.float().mean() > 0.8
    assert torch.equal(out["mask"][whole], img.round().long()[whole])


def test_blur_changes_the_image_not_the_mask() -> None:
    batch = _quadrants()
    out = build_augment({"blur": {"p": 1.0, "sigma": [1.0, 1.5]}}, "segmentation")(batch)
    assert torch.equal(out["mask"], batch["mask"])
    assert not torch.allclose(out["image"], batch["image"])
    # the edge between class 0 (left) and class 1 (right) is smoothed on both sides
    edge = out["image"][:, 0, 8, 15:17]
    assert ((edge > 0) & (edge < 1)).all()
    assert torch.equal(out["image"][:, 0, 2:6, 2:6], batch["image"][:, 0, 2:6, 2:6])  # flat area
