"""Losses: ignore pixels never count, empty batches give 0, values match hand computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from landlearn.conventions import IGNORE_INDEX
from landlearn.errors import LandlearnError
from landlearn.losses import WeightedSumLoss, build_loss, list_losses

MULTILABEL_OK = ["bce", "dice", "focal", "jaccard", "lovasz", "tversky"]


def _mode(name: str) -> str:
    return "binary" if name == "bce" else "multiclass"


def _batch(name: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and a mask with some IGNORE_INDEX pixels, shaped for the loss's mode."""
    g = torch.Generator().manual_seed(seed)
    k = 1 if _mode(name) == "binary" else 3
    logits = torch.randn(2, k, 8, 8, generator=g)
    mask = torch.randint(0, max(k, 2), (2, 8, 8), generator=g)
    mask[:, :3] = IGNORE_INDEX
    return logits, mask


@pytest.mark.parametrize("name", list_losses())
def test_ignored_pixels_do_not_change_the_loss(name: str) -> None:
    loss = build_loss(name, num_classes=3, mode=_mode(name))
    logits, mask = _batch(name)
    changed = logits.clone()
    ignored = (mask == IGNORE_INDEX).unsqueeze(1).expand_as(logits)
    changed[ignored] = torch.randn(int(ignored.sum()), generator=torch.Generator().manual_seed(1))
    changed[ignored] *= 50
    torch.testing.assert_close(loss(changed, mask), loss(logits, mask))
    assert torch.isfinite(loss(logits, mask))


@pytest.mark.parametrize("name", list_losses())
def test_all_ignored_batch_gives_zero_with_grad(name: str) -> None:
    loss = build_loss(name, num_classes=3, mode=_mode(name))
    logits, mask = _batch(name)
    logits.requires_grad_(True)
    value = loss(logits, torch.full_like(mask, IGNORE_INDEX))
    assert value.dim() == 0
    assert value.item() == 0.0
    value.backward()
    assert logits.grad is not None
    assert torch.isfinite(logits.grad).all()
    assert (logits.grad == 0).all()


@pytest.mark.parametrize("name", MULTILABEL_OK)
def test_multilabel_ignores_entries(name: str) -> None:
    loss = build_loss(name, num_classes=3, mode="multilabel")
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, generator=g)
    target = torch.randint(0, 2, (4, 3), generator=g).float()
    target[0, 1] = IGNORE_INDEX
    changed = logits.clone()
    changed[0, 1] = 40.0
    torch.testing.assert_close(loss(changed, target), loss(logits, target))


@pytest.mark.parametrize("name", ["ce", "partial_ce", "focal", "dice", "lovasz"])
def test_classification_shapes(name: str) -> None:
    loss = build_loss(name, num_classes=4)
    logits = torch.randn(5, 4, requires_grad=True)
    value = loss(logits, torch.tensor([0, 1, 2, 3, IGNORE_INDEX]))
    value.backward()
    assert value.dim() == 0
    assert torch.isfinite(value)


# Hand example, logits (1, 2, 1, 2): pixel a = [2, 0], pixel b = [0, 1].
LOGITS = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]]])
LA = math.log(1 + math.exp(-2))  # -log softmax([2, 0])[0]
LB = math.log(1 + math.exp(-1))  # -log softmax([0, 1])[1]


@pytest.mark.parametrize("name", ["ce", "partial_ce"])
def test_ce_hand_values(name: str) -> None:
    loss = build_loss(name, num_classes=2)
    assert loss(LOGITS, torch.tensor([[[0, 1]]])).item() == pytest.approx((LA + LB) / 2)
    assert loss(LOGITS, torch.tensor([[[0, IGNORE_INDEX]]])).item() == pytest.approx(LA)
    weighted = build_loss(name, num_classes=2, class_weights=torch.tensor([1.0, 3.0]))
    assert weighted(LOGITS, torch.tensor([[[0, 1]]])).item() == pytest.approx((LA + 3 * LB) / 4)


def test_partial_ce_focal_hand_value() -> None:
    loss = build_loss({"name": "partial_ce", "gamma": 2.0}, num_classes=2)
    p = 1 / (1 + math.exp(-2))
    expected = (1 - p) ** 2 * LA
    assert loss(LOGITS, torch.tensor([[[0, IGNORE_INDEX]]])).item() == pytest.approx(
        expected, rel=1e-5
    )


def test_ce_matches_torch_when_something_is_labelled() -> None:
    logits, mask = _batch("ce")
    w = torch.tensor([0.2, 1.0, 3.0])
    spec = {"ce": {"weight": 1.0, "label_smoothing": 0.1}}
    ours = build_loss(spec, num_classes=3, class_weights=w)
    ref = F.cross_entropy(logits, mask, weight=w, ignore_index=IGNORE_INDEX, label_smoothing=0.1)
    torch.testing.assert_close(ours(logits, mask), ref)


def test_partial_ce_gamma_zero_equals_ce() -> None:
    logits, mask = _batch("ce")
    w = torch.tensor([0.5, 1.0, 2.0])
    ce = build_loss("ce", num_classes=3, class_weights=w)
    pce = build_loss({"name": "partial_ce", "gamma": 0.0}, num_classes=3, class_weights=w)
    torch.testing.assert_close(pce(logits, mask), ce(logits, mask))


def test_focal_gamma_zero_is_mean_per_class_bce() -> None:
    """smp's focal is one-vs-rest sigmoid focal: gamma 0 gives mean per-class BCE."""
    logits, mask = _batch("focal")
    focal = build_loss({"name": "focal", "gamma": 0.0}, num_classes=3)
    valid = mask != IGNORE_INDEX
    per_class = [
        F.binary_cross_entropy_with_logits(logits[:, c][valid], (mask[valid] == c).float())
        for c in range(3)
    ]
    torch.testing.assert_close(focal(logits, mask), torch.stack(per_class).mean())


def test_weighted_sum_equals_sum_of_parts() -> None:
    logits, mask = _batch("ce")
    combo = build_loss({"ce": 0.5, "dice": {"weight": 2.0}, "lovasz": 0.25}, num_classes=3)
    assert isinstance(combo, WeightedSumLoss)
    parts = [(0.5, "ce"), (2.0, "dice"), (0.25, "lovasz")]
    expected = sum(w * build_loss(n, num_classes=3)(logits, mask) for w, n in parts)
    torch.testing.assert_close(combo(logits, mask), expected)
    assert set(combo.last_parts) == {"ce", "dice", "lovasz"}


@pytest.mark.parametrize("name", ["dice", "jaccard", "tversky", "lovasz"])
def test_overlap_losses_vanish_on_perfect_prediction(name: str) -> None:
    mask = torch.tensor([[[0, 1, 2, 2], [0, 1, IGNORE_INDEX, 2]]])  # (1, 2, 4)
    logits = 30.0 * F.one_hot(mask.clamp_max(2), 3).permute(0, 3, 1, 2).float()
    assert build_loss(name, num_classes=3)(logits, mask).item() == pytest.approx(0.0, abs=1e-4)


def test_unknown_loss_suggests_nearest() -> None:
    with pytest.raises(LandlearnError, match="did you mean 'dice'"):
        build_loss("dicee", num_classes=2)
    with pytest.raises(LandlearnError, match="did you mean 'focal'"):
        build_loss({"ce": 0.5, "focl": 0.5}, num_classes=2)


def test_bad_specs_are_landlearn_errors() -> None:
    with pytest.raises(LandlearnError, match="bad options for loss 'ce'"):
        build_loss({"name": "ce", "gama": 2}, num_classes=2)
    with pytest.raises(LandlearnError, match="expected a weight"):
        build_loss({"ce": "half"}, num_classes=2)
    with pytest.raises(LandlearnError, match="class_weights has shape"):
        build_loss("ce", num_classes=3, class_weights=torch.ones(2))
    with pytest.raises(LandlearnError, match="mode"):
        build_loss("ce", num_classes=3, mode="multilabel")


def test_tversky_half_half_is_dice_and_options_reach_smp() -> None:
    logits, mask = _batch("dice")
    dice = build_loss("dice", num_classes=3)(logits, mask)
    tversky = build_loss({"name": "tversky", "alpha": 0.5, "beta": 0.5}, num_classes=3)
    torch.testing.assert_close(tversky(logits, mask), dice)
    fn_heavy = build_loss({"name": "tversky", "alpha": 0.1, "beta": 0.9}, num_classes=3)
    assert not torch.allclose(fn_heavy(logits, mask), dice)
    with pytest.raises(LandlearnError, match="bad options for loss 'dice'"):
        build_loss({"name": "dice", "smoth": 1.0}, num_classes=3)
