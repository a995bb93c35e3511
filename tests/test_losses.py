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
    """Smp's focal is one-vs-rest sigmoid focal: gamma 0 gives mean per-class BCE."""
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


# Hand values for the smp-backed and BCE losses on one tiny case, computed from each loss's
# definition in plain Python: 2 classes, 3 pixels in a row, the third ignored.
_Z = [[2.0, 0.0, 1.0], [0.0, 1.0, 1.0]]  # logits (class, pixel)
_T = [0, 1, IGNORE_INDEX]


def _tiny() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(_Z).view(1, 2, 1, 3), torch.tensor(_T).view(1, 1, 3)


def _softmax_valid() -> list[list[float]]:
    """p[c][i] for the two labelled pixels."""
    out: list[list[float]] = [[], []]
    for i in range(2):
        e = [math.exp(_Z[c][i]) for c in range(2)]
        for c in range(2):
            out[c].append(e[c] / sum(e))
    return out


def _tversky_hand(alpha: float, beta: float, jaccard: bool = False) -> float:
    p = _softmax_valid()
    losses = []
    for c in range(2):
        t = [1.0 if _T[i] == c else 0.0 for i in range(2)]
        tp = sum(pi * ti for pi, ti in zip(p[c], t, strict=True))
        fp, fn = sum(p[c]) - tp, sum(t) - tp
        score = tp / (tp + fp + fn) if jaccard else tp / (tp + alpha * fp + beta * fn)
        losses.append(1.0 - score)
    return sum(losses) / 2


def test_dice_jaccard_tversky_hand_values() -> None:
    logits, mask = _tiny()
    dice = build_loss("dice", num_classes=2)(logits, mask)
    assert dice.item() == pytest.approx(_tversky_hand(0.5, 0.5), abs=1e-6)
    assert dice.item() == pytest.approx(0.19510, abs=1e-4)  # by hand: (0.1805 + 0.2097) / 2
    jac = build_loss("jaccard", num_classes=2)(logits, mask)
    assert jac.item() == pytest.approx(_tversky_hand(0, 0, jaccard=True), abs=1e-6)
    tv = build_loss({"name": "tversky", "alpha": 0.3, "beta": 0.7}, num_classes=2)(logits, mask)
    assert tv.item() == pytest.approx(_tversky_hand(0.3, 0.7), abs=1e-6)


def test_lovasz_hand_value() -> None:
    """Lovász-softmax (Berman et al. 2018): per present class, sorted errors · Jaccard gradient."""
    p = _softmax_valid()
    losses = []
    for c in range(2):
        fg = [1.0 if _T[i] == c else 0.0 for i in range(2)]
        pairs = sorted(((abs(f - q), f) for f, q in zip(fg, p[c], strict=True)), reverse=True)
        gts, cum_fg, cum_bg, prev, loss = sum(fg), 0.0, 0.0, 0.0, 0.0
        for err, f in pairs:
            cum_fg, cum_bg = cum_fg + f, cum_bg + 1 - f
            jac = 1.0 - (gts - cum_fg) / (gts + cum_bg)
            loss += err * (jac - prev)
            prev = jac
        losses.append(loss)
    want = sum(losses) / 2
    assert want == pytest.approx(0.23148, abs=1e-4)  # (0.19405 + 0.26894) / 2, worked by hand
    logits, mask = _tiny()
    assert build_loss("lovasz", num_classes=2)(logits, mask).item() == pytest.approx(want, abs=1e-6)


def _bce(z: float, t: float, pos_weight: float = 1.0) -> float:
    sig = 1.0 / (1.0 + math.exp(-z))
    return -(pos_weight * t * math.log(sig) + (1.0 - t) * math.log(1.0 - sig))


def test_focal_gamma_two_hand_value() -> None:
    """Smp multiclass focal: one-vs-rest sigmoid focal per class, mean over pixels, then classes."""
    per_class = []
    for c in range(2):
        terms = []
        for i in range(2):
            ce = _bce(_Z[c][i], 1.0 if _T[i] == c else 0.0)
            terms.append((1.0 - math.exp(-ce)) ** 2 * ce)
        per_class.append(sum(terms) / 2)
    logits, mask = _tiny()
    got = build_loss("focal", num_classes=2)(logits, mask)  # default gamma 2, no alpha
    assert got.item() == pytest.approx(sum(per_class) / 2, abs=1e-6)


def test_bce_hand_values_binary_and_multilabel() -> None:
    z = torch.tensor([2.0, -1.0, 0.5]).view(1, 1, 1, 3)
    t = torch.tensor([1, 0, IGNORE_INDEX]).view(1, 1, 3)
    plain = build_loss("bce", num_classes=1, mode="binary")(z, t)
    assert plain.item() == pytest.approx((_bce(2.0, 1) + _bce(-1.0, 0)) / 2, abs=1e-6)
    pw = build_loss({"name": "bce", "pos_weight": 3.0}, num_classes=1, mode="binary")(z, t)
    assert pw.item() == pytest.approx((_bce(2.0, 1, 3.0) + _bce(-1.0, 0)) / 2, abs=1e-6)
    # multilabel: (B, K) logits, label 1's weight 2, one entry ignored
    logits = torch.tensor([[0.3, -2.0], [1.5, 0.0]])
    target = torch.tensor([[1.0, 0.0], [IGNORE_INDEX, 1.0]])
    ml = build_loss("bce", num_classes=2, mode="multilabel", class_weights=torch.tensor([1.0, 2.0]))
    want = (_bce(0.3, 1) + 2 * _bce(-2.0, 0) + 2 * _bce(0.0, 1)) / 3
    assert ml(logits, target).item() == pytest.approx(want, abs=1e-6)
