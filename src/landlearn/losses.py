"""Losses by name, weighted sums of them, and partial cross-entropy for sparse labels.

Every loss is called as ``loss(logits, target)``:

- segmentation: logits ``(B, K, H, W)``, mask ``(B, H, W)`` int64 with ``IGNORE_INDEX`` where
  unlabelled;
- classification: logits ``(B, K)``, labels ``(B,)`` int64;
- multilabel / binary (``mode``): logits ``(B, K[, H, W])``, float targets of the same shape
  (``IGNORE_INDEX`` entries are ignored); binary also takes logits ``(B, 1, H, W)`` with a
  ``(B, H, W)`` mask.

Ignored targets never change a loss, and a batch with nothing labelled gives 0 (with a gradient
of zeros), not NaN. Specs accepted by :func:`build_loss`::

    "ce"
    {"name": "focal", "gamma": 2.0}
    {"ce": 0.5, "dice": 0.5}
    {"ce": {"weight": 0.5, "label_smoothing": 0.1}, "dice": 0.5}

``focal`` is smp's ``FocalLoss``: in multiclass mode a one-vs-rest *sigmoid* focal loss per class,
averaged over classes (with ``gamma = 0`` it is the mean per-class binary cross-entropy, not CE).
For the softmax focal loss of Lin et al., use ``{"name": "partial_ce", "gamma": 2.0}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from landlearn.conventions import IGNORE_INDEX
from landlearn.errors import LandlearnError
from landlearn.registry import Registry, check_options

log = logging.getLogger(__name__)

LossBuilder = Callable[..., nn.Module]
LOSSES: Registry[nn.Module] = Registry("loss")
MODES = ("multiclass", "multilabel", "binary")

__all__ = [
    "LOSSES",
    "MODES",
    "CrossEntropy",
    "MaskedBCE",
    "PartialCrossEntropy",
    "WeightedSumLoss",
    "build_loss",
    "list_losses",
    "register_loss",
]


def register_loss(name: str) -> Callable[[LossBuilder], LossBuilder]:
    """Register a loss builder ``(*, num_classes, ignore_index, class_weights, mode, **kw)``."""
    return LOSSES.register(name)


def list_losses() -> list[str]:
    """Sorted registered loss names."""
    return LOSSES.names()


def _safe_divide(total: Tensor, count: Tensor) -> Tensor:
    """``total / count``, and ``total`` itself (0, with grad) when ``count`` is 0."""
    return total / torch.where(count > 0, count, torch.ones_like(count))


class CrossEntropy(nn.Module):
    """torch cross-entropy, mean over labelled targets; 0 (not NaN) when nothing is labelled.

    With class weights the mean is weighted as in torch: sum of ``w[y] * loss`` over sum of
    ``w[y]``.
    """

    def __init__(
        self,
        ignore_index: int = IGNORE_INDEX,
        weight: Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.weight: Tensor | None
        self.register_buffer("weight", None if weight is None else weight.float().clone())

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Scalar loss for logits ``(B, K, ...)`` and int64 target ``(B, ...)``."""
        per_item = F.cross_entropy(
            logits,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction="none",
            label_smoothing=self.label_smoothing,
        )  # (B, ...), 0 at ignored items
        valid = target != self.ignore_index
        if self.weight is None:
            count = valid.sum().to(per_item.dtype)
        else:
            safe = torch.where(valid, target, torch.zeros_like(target))
            count = (self.weight.to(per_item.dtype)[safe] * valid).sum()
        return _safe_divide(per_item.sum(), count)


class PartialCrossEntropy(nn.Module):
    """Partial cross-entropy for sparsely labelled masks (points, scribbles).

    Cross-entropy averaged over labelled pixels only (``target != ignore_index``), with an optional
    focal modulation ``(1 - p_y) ** gamma`` (``gamma = 0``: plain CE) and optional class weights
    (mean weighted by ``w[y]``, as torch does). Nothing labelled gives 0 with a zero gradient.
    """

    def __init__(
        self,
        ignore_index: int = IGNORE_INDEX,
        weight: Tensor | None = None,
        gamma: float = 0.0,
    ) -> None:
        super().__init__()
        if gamma < 0:
            raise LandlearnError(f"partial_ce gamma must be >= 0, got {gamma}")
        self.ignore_index = ignore_index
        self.gamma = gamma
        self.weight: Tensor | None
        self.register_buffer("weight", None if weight is None else weight.float().clone())

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Scalar loss for logits ``(B, K, ...)`` and int64 target ``(B, ...)``."""
        valid = target != self.ignore_index  # (B, ...)
        safe = torch.where(valid, target, torch.zeros_like(target))
        logp = F.log_softmax(logits, dim=1).gather(1, safe.unsqueeze(1)).squeeze(1)  # (B, ...)
        loss = -logp
        if self.gamma > 0:
            loss = (1.0 - logp.exp()).clamp_min(0).pow(self.gamma) * loss
        w = valid.to(loss.dtype)
        if self.weight is not None:
            w = w * self.weight.to(loss.dtype)[safe]
        return _safe_divide((loss * w).sum(), w.sum())


class MaskedBCE(nn.Module):
    """Binary cross-entropy with logits, mean over targets that are not ``ignore_index``.

    ``weight`` (K,) scales each label's term (multilabel); ``pos_weight`` as in torch.
    """

    def __init__(
        self,
        ignore_index: int = IGNORE_INDEX,
        weight: Tensor | None = None,
        pos_weight: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.weight: Tensor | None
        self.pos_weight: Tensor | None
        self.register_buffer("weight", None if weight is None else weight.float().clone())
        self.register_buffer(
            "pos_weight", None if pos_weight is None else torch.as_tensor(pos_weight).float()
        )

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Scalar loss for logits ``(B, K, ...)`` and float targets of the same shape."""
        if target.dim() == logits.dim() - 1 and logits.size(1) == 1:
            target = target.unsqueeze(1)  # binary mask (B, H, W) with logits (B, 1, H, W)
        target = target.to(logits.dtype)
        valid = target != self.ignore_index
        safe = torch.where(valid, target, torch.zeros_like(target))
        pos_weight = self.pos_weight
        if pos_weight is not None and logits.dim() > 2:
            pos_weight = pos_weight.view(-1, *([1] * (logits.dim() - 2)))
        loss = F.binary_cross_entropy_with_logits(
            logits, safe, reduction="none", pos_weight=pos_weight
        )
        w = valid.to(loss.dtype)
        if self.weight is not None:
            shape = (1, -1) + (1,) * (logits.dim() - 2)
            w = w * self.weight.to(loss.dtype).view(shape)
        return _safe_divide((loss * w).sum(), valid.sum().to(loss.dtype))


class _IgnoreGuard(nn.Module):
    """Wrap an smp loss so a batch with no labelled target gives 0 (with grad), not NaN/empty.

    smp's focal loss averages an empty tensor (NaN) and its Lovasz loss returns an empty tensor
    when every target is ignored; the check costs one device sync per call.
    """

    def __init__(self, loss: nn.Module, ignore_index: int) -> None:
        super().__init__()
        self.loss = loss
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """The wrapped loss, or ``0 * logits.sum()`` when every target is ignored."""
        if not bool((target != self.ignore_index).any()):
            return logits.sum() * 0.0
        out = self.loss(logits, target)
        return out.sum() if out.dim() > 0 else out


def _weights_list(class_weights: Tensor | None) -> list[float] | None:
    return None if class_weights is None else [float(w) for w in class_weights]


@register_loss("ce")
def _ce(
    *,
    num_classes: int,
    ignore_index: int,
    class_weights: Tensor | None,
    mode: str,
    label_smoothing: float = 0.0,
) -> nn.Module:
    if mode != "multiclass":
        raise LandlearnError(f"loss 'ce' needs mode 'multiclass', got {mode!r}; use 'bce'")
    return CrossEntropy(ignore_index, class_weights, label_smoothing)


@register_loss("partial_ce")
def _partial_ce(
    *,
    num_classes: int,
    ignore_index: int,
    class_weights: Tensor | None,
    mode: str,
    gamma: float = 0.0,
) -> nn.Module:
    if mode != "multiclass":
        raise LandlearnError(f"loss 'partial_ce' needs mode 'multiclass', got {mode!r}")
    return PartialCrossEntropy(ignore_index, class_weights, gamma)


@register_loss("bce")
def _bce(
    *,
    num_classes: int,
    ignore_index: int,
    class_weights: Tensor | None,
    mode: str,
    pos_weight: float | list[float] | None = None,
) -> nn.Module:
    if mode == "multiclass":
        raise LandlearnError("loss 'bce' needs mode 'multilabel' or 'binary'; use 'ce'")
    pw = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float32)
    return MaskedBCE(ignore_index, class_weights, pw)


@register_loss("focal")
def _focal(
    *,
    num_classes: int,
    ignore_index: int,
    class_weights: Tensor | None,
    mode: str,
    gamma: float = 2.0,
    alpha: float | None = None,
) -> nn.Module:
    if mode == "multiclass":
        loss = smp.losses.FocalLoss(
            mode,
            alpha=alpha,
            gamma=gamma,
            ignore_index=ignore_index,
            class_weights=_weights_list(class_weights),
        )
        return _IgnoreGuard(loss, ignore_index)
    # smp 0.6.0 multilabel focal indexes a (B, H, W) slice with a (B, K, H, W) ignore mask and
    # fails; its binary mode flattens first, so every label decision is one binary term.
    if class_weights is not None:
        log.warning("loss 'focal' ignores class_weights in mode %r", mode)
    binary = smp.losses.FocalLoss("binary", alpha=alpha, gamma=gamma, ignore_index=ignore_index)
    return _IgnoreGuard(binary, ignore_index)


def _overlap(
    name: str,
    loss_cls: type[nn.Module],
    mode: str,
    ignore_index: int,
    class_weights: Tensor | None,
    options: dict[str, Any],
) -> nn.Module:
    """An smp Dice-family loss; it masks ignored pixels itself, and nothing labelled gives 0."""
    weights = None if mode == "binary" else _weights_list(class_weights)
    fixed = {"ignore_index": ignore_index, "class_weights": weights}
    # the builders take **options for smp: check the user's against smp's own signature
    check_options(loss_cls, f"loss {name!r}", (mode,), {**fixed, **options})
    return loss_cls(mode, **fixed, **options)


@register_loss("dice")
def _dice(
    *,
    num_classes: int,
    ignore_index: int,
    class_weights: Tensor | None,
    mode: str,
    **options: Any,
) -> nn.Module:
    """Smp ``DiceLoss``; options: ``smooth``, ``log_loss``, ``eps``, ``classes``."""
    return _overlap("dice", smp.losses.DiceLoss, mode, ignore_index, class_weights, options)


@register_loss("jaccard")
def _jaccard(
    *,
    num_classes: int,
    ignore_index: int,
    class_weights: Tensor | None,
    mode: str,
    **options: Any,
) -> nn.Module:
    """Smp ``JaccardLoss``; options: ``smooth``, ``log_loss``, ``eps``, ``classes``."""
    return _overlap("jaccard", smp.losses.JaccardLoss, mode, ignore_index, class_weights, options)


@register_loss("tversky")
def _tversky(
    *,
    num_classes: int,
    ignore_index: int,
    class_weights: Tensor | None,
    mode: str,
    **options: Any,
) -> nn.Module:
    """Smp ``TverskyLoss``; options: ``alpha`` (FP weight), ``beta`` (FN weight), ``gamma``."""
    return _overlap("tversky", smp.losses.TverskyLoss, mode, ignore_index, class_weights, options)


@register_loss("lovasz")
def _lovasz(
    *,
    num_classes: int,
    ignore_index: int,
    class_weights: Tensor | None,
    mode: str,
    per_image: bool = False,
) -> nn.Module:
    if class_weights is not None:
        log.debug("loss 'lovasz' has no class weights; they are ignored")
    loss = smp.losses.LovaszLoss(mode, per_image=per_image, ignore_index=ignore_index)
    return _IgnoreGuard(loss, ignore_index)


class WeightedSumLoss(nn.Module):
    """``sum_i w_i * loss_i(logits, target)``; the last parts are kept (detached) for logging."""

    def __init__(self, parts: Mapping[str, tuple[float, nn.Module]]) -> None:
        super().__init__()
        self.losses = nn.ModuleDict({name: loss for name, (_, loss) in parts.items()})
        self.weights = {name: float(w) for name, (w, _) in parts.items()}
        self.last_parts: dict[str, Tensor] = {}

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Weighted sum of the parts."""
        total: Tensor | None = None
        for name, loss in self.losses.items():
            value = loss(logits, target)
            self.last_parts[name] = value.detach()
            term = self.weights[name] * value
            total = term if total is None else total + term
        assert total is not None  # __init__ of a spec with no parts is refused by build_loss
        return total


def _build_one(name: str, kwargs: dict[str, Any], common: dict[str, Any]) -> nn.Module:
    clash = sorted(set(kwargs) & set(common))
    if clash:
        raise LandlearnError(
            f"bad options for loss {name!r}: {', '.join(clash)} is set by the task, not the loss"
        )
    return LOSSES.build(name, **common, **kwargs)


def build_loss(
    spec: str | Mapping[str, Any],
    *,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    class_weights: Tensor | None = None,
    mode: str = "multiclass",
) -> nn.Module:
    """Build a loss from a name, ``{"name": ..., **kwargs}`` or ``{name: weight | {...}}``.

    Raises:
        LandlearnError: unknown loss name (with the nearest one), bad options or mode.
    """
    if mode not in MODES:
        raise LandlearnError(f"unknown loss mode {mode!r}; expected one of {', '.join(MODES)}")
    if class_weights is not None:
        class_weights = torch.as_tensor(class_weights, dtype=torch.float32)
        if class_weights.shape != (num_classes,):
            raise LandlearnError(
                f"class_weights has shape {tuple(class_weights.shape)}, expected ({num_classes},)"
            )
    common = {
        "num_classes": num_classes,
        "ignore_index": ignore_index,
        "class_weights": class_weights,
        "mode": mode,
    }
    if isinstance(spec, str):
        return _build_one(spec, {}, common)
    if not isinstance(spec, Mapping) or not spec:
        raise LandlearnError(f"loss spec must be a name or a non-empty mapping, got {spec!r}")
    if "name" in spec:
        kwargs = {k: v for k, v in spec.items() if k != "name"}
        return _build_one(str(spec["name"]), kwargs, common)
    parts: dict[str, tuple[float, nn.Module]] = {}
    for name, value in spec.items():
        if isinstance(value, bool) or not isinstance(value, int | float | Mapping):
            raise LandlearnError(
                f"loss {name!r}: expected a weight or a mapping of options, got {value!r}"
            )
        if isinstance(value, Mapping):
            options = dict(value)
            weight = float(options.pop("weight", 1.0))
        else:
            options, weight = {}, float(value)
        parts[name] = (weight, _build_one(str(name), options, common))
    log.debug("loss %s", {name: w for name, (w, _) in parts.items()})
    return WeightedSumLoss(parts)
