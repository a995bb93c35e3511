"""Augmentation of several inputs: one geometry for every spatial key, intensity per input.

Every pixel carries its own number (row * W + col) in band 0 of both inputs, in the mask and in a
pixel target, so after any geometric op they must still hold the same number at every pixel.
"""

from __future__ import annotations

import math

import pytest
import torch

from landlearn.conventions import IGNORE_INDEX
from landlearn.data.augment import build_augment, is_geometric, list_augmentations
from landlearn.errors import LandlearnError

H = W = 12  # 144 pixel numbers: all below IGNORE_INDEX, so the mask can carry them


def _batch(h: int = H, w: int = W, b: int = 6) -> dict[str, torch.Tensor]:
    number = torch.arange(h * w, dtype=torch.float32).reshape(1, 1, h, w).repeat(b, 1, 1, 1)
    row = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1).expand(b, 1, h, w)
    col = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w).expand(b, 1, h, w)
    target = number.clone()
    target[:, :, 0, 0] = math.nan  # an unknown target stays unknown
    return {
        "s2": torch.cat([number, row, col], dim=1),  # (B, 3, H, W)
        "s1": torch.cat([number, number + 1000.0], dim=1),  # (B, 2, H, W)
        "mask": number[:, 0].long(),  # (B, H, W)
        "target": target,  # (B, 1, H, W) pixel regression
        "label": torch.arange(b),
    }


def _assert_aligned(out: dict[str, torch.Tensor]) -> None:
    s2, s1, mask, target = out["s2"], out["s1"], out["mask"], out["target"][:, 0]
    kept = mask != IGNORE_INDEX  # pixels a transform padded in are ignored (inputs hold 0 there)
    assert torch.equal(s2[:, 0], s1[:, 0])
    assert torch.equal(s1[:, 1][kept], s1[:, 0][kept] + 1000.0)
    assert torch.equal(s2[:, 0][kept], mask[kept].float())
    known = ~torch.isnan(target)
    assert torch.equal(target[known], mask[known].float())
    assert torch.equal(known, kept & (mask != 0))  # pixel 0's target was unknown


@pytest.mark.parametrize("op", ["hflip", "vflip", "rot90"])
def test_each_geometric_op_keeps_inputs_mask_and_target_aligned(op: str) -> None:
    batch = _batch()
    torch.manual_seed(0)
    out = build_augment({op: 1.0}, "segmentation", inputs=("s2", "s1"))(batch)
    assert not torch.equal(out["mask"], batch["mask"])  # it moved
    _assert_aligned(out)
    assert out["label"] is batch["label"]
    for i in range(len(out["mask"])):  # a whole-chip flip / turn, the same for every key
        moves = [batch["mask"][i].flip(-1), batch["mask"][i].flip(-2)] + [
            torch.rot90(batch["mask"][i], k, (0, 1)) for k in (1, 2, 3)
        ]
        assert any(torch.equal(out["mask"][i], m) for m in moves)


def test_flips_and_turns_together_on_a_non_square_chip_pad_as_ignore_and_nan() -> None:
    batch = _batch(h=8, w=16)
    ops = {"hflip": 0.5, "vflip": 0.5, "rot90": 1.0}
    aug = build_augment(ops, "segmentation", inputs=("s2", "s1"))
    padded_any = False
    for seed in range(4):
        torch.manual_seed(seed)
        out = aug(batch)
        _assert_aligned(out)
        padded = out["mask"] == IGNORE_INDEX
        assert torch.isnan(out["target"][:, 0][padded]).all()
        assert (out["s1"][:, 0][padded] == out["s2"][:, 0][padded]).all()
        padded_any |= bool(padded.any())
    assert padded_any  # a quarter turn of 8 x 16 pads


def test_crop_moves_every_key_together() -> None:
    batch = _batch(h=16, w=16)
    torch.manual_seed(0)
    aug = build_augment({"crop": {"p": 1.0, "scale": [0.3, 0.5]}}, "segmentation", ("s2", "s1"))
    out = aug(batch)
    assert not torch.equal(out["mask"], batch["mask"])
    # one bilinear warp for both inputs: identical numbers; the mask and the target are nearest
    assert torch.equal(out["s2"][:, 0], out["s1"][:, 0])
    mask, target = out["mask"], out["target"][:, 0]
    known = ~torch.isnan(target)
    assert torch.equal(target[known], mask[known].float())
    # the bilinear row / col of each pixel are within one pixel of the nearest mask pixel's
    kept = mask != IGNORE_INDEX
    row, col = torch.div(mask, 16, rounding_mode="floor"), mask % 16
    assert (out["s2"][:, 1][kept] - row[kept]).abs().max() <= 1.0
    assert (out["s2"][:, 2][kept] - col[kept]).abs().max() <= 1.0


def test_intensity_draws_are_per_input_and_per_input_overrides() -> None:
    g = torch.Generator().manual_seed(0)
    batch = {
        "s2": torch.rand(8, 3, 8, 8, generator=g) + 1,
        "s1": torch.rand(8, 2, 8, 8, generator=g) + 1,
    }
    torch.manual_seed(0)
    out = build_augment({"brightness": {"p": 1.0, "limit": 0.5}}, "segmentation", ("s2", "s1"))(
        batch
    )
    gain_s2 = (out["s2"] / batch["s2"]).flatten(1)
    gain_s1 = (out["s1"] / batch["s1"]).flatten(1)
    torch.testing.assert_close(gain_s2.std(1), torch.zeros(8), atol=1e-5, rtol=0)  # one gain each
    assert (gain_s2[:, 0] - gain_s1[:, 0]).abs().max() > 1e-3  # drawn per input
    only_s2 = build_augment(
        {"brightness": {"p": 1.0, "limit": 0.5}, "per_input": {"s1": {}}},
        "segmentation",
        ("s2", "s1"),
    )(batch)
    assert torch.equal(only_s2["s1"], batch["s1"])
    assert not torch.equal(only_s2["s2"], batch["s2"])


def test_per_input_refuses_geometry_and_unknown_inputs() -> None:
    assert [n for n in list_augmentations() if is_geometric(n)] == [
        "hflip",
        "vflip",
        "rot90",
        "crop",
    ]
    with pytest.raises(LandlearnError, match="hflip, a geometric op"):
        build_augment({"per_input": {"s1": {"hflip": 1.0}}}, "segmentation", ("s2", "s1"))
    with pytest.raises(LandlearnError, match="per_input names input 's3'; inputs: s2, s1"):
        build_augment({"per_input": {"s3": {"blur": 1.0}}}, "segmentation", ("s2", "s1"))
    aug = build_augment({"hflip": 1.0}, "segmentation", ("s2", "s1"))
    with pytest.raises(LandlearnError, match="not on one grid"):
        aug({"s2": torch.zeros(2, 3, 8, 8), "s1": torch.zeros(2, 2, 4, 4)})
