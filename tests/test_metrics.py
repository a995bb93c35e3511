"""Land-cover metrics: absent classes, ignore pixels, hand-computed values, calibration, DDP."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAUROC, MulticlassCalibrationError

from landlearn.conventions import IGNORE_INDEX
from landlearn.errors import LandlearnError
from landlearn.metrics import (
    LandCoverMetrics,
    expected_calibration_error,
    mean_iou_present,
)


def _onehot_probs(pred: torch.Tensor, k: int, conf: float = 0.9) -> torch.Tensor:
    """Probabilities ``(B, K, ...)`` whose argmax is ``pred`` ``(B, ...)``."""
    hot = F.one_hot(pred, k).movedim(-1, 1).float()
    return hot * conf + (1 - hot) * (1 - conf) / (k - 1)


def test_mean_iou_excludes_class_absent_from_both() -> None:
    cm = torch.tensor([[3, 1, 0], [1, 3, 0], [0, 0, 0]])  # class 2 never seen nor predicted
    miou, iou = mean_iou_present(cm)
    assert iou[:2].tolist() == pytest.approx([0.6, 0.6])
    assert torch.isnan(iou[2])
    assert miou == pytest.approx(0.6)  # / 2, not / 3


def test_class_only_predicted_counts_with_iou_zero() -> None:
    cm = torch.tensor([[2, 0, 1], [0, 2, 0], [0, 0, 0]])  # class 2 predicted once, never true
    miou, iou = mean_iou_present(cm)
    assert iou.tolist() == pytest.approx([2 / 3, 1.0, 0.0])
    assert miou == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)


def _two_class_example() -> tuple[torch.Tensor, torch.Tensor]:
    """Segmentation batch (1, 2, 2, 4): 5 labelled pixels and 3 ignored ones."""
    target = torch.tensor([[[0, 0, 0, 1], [1, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]]])
    pred = torch.tensor([[[0, 0, 1, 1], [0, 1, 1, 0]]])
    return _onehot_probs(pred, 2), target


def test_hand_computed_two_class_example() -> None:
    probs, target = _two_class_example()
    m = LandCoverMetrics(2, class_names=["water", "forest"])
    m.update(probs, target)
    out = m.compute()
    # rows true, cols predicted: [[2, 1], [1, 1]]
    assert out["confusion_matrix"] == [[2, 1], [1, 1]]
    assert out["overall_accuracy"] == pytest.approx(3 / 5)
    assert out["average_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert out["per_class"]["precision"] == pytest.approx([2 / 3, 1 / 2])
    assert out["per_class"]["recall"] == pytest.approx([2 / 3, 1 / 2])
    assert out["per_class"]["f1"] == pytest.approx([2 / 3, 1 / 2])
    assert out["per_class"]["iou"] == pytest.approx([1 / 2, 1 / 3])
    assert out["per_class"]["support"] == [3, 2]
    assert out["miou"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert out["macro_f1"] == pytest.approx((2 / 3 + 1 / 2) / 2) == out["dice"]
    po, pe = 3 / 5, (3 * 3 + 2 * 2) / 25
    assert out["kappa"] == pytest.approx((po - pe) / (1 - pe))
    assert out["pixels"] == 5
    assert out["auroc"] is None  # segmentation
    assert out["class_names"] == ["water", "forest"]


def test_ignore_pixels_excluded_from_everything() -> None:
    probs, target = _two_class_example()
    a = LandCoverMetrics(2)
    a.update(probs, target)
    changed = probs.clone()
    ignored = target == IGNORE_INDEX
    changed[:, 0][ignored], changed[:, 1][ignored] = 0.5, 0.5
    b = LandCoverMetrics(2)
    b.update(changed, target)
    assert a.compute() == b.compute()
    assert sum(a.compute()["reliability"]["count"]) == 5


def test_absent_class_in_full_report() -> None:
    target = torch.tensor([[[0, 1, 1, 0]]])
    m = LandCoverMetrics(3)
    m.update(_onehot_probs(target, 3), target)
    out = m.compute()
    assert out["miou"] == pytest.approx(1.0)  # perfect; class 2 left out, not a 0
    assert out["dice"] == pytest.approx(1.0)
    assert out["per_class"]["iou"] == [1.0, 1.0, None]
    assert out["per_class"]["precision"][2] is None
    assert out["overall_accuracy"] == pytest.approx(1.0)
    assert out["kappa"] == pytest.approx(1.0)


def test_ece_hand_example() -> None:
    # confidences 0.9 (right), 0.9 (wrong), 0.65 (right), 0.75 (right); 5 bins of width 0.2
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.35, 0.65], [0.75, 0.25]])
    target = torch.tensor([0, 1, 1, 0])
    expected = 2 / 4 * abs(0.5 - 0.9) + 2 / 4 * abs(1.0 - 0.7)
    assert expected_calibration_error(probs, target, n_bins=5) == pytest.approx(expected)
    m = LandCoverMetrics(2, task="classification", n_bins=5)
    m.update(probs, target)
    out = m.compute()
    assert out["ece"] == pytest.approx(expected)
    rel = out["reliability"]
    assert rel["count"] == [0, 0, 0, 2, 2]
    assert rel["bin_edges"] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert rel["confidence"][3:] == pytest.approx([0.7, 0.9])
    assert rel["accuracy"][3:] == pytest.approx([1.0, 0.5])
    assert rel["confidence"][0] is None


def test_ece_and_auroc_match_torchmetrics() -> None:
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(3 * torch.randn(200, 4, generator=g), dim=1)
    target = torch.randint(0, 4, (200,), generator=g)
    ref_ece = MulticlassCalibrationError(4, n_bins=15)(probs, target)
    assert expected_calibration_error(probs, target) == pytest.approx(float(ref_ece), abs=1e-6)
    m = LandCoverMetrics(4, task="classification")
    m.update(probs[:120], target[:120])
    m.update(probs[120:], target[120:])
    out = m.compute()
    assert out["auroc"] == pytest.approx(float(MulticlassAUROC(4)(probs, target)), abs=1e-6)
    assert out["samples"] == 200


def test_output_is_json_serialisable_and_markdown() -> None:
    probs, target = _two_class_example()
    m = LandCoverMetrics(2, class_names=["water", "forest"])
    m.update(probs, target)
    out = m.compute()
    text = json.dumps(out, allow_nan=False)
    assert json.loads(text) == out
    from landlearn.report.markdown import metrics_markdown

    md = metrics_markdown(out)
    assert "| Mean IoU | 0.4167 |" in md
    assert "| forest |" in md
    assert "AUROC" not in md


def _rounded(x: object) -> object:
    """Floats rounded to 9 digits, recursively (sums in a different order differ in ulps)."""
    if isinstance(x, float):
        return round(x, 9)
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_rounded(v) for v in x]
    return x


def test_states_sync_across_processes() -> None:
    m = LandCoverMetrics(3, task="classification")
    assert m._reductions  # every state has a dist_reduce_fx
    assert all(fx is not None for fx in m._reductions.values())
    g = torch.Generator().manual_seed(1)
    probs = torch.softmax(torch.randn(40, 3, generator=g), 1)
    target = torch.randint(0, 3, (40,), generator=g)
    whole = LandCoverMetrics(3, task="classification")
    whole.update(probs, target)
    rank0 = LandCoverMetrics(3, task="classification")
    rank1 = LandCoverMetrics(3, task="classification")
    rank0.update(probs[:25], target[:25])
    rank1.update(probs[25:], target[25:])
    rank0.merge_state(rank1)  # what a DDP sync does with the registered reductions
    assert _rounded(rank0.compute()) == _rounded(whole.compute())


def test_multilabel_mode() -> None:
    probs = torch.tensor([[0.9, 0.2], [0.8, 0.7], [0.1, 0.6]])
    target = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, IGNORE_INDEX]])
    m = LandCoverMetrics(2, task="classification", mode="multilabel")
    m.update(probs, target)
    out = m.compute()
    assert out["overall_accuracy"] == pytest.approx(2 / 3)  # row 2 is wrong on label 1
    assert out["confusion_matrix"] == [[[1, 0], [0, 2]], [[1, 1], [0, 0]]]
    assert out["per_class"]["iou"] == pytest.approx([1.0, 0.0])
    assert out["per_class"]["recall"][1] is None
    assert sum(out["reliability"]["count"]) == 5
    json.dumps(out, allow_nan=False)


def test_binary_mode_counts_two_classes() -> None:
    target = torch.tensor([[[0, 1, IGNORE_INDEX, 1]]])
    m = LandCoverMetrics(2, mode="binary")
    m.update(torch.tensor([[[[0.2, 0.9, 0.5, 0.4]]]]), target)
    assert m.compute()["confusion_matrix"] == [[1, 0], [1, 1]]


def test_bad_input_is_a_landlearn_error() -> None:
    m = LandCoverMetrics(2)
    with pytest.raises(LandlearnError, match="target holds class 5 but num_classes is 2"):
        m.update(torch.full((1, 2, 2, 2), 0.5), torch.tensor([[[0, 5], [1, 0]]]))
    with pytest.raises(LandlearnError, match="do not match"):
        m.update(torch.full((1, 2, 2, 2), 0.5), torch.zeros(1, 3, 2, dtype=torch.long))
    with pytest.raises(LandlearnError, match="class_names"):
        LandCoverMetrics(3, class_names=["a", "b"])


def test_a_class_never_predicted_is_not_called_absent() -> None:
    """Every test image is of class 0 or 1, nothing is predicted 1: its precision is undefined."""
    target = torch.tensor([0, 0, 1, 1])
    probs = torch.tensor([[0.9, 0.1, 0.0]] * 4)
    m = LandCoverMetrics(3, class_names=["a", "b", "c"])
    m.update(probs, target)
    from landlearn.report.markdown import ABSENT, metrics_markdown

    md = metrics_markdown(m.compute())
    row_b = next(line for line in md.splitlines() if line.startswith("| b |"))
    assert row_b.split("|")[2].strip() == ABSENT  # precision of b: never predicted
    assert row_b.split("|")[-2].strip() == "2"  # yet b is in the test split
    assert "or (precision) it was never predicted" in md
