r"""Semi-supervised segmentation online: mean teacher, FixMatch and cross pseudo supervision.

Each training step takes a labelled batch (the supervised loss of the task, e.g. CE + Dice or
partial CE on sparse points) and an unlabelled batch: from the datamodule's unlabelled loader
whenever its ``has_unlabelled()`` says so (``label_fraction`` < 1 of any segmentation
datamodule, ``unlabelled_images`` of a mask folder, ``unlabelled_inputs`` of aligned rasters),
or, when it has none, the labelled batch's own images, whose unlabelled pixels are what a user
who clicked a few points per class leaves unlabelled. The unlabelled batch comes through the
datamodule like a training batch (normalised, flipped): that is the **weak view**. The
**strong view** adds per-band brightness and contrast, Gaussian blur and CutMix (a box of one
image pasted into its neighbour in the batch; the targets are mixed with the same box).

``L = L_sup + w(t) · L_unsup``, ``w(t) = unsup_weight · exp(−5 (1 − t/T)²)`` for ``t < T =
rampup_steps`` (Laine & Aila's ramp-up), then ``unsup_weight``.

Methods (``method:``):

- ``mean_teacher`` (Tarvainen & Valpola 2017; with CutMix, French et al. 2020): a teacher whose
  weights are the exponential moving average of the student's (``ema``) predicts the weak
  view; the student, on the strong view, matches the teacher's probabilities (squared error
  summed over classes) at pixels where the teacher is at least ``threshold`` confident
  (default 0.9), averaged over all pixels.
- ``fixmatch`` (Sohn et al. 2020): the same, with the teacher's hard labels (cross-entropy)
  where its confidence is at least ``threshold`` (default 0.95). ``ema: 0`` makes the teacher
  the student itself at each step, as in the paper; the default keeps the EMA teacher.
- ``cps`` (Chen et al. 2021): two networks of the same architecture and different
  initialisations, both trained on the labels; each one's hard labels of the weak view
  supervise the other on the strong view (cross-entropy, symmetric), above ``threshold``
  (default 0: every pixel).

The teacher (or the second CPS network) is a submodule, so checkpoints keep it and resume with
it. The bundle holds both networks (format 2: several models in one file): ``export: teacher``
(default for mean teacher and FixMatch) or ``student`` is the one the predictor uses; for CPS
``export: mean`` (default) averages the two networks' probabilities (``combine: mean``) and
``first`` uses the first. Validation and test run what is exported. The Lightning checkpoint's
own metadata describes the student alone (``load_bundle(x.ckpt)``); the bundle is the file to
map with.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from landlearn.conventions import IGNORE_INDEX
from landlearn.errors import LandlearnError
from landlearn.tasks.base import _memory_format
from landlearn.tasks.segmentation import SegmentationTask
from landlearn.tasks.unlabelled import UnlabelledStream

log = logging.getLogger(__name__)

__all__ = [
    "METHODS",
    "SemiSupervisedSegmentationTask",
    "cps_loss",
    "cutmix_masks",
    "ema_update",
    "rampup",
    "strong_view",
]

METHODS = ("mean_teacher", "fixmatch", "cps")
_THRESHOLD = {"mean_teacher": 0.9, "fixmatch": 0.95, "cps": 0.0}
_EXPORTS = {"mean_teacher": ("teacher", "student"), "fixmatch": ("teacher", "student"),
            "cps": ("mean", "first")}  # fmt: skip


# ---- the pieces, each testable alone ------------------------------------------------------
def rampup(step: int, length: int) -> float:
    """``exp(−5 (1 − t)²)`` with ``t = step / length`` clipped to [0, 1]; 1 when ``length`` ≤ 0."""
    if length <= 0:
        return 1.0
    t = min(max(step / length, 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """``θ_t ← decay · θ_t + (1 − decay) · θ_s`` for parameters; buffers (BN statistics) copied."""
    for pt, ps in zip(teacher.parameters(), student.parameters(), strict=True):
        pt.mul_(decay).add_(ps.detach(), alpha=1.0 - decay)
    for bt, bs in zip(teacher.buffers(), student.buffers(), strict=True):
        bt.copy_(bs)


def cutmix_masks(
    n: int,
    height: int,
    width: int,
    p: float,
    area: tuple[float, float] = (0.1, 0.5),
    device: torch.device | str = "cpu",
) -> Tensor:
    """Boolean ``(n, H, W)``: per image, with probability ``p``, one box of ``area`` share.

    Where the mask is true, image ``i`` takes the pixels of image ``(i + 1) % n``
    (:func:`mix`). Random numbers come from torch's global generator (seeded runs repeat).
    """
    masks = torch.zeros(n, height, width, dtype=torch.bool, device=device)
    for i in range(n):
        if float(torch.rand(())) >= p:
            continue
        share = float(torch.empty(()).uniform_(*area))
        ratio = math.exp(float(torch.empty(()).uniform_(math.log(0.3), math.log(1 / 0.3))))
        h = max(1, min(height, round(math.sqrt(share * height * width * ratio))))
        w = max(1, min(width, round(math.sqrt(share * height * width / ratio))))
        top = int(torch.randint(height - h + 1, ()))
        left = int(torch.randint(width - w + 1, ()))
        masks[i, top : top + h, left : left + w] = True
    return masks


def mix(x: Tensor, masks: Tensor) -> Tensor:
    """Paste image ``i + 1``'s pixels into image ``i`` where ``masks[i]`` (images or targets)."""
    other = x.roll(-1, dims=0)
    m = masks if x.ndim == masks.ndim else masks[:, None]
    return torch.where(m, other, x)


def strong_view(
    x: Tensor, brightness: float = 0.4, contrast: float = 0.4, blur: float = 0.5
) -> Tensor:
    """The strong view: intensity changes only, so the weak view's targets still fit.

    Per image and band, brightness ± ``brightness`` (normalised units) and contrast
    × 1 ± ``contrast`` around the image's band mean; then, with probability ``blur``, a
    Gaussian blur of σ in [0.1, 2] px.
    """
    n, c = x.shape[:2]
    shift = torch.empty(n, c, 1, 1, device=x.device).uniform_(-brightness, brightness)
    scale = torch.empty(n, c, 1, 1, device=x.device).uniform_(1 - contrast, 1 + contrast)
    mean = x.mean(dim=(2, 3), keepdim=True)
    out = (x - mean) * scale + mean + shift
    if blur > 0:
        from kornia.filters import gaussian_blur2d

        pick = torch.rand(n, device=x.device) < blur
        if bool(pick.any()):
            sigma = float(torch.empty(()).uniform_(0.1, 2.0))
            k = 2 * math.ceil(2 * sigma) + 1
            blurred = gaussian_blur2d(out[pick], (k, k), (sigma, sigma))
            out = out.clone()
            out[pick] = blurred
    return out


def cps_loss(logits_a: Tensor, logits_b: Tensor, labels_a: Tensor, labels_b: Tensor) -> Tensor:
    """``CE(a, labels_b) + CE(b, labels_a)``: each network learns the other's hard labels.

    Labels are ``IGNORE_INDEX`` where a network's confidence is below the threshold.
    """
    return F.cross_entropy(logits_a.float(), labels_b, ignore_index=IGNORE_INDEX) + (
        F.cross_entropy(logits_b.float(), labels_a, ignore_index=IGNORE_INDEX)
    )


def _hard(probs: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """Argmax labels, ``IGNORE_INDEX`` below ``threshold``; and the kept-pixel mask."""
    conf, labels = probs.max(1)
    keep = conf >= threshold
    return torch.where(keep, labels, torch.full_like(labels, IGNORE_INDEX)), keep


class SemiSupervisedSegmentationTask(SegmentationTask):
    """A segmenter trained on labelled and unlabelled images (see the module docstring).

    Takes every :class:`~landlearn.tasks.SegmentationTask` argument and:

    Args:
        method: ``mean_teacher``, ``fixmatch`` or ``cps``.
        unsup_weight: weight of the unlabelled loss after the ramp-up.
        rampup_steps: optimiser steps of the sigmoid ramp-up of that weight (0: none).
        ema: the teacher's EMA decay (mean teacher, FixMatch); ``0``: the student itself.
            The first steps use ``min(ema, 1 − 1/(step + 1))`` so the teacher leaves its
            random start quickly.
        threshold: teacher confidence a pixel needs to count; default 0.9 (mean teacher),
            0.95 (FixMatch), 0 (CPS).
        cutmix: probability that an unlabelled image gets a CutMix box (0: off).
        brightness, contrast, blur: the strong view's intensity changes (:func:`strong_view`).
        export: which network the bundle's predictor uses: ``teacher`` / ``student`` (mean
            teacher, FixMatch; default teacher) or ``mean`` / ``first`` (CPS; default mean).

    Raises:
        LandlearnError: an unknown method or export, a weight, decay or threshold out of range.
    """

    task: ClassVar[str] = "segmentation"

    def __init__(
        self,
        model: str = "unet",
        method: str = "mean_teacher",
        unsup_weight: float = 1.0,
        rampup_steps: int = 200,
        ema: float = 0.99,
        threshold: float | None = None,
        cutmix: float = 0.5,
        brightness: float = 0.4,
        contrast: float = 0.4,
        blur: float = 0.5,
        export: str | None = None,
        **kwargs: Any,
    ) -> None:
        """See the class docstring; the segmenter's arguments are passed on."""
        name = "SemiSupervisedSegmentationTask"
        if method not in METHODS:
            raise LandlearnError(
                f"{name} method must be one of {', '.join(METHODS)}, got {method!r}"
            )
        export = export or _EXPORTS[method][0]
        if export not in _EXPORTS[method]:
            raise LandlearnError(
                f"{name} {method} exports {' or '.join(_EXPORTS[method])}, got {export!r}"
            )
        threshold = _THRESHOLD[method] if threshold is None else float(threshold)
        unit = {"ema": ema, "threshold": threshold, "cutmix": cutmix, "blur": blur}
        for label, value in unit.items():
            if not 0.0 <= float(value) <= 1.0:
                raise LandlearnError(f"{name} {label} must be in [0, 1], got {value}")
        if float(unsup_weight) < 0 or int(rampup_steps) < 0:
            raise LandlearnError(f"{name} unsup_weight and rampup_steps must be >= 0")
        self._semisup = {"method": method, "export": export}  # read by configure_models
        super().__init__(model, **kwargs)
        self.save_hyperparameters()
        self.hparams["threshold"] = threshold
        self.hparams["export"] = export
        self._unlabelled: UnlabelledStream | None = None
        self._warned_no_unlabelled = False

    # ---- the networks -------------------------------------------------------------------
    def configure_models(self) -> None:
        """The student (``model``) and its companion: an EMA ``teacher`` or a second ``model2``."""
        super().configure_models()
        student = self.model
        assert student is not None
        if self._semisup["method"] == "cps":
            super().configure_models()  # the same recipe, the next random initialisation
            second = self.model
            assert second is not None
            self.model2: nn.Module = second
            self.model = student
        else:
            self.teacher = copy.deepcopy(student)
            self.teacher.requires_grad_(False)
            self.teacher.eval()

    def _companion(self) -> nn.Module:
        return self.model2 if self._semisup["method"] == "cps" else self.teacher

    def train(self, mode: bool = True) -> SemiSupervisedSegmentationTask:
        """As ``nn.Module.train``, but the EMA teacher always predicts in eval mode."""
        super().train(mode)
        if "teacher" in self._modules:
            self.teacher.eval()
        return self

    def _apply_net(self, net: nn.Module | None, x: Tensor) -> Tensor:
        if net is None:
            raise RuntimeError("model not built; call setup() or pass num_classes/in_channels")
        out: Tensor = net(_memory_format(x, self.hparams.get("channels_last", True)))
        return out

    def forward(self, x: Any) -> Any:
        """Logits of what the bundle exports (for CPS ``mean``: log of the mean probabilities)."""
        if self.model is None:
            raise RuntimeError("model not built; call setup() or pass num_classes/in_channels")
        if isinstance(x, Mapping):
            raise LandlearnError(f"{type(self).__name__} reads one input raster")
        export = self.hparams["export"]
        if export == "teacher":
            return self._apply_net(self.teacher, x)
        if export == "mean":
            pa = torch.softmax(self._apply_net(self.model, x).float(), 1)
            pb = torch.softmax(self._apply_net(self.model2, x).float(), 1)
            return torch.log((pa + pb) / 2 + 1e-12)
        return self._apply_net(self.model, x)

    # ---- the step -----------------------------------------------------------------------
    def on_fit_start(self) -> None:
        """Open the unlabelled stream when the data has one."""
        super().on_fit_start()
        dm = getattr(self.trainer, "datamodule", None)
        has_unlabelled = getattr(dm, "has_unlabelled", None)
        if callable(has_unlabelled) and has_unlabelled():
            self._unlabelled = UnlabelledStream(dm, type(self).__name__)
        else:
            log.info(
                "%s: the data has no unlabelled images; the unlabelled loss uses the labelled "
                "batches' images (their unlabelled pixels)",
                type(self).__name__,
            )

    def _unlabelled_images(self, labelled: Tensor) -> Tensor:
        if self._unlabelled is None:
            return labelled
        x = self.inputs(self._unlabelled.next(self.device))
        if not isinstance(x, Tensor):
            raise LandlearnError(f"{type(self).__name__} reads one input raster")
        return x

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """Supervised loss plus the ramped unlabelled loss of the method."""
        hp = self.hparams
        x = self.inputs(batch)
        if not isinstance(x, Tensor):
            raise LandlearnError(f"{type(self).__name__} reads one input raster")
        y = self._target(batch)
        if not self.losses:
            self.configure_losses(None)
        loss_fn = self.losses[self.head_names[0]]
        method = self._semisup["method"]
        sup = loss_fn(self._apply_net(self.model, x), y)
        if method == "cps":
            sup = sup + loss_fn(self._apply_net(self.model2, x), y)
        xu = self._unlabelled_images(x)
        unsup, kept = self.unlabelled_loss(xu)
        weight = float(hp["unsup_weight"]) * rampup(self.global_step, int(hp["rampup_steps"]))
        total = sup + weight * unsup
        bs = len(x)
        self.log("train_loss", total, on_step=True, on_epoch=True, prog_bar=True, batch_size=bs)
        self.log("train_sup", sup.detach(), on_epoch=True, batch_size=bs)
        self.log("train_unsup", unsup.detach(), on_epoch=True, batch_size=bs)
        self.log("train_unsup_weight", weight, on_epoch=True, batch_size=bs)
        self.log("train_pseudo_kept", kept, on_epoch=True, batch_size=bs)
        return total

    def unlabelled_loss(self, xu: Tensor) -> tuple[Tensor, float]:
        """The method's loss on unlabelled images ``xu`` (weak view), and the pixel share counted.

        It reads no target: whatever masks a batch holds never reach it.
        """
        hp = self.hparams
        method = self._semisup["method"]
        threshold = float(hp["threshold"])
        n, _, h, w = xu.shape
        boxes = cutmix_masks(n, h, w, float(hp["cutmix"]), device=xu.device)
        with torch.no_grad():
            if method == "cps":
                pa = torch.softmax(self._apply_net(self.model, xu).float(), 1)
                pb = torch.softmax(self._apply_net(self.model2, xu).float(), 1)
            else:
                teacher = self.teacher if float(hp["ema"]) > 0 else self.model
                pa = torch.softmax(self._apply_net(teacher, xu).float(), 1)
        strong = mix(
            strong_view(xu, float(hp["brightness"]), float(hp["contrast"]), float(hp["blur"])),
            boxes,
        )
        logits = self._apply_net(self.model, strong).float()
        if method == "cps":
            la, keep_a = _hard(mix(pa, boxes), threshold)
            lb, keep_b = _hard(mix(pb, boxes), threshold)
            logits_b = self._apply_net(self.model2, strong).float()
            kept = float((keep_a.float().mean() + keep_b.float().mean()) / 2)
            return cps_loss(logits, logits_b, la, lb), kept
        target = mix(pa, boxes)
        if method == "fixmatch":
            labels, keep = _hard(target, threshold)
            ce = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="none")
            return ce.sum() / ce.numel(), float(keep.float().mean())
        keep = target.max(1).values >= threshold
        sq = (torch.softmax(logits, 1) - target).pow(2).sum(1)
        return (sq * keep).mean(), float(keep.float().mean())

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Move the EMA teacher towards the student (mean teacher, FixMatch)."""
        if "teacher" not in self._modules:
            return
        ema = float(self.hparams["ema"])
        decay = min(ema, 1.0 - 1.0 / (self.global_step + 1)) if ema > 0 else 0.0
        assert self.model is not None
        ema_update(self.teacher, self.model, decay)

    # ---- the bundle ---------------------------------------------------------------------
    def export_modules(self) -> dict[str, nn.Module]:
        """Both networks, the exported one first (``combine: first`` predicts with it)."""
        student = self.model
        assert student is not None
        if self._semisup["method"] == "cps":
            return {"model": student, "model2": self.model2}
        if self.hparams["export"] == "teacher":
            return {"teacher": self.teacher, "student": student}
        return {"student": student, "teacher": self.teacher}

    def export_meta(self, metrics: dict[str, Any] | None = None) -> Any:
        """The segmenter's metadata with one model entry per network and how they combine."""
        from landlearn.bundle import ModelEntry

        meta = self.bundle_meta(metrics)
        first = meta.models[0]
        meta.models = [
            ModelEntry(name, first.registry, dict(first.kwargs)) for name in self.export_modules()
        ]
        meta.combine = "mean" if self.hparams["export"] == "mean" else "first"
        meta.extra["semisup"] = {
            "method": self._semisup["method"],
            "export": self.hparams["export"],
            "models": list(self.export_modules()),
        }
        return meta
