"""Land-cover metrics from one confusion matrix plus calibration bins, synced across processes.

:class:`LandCoverMetrics` is a ``torchmetrics.Metric``: every state is a sum (or, for AUROC, a
concatenation) registered with ``dist_reduce_fx``, so Lightning/DDP runs give the numbers of the
whole split. ``compute()`` returns a JSON-ready dict (plain floats, ints, lists; undefined → None).

Absent classes: torchmetrics' mean IoU counts a class absent from both target and prediction as
0 (or needs ``ignore_index`` tricks); :func:`mean_iou_present` excludes it instead, while a class
that is only predicted counts with IoU 0. ``dice`` and ``macro_f1`` average over the same classes;
for hard labels per-class F1 and Dice are the same number (both names are in use). The average
accuracy averages per-class recall over classes present in the target.

Modes: ``multiclass`` (probs ``(B, K[, H, W])``, int targets ``(B[, H, W])``), ``binary`` (probs
of the positive class ``(B[, 1][, H, W])``, counted as 2 classes) and ``multilabel`` (probs and
0/1 targets ``(B, K[, H, W])``, decisions at 0.5). In multilabel mode: ``overall_accuracy`` is
the exact-match ratio (a sample is right when all its labelled labels are), per-class numbers are
per label, ``kappa`` comes from the pooled 2×2 table of all label decisions, the confusion matrix
is one ``[[tn, fp], [fn, tp]]`` per label, and calibration bins hold each label's decision with
confidence ``max(p, 1 - p)``.

:class:`RegressionMetrics` is the same kind of ``Metric`` for regression heads: MAE, RMSE and R²
per target and averaged over targets, and the Gaussian negative log-likelihood when the head
predicts a log-variance, from float64 sums (synced with ``dist_reduce_fx="sum"``). NaN targets
are left out, target by target.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.classification import binary_auroc
from torchmetrics.utilities import dim_zero_cat

from landlearn.conventions import IGNORE_INDEX
from landlearn.errors import LandlearnError

log = logging.getLogger(__name__)

TASKS = ("segmentation", "classification")
MODES = ("multiclass", "binary", "multilabel")

__all__ = [
    "LandCoverMetrics",
    "RegressionMetrics",
    "expected_calibration_error",
    "mean_iou_present",
]


def mean_iou_present(confmat: Tensor) -> tuple[float, Tensor]:
    """Mean IoU over classes present in target or prediction, and IoU per class.

    ``confmat`` is ``(K, K)`` with rows = true, cols = predicted. A class absent from both gets
    NaN and is left out of the mean; a class only predicted has IoU 0 and counts.
    """
    cm = confmat.double()
    tp = cm.diagonal()
    union = cm.sum(0) + cm.sum(1) - tp
    iou = torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, math.nan))
    present = ~iou.isnan()
    mean = float(iou[present].mean()) if bool(present.any()) else math.nan
    return mean, iou


def _bin_index(confidence: Tensor, n_bins: int) -> Tensor:
    """Equal-width bins ``[i/n, (i+1)/n)``; confidence 1.0 falls in the last bin."""
    return (confidence * n_bins).long().clamp_(0, n_bins - 1)


def _bins(confidence: Tensor, correct: Tensor, n_bins: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per bin: count, sum of confidence (float64), count of correct predictions."""
    idx = _bin_index(confidence, n_bins)
    count = torch.bincount(idx, minlength=n_bins)
    conf = torch.zeros(n_bins, dtype=torch.float64, device=confidence.device)
    conf.scatter_add_(0, idx, confidence.double())
    # Unweighted bincount and scatter_add_ stay deterministic on CUDA (weighted bincount raises
    # under torch.use_deterministic_algorithms, i.e. Lightning's deterministic=True).
    right = torch.bincount(idx[correct], minlength=n_bins)
    return count, conf, right


def _ece(count: Tensor, conf_sum: Tensor, correct: Tensor) -> float:
    total = int(count.sum())
    if total == 0:
        return math.nan
    n = count.double().clamp_min(1)
    return float(((correct.double() - conf_sum).abs() / n * count).sum() / total)


def _flat(probs: Tensor, target: Tensor, ignore_index: int) -> tuple[Tensor, Tensor]:
    """``(B, K, *S)`` probs and ``(B, *S)`` target → labelled rows ``(N, K)`` and ``(N,)``."""
    if (
        probs.dim() != target.dim() + 1
        or probs.shape[0] != target.shape[0]
        or (probs.shape[2:] != target.shape[1:])
    ):
        raise LandlearnError(
            f"probs {tuple(probs.shape)} and target {tuple(target.shape)} do not match; "
            "expected (B, K, ...) and (B, ...)"
        )
    k = probs.shape[1]
    p = probs.detach().movedim(1, -1).reshape(-1, k)
    t = target.detach().reshape(-1).long()
    valid = t != ignore_index
    return p[valid], t[valid]


def expected_calibration_error(
    probs: Tensor, target: Tensor, n_bins: int = 15, ignore_index: int = IGNORE_INDEX
) -> float:
    """ECE of the top-1 confidence with ``n_bins`` equal-width bins, ignored targets left out.

    ``probs`` ``(B, K[, H, W])`` sum to 1 over ``K``; ``target`` ``(B[, H, W])``. NaN when
    nothing is labelled.
    """
    p, t = _flat(probs, target, ignore_index)
    conf, pred = p.max(1) if p.numel() else (p.new_zeros(0), t.new_zeros(0))
    return _ece(*_bins(conf, pred == t, n_bins))


def _num(x: float | Tensor) -> float | None:
    v = float(x)
    return None if math.isnan(v) else v


def _nums(x: Tensor) -> list[float | None]:
    return [_num(v) for v in x.tolist()]


def _ratio(a: Tensor, b: Tensor) -> Tensor:
    """``a / b`` element-wise, NaN where ``b == 0``."""
    return torch.where(b > 0, a / b.clamp_min(1e-300), torch.full_like(a, math.nan))


def _nanmean(x: Tensor) -> float:
    keep = ~x.isnan()
    return float(x[keep].mean()) if bool(keep.any()) else math.nan


def _kappa(cm: Tensor) -> float:
    total = cm.sum()
    if total == 0:
        return math.nan
    po = cm.diagonal().sum() / total
    pe = (cm.sum(0) * cm.sum(1)).sum() / total**2
    return math.nan if float(pe) >= 1.0 else float((po - pe) / (1 - pe))


class LandCoverMetrics(Metric):
    """OA, AA, mIoU, Dice, F1, kappa, ECE (+ AUROC for classification) from summed states.

    Call ``update(probs, target)`` with probabilities (softmax / sigmoid applied) and targets
    holding ``ignore_index`` where unlabelled; ``compute()`` gives the JSON-ready report.
    """

    is_differentiable = False
    higher_is_better = None  # mixed: ECE is lower-better
    full_state_update = False
    # metric states (``add_state``), declared for type checkers
    confmat: Tensor
    label_stats: Tensor
    exact: Tensor
    bin_count: Tensor
    bin_conf: Tensor
    bin_correct: Tensor
    scores: list[Tensor]
    labels: list[Tensor]

    def __init__(
        self,
        num_classes: int,
        task: str = "segmentation",
        mode: str = "multiclass",
        ignore_index: int = IGNORE_INDEX,
        n_bins: int = 15,
        class_names: list[str] | None = None,
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if task not in TASKS:
            raise LandlearnError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
        if mode not in MODES:
            raise LandlearnError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        k = 2 if mode == "binary" else num_classes
        if num_classes < 1 or (mode == "binary" and num_classes > 2) or n_bins < 1:
            raise LandlearnError(f"bad num_classes {num_classes} or n_bins {n_bins} for {mode}")
        names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(k)]
        if len(names) != k:
            raise LandlearnError(f"{len(names)} class_names for {k} classes; give one per class")
        self.num_classes, self.task, self.mode = k, task, mode
        self.ignore_index, self.n_bins, self.class_names = ignore_index, n_bins, names
        self.validate_args = validate_args
        long = torch.long
        if mode == "multilabel":
            self.add_state("label_stats", torch.zeros(k, 4, dtype=long), dist_reduce_fx="sum")
            self.add_state("exact", torch.zeros(2, dtype=long), dist_reduce_fx="sum")
        else:
            self.add_state("confmat", torch.zeros(k, k, dtype=long), dist_reduce_fx="sum")
        self.add_state("bin_count", torch.zeros(n_bins, dtype=long), dist_reduce_fx="sum")
        self.add_state("bin_conf", torch.zeros(n_bins, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("bin_correct", torch.zeros(n_bins, dtype=long), dist_reduce_fx="sum")
        if task == "classification":
            self.add_state("scores", [], dist_reduce_fx="cat")
            self.add_state("labels", [], dist_reduce_fx="cat")

    def update(self, probs: Tensor, target: Tensor) -> None:
        """Add a batch: probs ``(B, K[, H, W])``, target ``(B[, H, W])`` (multilabel: like probs).

        Raises:
            LandlearnError: shapes that do not match, or target classes outside ``[0, K)``.
        """
        if self.mode == "multilabel":
            self._update_multilabel(probs, target)
            return
        if self.mode == "binary":
            p1 = probs.squeeze(1) if probs.dim() == target.dim() + 1 else probs
            probs = torch.stack([1 - p1, p1], dim=1)
        p, t = _flat(probs, target, self.ignore_index)
        k = self.num_classes
        if p.shape[1] != k:
            raise LandlearnError(f"probs have {p.shape[1]} classes, metrics expect {k}")
        if self.validate_args and t.numel() and (int(t.min()) < 0 or int(t.max()) >= k):
            bad = int(t.max()) if int(t.max()) >= k else int(t.min())
            raise LandlearnError(
                f"target holds class {bad} but num_classes is {k}; "
                f"unlabelled pixels must be {self.ignore_index}"
            )
        conf, pred = p.max(1)
        self.confmat += torch.bincount(t * k + pred, minlength=k * k).view(k, k)
        self._add_bins(conf, pred == t)
        if self.task == "classification":
            self.scores.append(p.float())
            self.labels.append(t)

    def _update_multilabel(self, probs: Tensor, target: Tensor) -> None:
        if probs.shape != target.shape or probs.dim() < 2:
            raise LandlearnError(
                f"multilabel probs {tuple(probs.shape)} and target {tuple(target.shape)} "
                "must both be (B, K, ...)"
            )
        k = self.num_classes
        if probs.shape[1] != k:
            raise LandlearnError(f"probs have {probs.shape[1]} labels, metrics expect {k}")
        p = probs.detach().movedim(1, -1).reshape(-1, k)  # (N, K)
        t = target.detach().movedim(1, -1).reshape(-1, k)
        valid = t != self.ignore_index
        pred, truth = p >= 0.5, t >= 0.5
        stats = [~pred & ~truth, pred & ~truth, ~pred & truth, pred & truth]  # tn fp fn tp
        self.label_stats += torch.stack([(s & valid).sum(0) for s in stats], dim=1)
        rows = valid.any(1)
        right = ((pred == truth) | ~valid).all(1) & rows
        self.exact += torch.stack([right.sum(), rows.sum()])
        conf = torch.maximum(p, 1 - p)[valid]
        self._add_bins(conf, (pred == truth)[valid])
        if self.task == "classification":
            self.scores.append(p.float())
            self.labels.append(torch.where(valid, truth.long(), self.ignore_index))

    def _add_bins(self, conf: Tensor, correct: Tensor) -> None:
        count, conf_sum, right = _bins(conf, correct, self.n_bins)
        self.bin_count += count
        self.bin_conf += conf_sum
        self.bin_correct += right

    def _auroc(self) -> float:
        """Macro one-vs-rest AUROC over classes with both positives and negatives."""
        if self.task != "classification" or not self.scores:
            return math.nan
        scores, labels = dim_zero_cat(self.scores), dim_zero_cat(self.labels)
        values = []
        for c in range(self.num_classes):
            if self.mode == "multilabel":
                keep = labels[:, c] != self.ignore_index
                s, y = scores[keep, c], labels[keep, c]
            else:
                s, y = scores[:, c], (labels == c).long()
            if 0 < int(y.sum()) < y.numel():
                values.append(float(binary_auroc(s, y, validate_args=False)))
        return sum(values) / len(values) if values else math.nan

    def _reliability(self) -> dict[str, Any]:
        count = self.bin_count.cpu()
        n = count.double()
        edges = torch.linspace(0, 1, self.n_bins + 1, dtype=torch.float64)
        return {
            "bin_edges": [float(e) for e in edges],
            "confidence": _nums(_ratio(self.bin_conf.cpu(), n)),
            "accuracy": _nums(_ratio(self.bin_correct.cpu().double(), n)),
            "count": [int(c) for c in count],
        }

    def compute(self) -> dict[str, Any]:
        """The report; see the module docstring for what each number means here."""
        if self.mode == "multilabel":
            tn, fp, fn, tp = self.label_stats.cpu().double().unbind(1)
            pooled = torch.tensor([[tn.sum(), fp.sum()], [fn.sum(), tp.sum()]])
            exact, rows = self.exact.cpu().tolist()
            oa = exact / rows if rows else math.nan
            kappa = _kappa(pooled)
            union = tp + fp + fn
            iou = _ratio(tp, union)
            miou = _nanmean(iou)
            matrix = self.label_stats.cpu().view(-1, 2, 2).tolist()
            count = rows
        else:
            cm = self.confmat.cpu().double()
            tp = cm.diagonal()
            fp, fn = cm.sum(0) - tp, cm.sum(1) - tp
            total = float(cm.sum())
            oa = float(tp.sum()) / total if total else math.nan
            kappa = _kappa(cm)
            union = tp + fp + fn
            miou, iou = mean_iou_present(cm)
            matrix = self.confmat.cpu().tolist()
            count = int(total)
        precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        f1 = _ratio(2 * tp, 2 * tp + fp + fn)  # NaN exactly where the class is absent from both
        return {
            "task": self.task,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "overall_accuracy": _num(oa),
            "average_accuracy": _num(_nanmean(recall)),
            "miou": _num(miou),
            "dice": _num(_nanmean(f1)),
            "macro_f1": _num(_nanmean(f1)),
            "kappa": _num(kappa),
            "auroc": _num(self._auroc()),
            "ece": _num(_ece(self.bin_count.cpu(), self.bin_conf.cpu(), self.bin_correct.cpu())),
            "per_class": {
                "precision": _nums(precision),
                "recall": _nums(recall),
                "f1": _nums(f1),
                "iou": _nums(iou),
                "support": [int(s) for s in (tp + fn).tolist()],
            },
            "confusion_matrix": matrix,
            "reliability": self._reliability(),
            ("pixels" if self.task == "segmentation" else "samples"): int(count),
        }


_LOG_2PI = math.log(2 * math.pi)


def _per_target(x: Tensor, t: int, what: str) -> Tensor:
    """``(B,)`` (one target), ``(B, T)`` or ``(B, T, H, W)`` → rows ``(N, T)``."""
    if x.dim() == 1 and t == 1:
        x = x[:, None]
    if x.dim() < 2 or x.shape[1] != t:
        raise LandlearnError(
            f"{what} has shape {tuple(x.shape)}; expected (B, {t}) or (B, {t}, H, W) "
            f"for {t} targets"
        )
    return x.detach().movedim(1, -1).reshape(-1, t).double()


class RegressionMetrics(Metric):
    """MAE, RMSE, R² per target and averaged; Gaussian NLL when log-variances are given.

    ``update(pred, target, log_var=None)`` with predictions and targets in the same units,
    ``(B, T)`` (scene heads; ``(B,)`` for one target) or ``(B, T, H, W)`` (pixel heads). Entries
    whose target is NaN are skipped, so each target counts its own labelled samples. ``log_var``
    is the predicted log-variance (same shape, same units squared); the NLL is the full Gaussian
    one, ``0.5 * (log 2π + log σ² + (y - μ)² / σ²)``, averaged over labelled entries.

    Averages over targets are unweighted (scikit-learn's ``uniform_average``) over the targets
    where the number is defined. R² is ``1 - SSE / SST`` with SST about the split's own mean,
    undefined (None) with fewer than 2 labelled values or a constant target.
    """

    is_differentiable = False
    higher_is_better = None  # mixed: R² is higher-better, the errors lower-better
    full_state_update = False
    count: Tensor
    sum_abs: Tensor
    sum_sq: Tensor
    sum_y: Tensor
    sum_y2: Tensor
    nll_sum: Tensor
    nll_count: Tensor

    def __init__(self, targets: int | list[str], **kwargs: Any) -> None:
        """``targets``: target names, or their number (named ``target_<i>``)."""
        super().__init__(**kwargs)
        names = [f"target_{i}" for i in range(targets)] if isinstance(targets, int) else targets
        if not names:
            raise LandlearnError("RegressionMetrics needs at least one target")
        self.target_names = list(names)
        t = len(self.target_names)
        for name in ("sum_abs", "sum_sq", "sum_y", "sum_y2", "nll_sum"):
            self.add_state(name, torch.zeros(t, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(t, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("nll_count", torch.zeros(t, dtype=torch.long), dist_reduce_fx="sum")

    @property
    def num_targets(self) -> int:
        """Number of targets."""
        return len(self.target_names)

    def update(self, pred: Tensor, target: Tensor, log_var: Tensor | None = None) -> None:
        """Add a batch (see the class docstring for shapes).

        Raises:
            LandlearnError: shapes that do not match the number of targets or each other.
        """
        t = self.num_targets
        p, y = _per_target(pred, t, "pred"), _per_target(target, t, "target")
        if p.shape != y.shape:
            raise LandlearnError(
                f"pred {tuple(pred.shape)} and target {tuple(target.shape)} do not match"
            )
        valid = ~y.isnan()
        err = torch.where(valid, p - y, 0.0)
        y0 = torch.where(valid, y, 0.0)
        self.count += valid.sum(0)
        self.sum_abs += err.abs().sum(0)
        self.sum_sq += (err**2).sum(0)
        self.sum_y += y0.sum(0)
        self.sum_y2 += (y0**2).sum(0)
        if log_var is not None:
            lv = _per_target(log_var, t, "log_var")
            if lv.shape != y.shape:
                raise LandlearnError(
                    f"log_var {tuple(log_var.shape)} and target {tuple(target.shape)} do not match"
                )
            lv = torch.where(valid, lv, 0.0)
            nll = 0.5 * (_LOG_2PI + lv + err**2 * torch.exp(-lv))
            self.nll_sum += torch.where(valid, nll, 0.0).sum(0)
            self.nll_count += valid.sum(0)

    def compute(self) -> dict[str, Any]:
        """JSON-ready report: averages, ``per_target`` lists, counts (undefined → None)."""
        n = self.count.cpu().double()
        mae = _ratio(self.sum_abs.cpu(), n)
        rmse = _ratio(self.sum_sq.cpu(), n).sqrt()
        sst = self.sum_y2.cpu() - _ratio(self.sum_y.cpu() ** 2, n).nan_to_num(0.0)
        r2 = torch.where(
            (n >= 2) & (sst > 1e-12 * self.sum_y2.cpu().clamp_min(1e-300)),
            1 - self.sum_sq.cpu() / sst.clamp_min(1e-300),
            torch.full_like(n, math.nan),
        )
        nll = _ratio(self.nll_sum.cpu(), self.nll_count.cpu().double())
        return {
            "task": "regression",
            "targets": list(self.target_names),
            "mae": _num(_nanmean(mae)),
            "rmse": _num(_nanmean(rmse)),
            "r2": _num(_nanmean(r2)),
            "nll": _num(_nanmean(nll)),
            "per_target": {
                "mae": _nums(mae),
                "rmse": _nums(rmse),
                "r2": _nums(r2),
                "nll": _nums(nll),
                "count": [int(c) for c in self.count.cpu().tolist()],
            },
            "samples": int(self.count.max()) if self.num_targets else 0,
        }
