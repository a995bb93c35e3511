"""A bundle loaded for inference: raw-unit inputs in, probabilities (or one output per head) out.

``predict_proba(x)`` takes one tensor (bands of every input stacked, as ``meta.band_names``) and
keeps format 1's behaviour bit for bit; it also takes a dict ``{input name: tensor}``.
``predict(dict)`` returns ``{head name: output}``: class indices of a class head, values in
target units of a regression head. Each input is normalised with its own training statistics
and screened for non-finite values (:mod:`landlearn.finite`); a multi-input model (its module
has ``input_names``) is called with the dict, a single-input model with the tensor.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from landlearn.bundle.meta import STD_FLOOR, BundleMeta
from landlearn.conventions import IGNORE_INDEX
from landlearn.d4 import d4_forward, d4_inverse, d4_mean, tta_transforms
from landlearn.errors import LandlearnError
from landlearn.finite import FiniteCounts, screen, void_nonfinite
from landlearn.schema import HeadSpec, InputSpec

log = logging.getLogger(__name__)

__all__ = ["MetaView", "Predictor", "classes_of"]

Inputs = torch.Tensor | np.ndarray | Mapping[str, torch.Tensor | np.ndarray]


class MetaView:
    """What a loaded model says about itself, read from its ``meta`` (Predictor, Ensemble)."""

    meta: BundleMeta

    @property
    def task(self) -> str:
        """``classification`` or ``segmentation``."""
        return self.meta.task

    @property
    def class_names(self) -> list[str]:
        """Class names, index order."""
        return self.meta.class_names

    @property
    def band_names(self) -> list[str]:
        """Band names, the order the model expects."""
        return self.meta.band_names


def _stats(spec: InputSpec, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) of one input, shaped to broadcast over (B, C, H, W) or a (B, C) table."""
    c = spec.num_bands
    shape = (1, c) if spec.kind == "table" else (1, c, 1, 1)
    mean = torch.tensor(spec.mean or [0.0] * c, dtype=torch.float32).view(shape)
    std = torch.tensor(spec.std or [1.0] * c, dtype=torch.float32).view(shape)
    return mean.to(device), std.clamp_min(STD_FLOOR).to(device)


class Predictor(MetaView):
    """A bundle loaded for inference: raw-unit images in, probabilities out.

    ``predict_proba`` normalises with the bundle's training statistics, so callers pass images in
    the units of the data the model was trained on, bands ordered as ``meta.band_names``.
    """

    def __init__(
        self, model: nn.Module, meta: BundleMeta, device: str | torch.device = "cpu"
    ) -> None:
        self.meta = meta
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        c = meta.in_channels
        self._mean = torch.tensor(meta.mean, dtype=torch.float32).view(1, c, 1, 1)
        self._std = torch.tensor(meta.std, dtype=torch.float32).view(1, c, 1, 1).clamp_min(1e-12)
        self._mean, self._std = self._mean.to(self.device), self._std.to(self.device)
        self._by_input = {spec.name: _stats(spec, self.device) for spec in meta.inputs}
        self.strict = False
        """Refuse an absent input even when the model was trained to do without it."""
        self.last_missing: tuple[str, ...] = ()
        """Inputs absent from the last dict batch (predicted without them)."""
        self._warned: set[tuple[str, ...]] = set()

    @property
    def multi_input(self) -> bool:
        """Whether the model reads a dict of named inputs (its module has ``input_names``)."""
        return bool(getattr(self.model, "input_names", None))

    def to(self, device: str | torch.device) -> Predictor:
        """Move the model and statistics to ``device``."""
        self.device = torch.device(device)
        self.model.to(self.device)
        self._mean, self._std = self._mean.to(self.device), self._std.to(self.device)
        self._by_input = {k: (m.to(self.device), s.to(self.device))
                          for k, (m, s) in self._by_input.items()}  # fmt: skip
        return self

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) raw units → normalised float32 on the predictor's device."""
        image = image.to(self.device, dtype=torch.float32, non_blocking=True)
        return (image - self._mean) / self._std

    def logits(self, image: torch.Tensor, normalized: bool = False) -> torch.Tensor:
        """Model output for a batch; (B, K, H, W) for segmentation, (B, K) for classification."""
        if image.ndim == 3:
            image = image.unsqueeze(0)
        if image.shape[1] != self.meta.in_channels:
            raise LandlearnError(
                f"expected {self.meta.in_channels} bands ({', '.join(self.band_names)}), "
                f"got {image.shape[1]}; check band_names"
            )
        x = image.to(self.device, dtype=torch.float32) if normalized else self.normalize(image)
        return self.model(x)

    def probs_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax, or sigmoid for multilabel / binary single-logit models."""
        if self.meta.mode == "multilabel" or logits.shape[1] == 1:
            p = torch.sigmoid(logits.float())
            if logits.shape[1] == 1:  # binary with one logit → two-class probabilities
                p = torch.cat([1 - p, p], dim=1)
            return p
        return torch.softmax(logits.float(), dim=1)

    @property
    def regression(self) -> bool:
        """Whether the first head predicts values (``regression`` / ``pixel_regression``)."""
        return self.meta.heads[0].is_regression

    def values_from_output(self, output: Any) -> torch.Tensor:
        """The first head's values in target units (means) from a model output."""
        head = self.meta.heads[0]
        return self._head_value(head, self._head_outputs(output)[head.name])

    @torch.inference_mode()
    def predict_proba(
        self,
        image: Inputs,
        tta: str | None = None,
        *,
        counts: FiniteCounts | None = None,
    ) -> torch.Tensor:
        """Class probabilities for a raw-unit batch (B, C, H, W) or one image (C, H, W).

        ``image`` may also be a dict ``{input name: batch}`` (each input in its own units);
        the probabilities are then those of the first head, which must be a class head.

        ``tta="d4"`` averages the probabilities over the 8 flips / quarter turns of the image
        (maps are turned back first; see :mod:`landlearn.d4`), at 8× the inference cost.

        Non-finite pixels are no-data (:mod:`landlearn.finite`): never fed to the model, NaN
        probabilities (a whole NaN row for a scene classifier); values beyond ±50 training std
        are clamped there. What was found is added to ``counts`` when given, else logged.

        Raises:
            LandlearnError: a wrong band count, a missing input, or a regression first head.
        """
        if isinstance(image, Mapping):
            head = self.meta.heads[0]
            if head.is_regression:
                raise LandlearnError(
                    f"head {head.name!r} is a {head.kind} head; use predict() for its values"
                )
            return self._predict_dict(image, tta, counts, probs_only=True)[head.name]
        x = self._batch(image)
        spatial = self.task == "segmentation"
        z, nodata, seen = screen(x.to(self.device), self._mean, self._std, per_sample=not spatial)
        probs = d4_mean(
            lambda t: self.probs_from_logits(self.model(t)), z, spatial=spatial, tta=tta
        )
        probs, _, seen.nonfinite_outputs = void_nonfinite(probs, nodata, spatial)
        _report(seen, counts)
        return probs

    def _batch(self, image: torch.Tensor | np.ndarray) -> torch.Tensor:
        """A (B, C, H, W) tensor with the bundle's band count."""
        if isinstance(image, np.ndarray):
            image = torch.from_numpy(np.ascontiguousarray(image))
        if image.ndim == 3:
            image = image.unsqueeze(0)
        if image.shape[1] != self.meta.in_channels:
            raise LandlearnError(
                f"expected {self.meta.in_channels} bands ({', '.join(self.band_names)}), "
                f"got {image.shape[1]}; check band_names"
            )
        return image

    def predict(self, image: Inputs, tta: str | None = None) -> Any:
        """Class indices: (B, H, W) segmentation, (B,) classification, (B, K) 0/1 multi-label.

        With a dict ``{input name: batch}``: ``{head name: output}``, class indices of class
        heads, values in target units of regression heads. No-data (non-finite input, see
        :meth:`predict_proba`) is ``IGNORE_INDEX`` (255) in class outputs, NaN in values.

        Raises:
            LandlearnError: a wrong band count or a missing input.
        """
        if isinstance(image, Mapping):
            with torch.inference_mode():
                out = self._predict_dict(image, tta, None, probs_only=False)
            return {
                h.name: out[h.name]
                if h.is_regression
                else _decisions(out[h.name], h.kind == "multilabel")
                for h in self.meta.heads
            }
        return _decisions(self.predict_proba(image, tta=tta), self.meta.mode == "multilabel")

    # ---- dict inputs ------------------------------------------------------------------------

    @property
    def can_do_without(self) -> bool:
        """Whether the model predicts with an input absent.

        True for a fusion model trained with modality dropout and not strict (by its own
        option or :attr:`strict`).
        """
        fusion = getattr(self.model, "fusion", None)
        if fusion is None or self.strict or bool(getattr(fusion, "strict", True)):
            return False
        return float(getattr(fusion, "modality_dropout", 0.0)) > 0

    def _inputs(self, image: Mapping[str, torch.Tensor | np.ndarray]) -> dict[str, torch.Tensor]:
        """The bundle's inputs from ``image``, batched and checked (other keys are ignored).

        An absent input is allowed when :attr:`can_do_without`; its name goes to
        :attr:`last_missing` and a warning says so once per set of absent inputs.
        """
        names = [spec.name for spec in self.meta.inputs]
        missing = [n for n in names if n not in image or image[n] is None]
        if missing and (len(missing) == len(names) or not self.can_do_without):
            why = ""
            if getattr(self.model, "fusion", None) is not None and len(missing) < len(names):
                why = (
                    " and the predictor is strict"
                    if self.strict
                    else " and the model was not trained with modality_dropout (or is strict)"
                )
            raise LandlearnError(
                f"missing input {missing[0]!r}; the bundle reads {', '.join(names)} "
                f"(got {', '.join(n for n in map(str, image) if image[n] is not None) or 'none'})"
                f"{why}"
            )
        self.last_missing = tuple(missing)
        if missing and self.last_missing not in self._warned:
            self._warned.add(self.last_missing)
            log.warning(
                "predicting without input(s) %s: the model was trained with modality dropout "
                "for this; outputs say so (missing_inputs)",
                ", ".join(missing),
            )
        out = {}
        for spec in self.meta.inputs:
            if spec.name in missing:
                continue
            x = image[spec.name]
            if isinstance(x, np.ndarray):
                x = torch.from_numpy(np.ascontiguousarray(x))
            if x.ndim == (1 if spec.kind == "table" else 3):
                x = x.unsqueeze(0)
            if x.ndim < 2 or x.shape[1] != spec.num_bands:
                raise LandlearnError(
                    f"input {spec.name!r}: expected {spec.num_bands} bands "
                    f"({', '.join(spec.bands)}), got shape {tuple(x.shape)}; check band_names"
                )
            out[spec.name] = x.to(self.device)
        return out

    def _predict_dict(
        self,
        image: Mapping[str, torch.Tensor | np.ndarray],
        tta: str | None,
        counts: FiniteCounts | None,
        *,
        probs_only: bool,
    ) -> dict[str, torch.Tensor]:
        """Per head: probabilities (class heads) or values in units (regression heads)."""
        raw = self._inputs(image)
        normed: dict[str, torch.Tensor] = {}
        pixels: torch.Tensor | None = None  # (B, H, W) no-data of the raster inputs
        samples: torch.Tensor | None = None  # (B,) no-data of the table inputs
        seen = FiniteCounts()
        spatial_out = any(h.is_spatial for h in self.meta.heads)
        for spec in self.meta.inputs:
            if spec.name not in raw:  # absent, allowed (can_do_without)
                continue
            mean, std = self._by_input[spec.name]
            z, bad, found = screen(raw[spec.name], mean, std, per_sample=not spatial_out)
            normed[spec.name] = z
            seen.add(_summed(seen, found))
            if bad.ndim == 1:
                samples = bad if samples is None else samples | bad
            else:
                pixels = bad if pixels is None else pixels | bad
        heads = self.meta.heads[:1] if probs_only else self.meta.heads
        total: dict[str, torch.Tensor] = {}
        transforms = tta_transforms(tta)
        for k, flip in transforms:
            turned = {n: v if v.ndim < 4 else d4_forward(v, k, flip) for n, v in normed.items()}
            outputs = self._head_outputs(self._call(turned))
            for head in heads:
                value = self._head_value(head, outputs[head.name])
                if head.is_spatial:
                    value = d4_inverse(value, k, flip)
                total[head.name] = value if head.name not in total else total[head.name] + value
        out = {}
        for head in heads:
            value = total[head.name] / len(transforms)
            mask = _mask(pixels, samples, head.is_spatial, value)
            value, _, bad_out = void_nonfinite(value, mask, head.is_spatial)
            if head is self.meta.heads[0]:
                seen.nonfinite_outputs = bad_out
            out[head.name] = value
        _report(seen, counts)
        return out

    def _call(self, normed: dict[str, torch.Tensor]) -> Any:
        if self.multi_input:
            return self.model(normed)
        if len(normed) != 1:
            raise LandlearnError(
                f"model {self.meta.model_name!r} reads one input but the bundle has "
                f"{len(normed)}; stack them or use a multi-input model"
            )
        return self.model(next(iter(normed.values())))

    def _head_outputs(self, output: Any) -> dict[str, torch.Tensor]:
        """Model output → ``{head name: raw output}`` (a dict output, or channels in head order)."""
        heads = self.meta.heads
        if isinstance(output, Mapping):
            return {h.name: output[h.name] for h in heads}
        if len(heads) == 1:
            return {heads[0].name: output}
        parts = torch.split(output, [h.out_channels for h in heads], dim=1)
        return {h.name: p for h, p in zip(heads, parts, strict=True)}

    def _head_value(self, head: HeadSpec, raw: torch.Tensor) -> torch.Tensor:
        """Probabilities of a class head; means in target units of a regression head."""
        if not head.is_regression:
            if head is self.meta.heads[0]:
                return self.probs_from_logits(raw)
            return torch.sigmoid(raw.float()) if head.kind == "multilabel" else raw.softmax(1)
        means = raw[:, : head.num_outputs].float()
        if head.mean is None or head.std is None:
            return means
        shape = (1, -1) + (1,) * (means.ndim - 2)
        mean = torch.tensor(head.mean, device=means.device).view(shape)
        std = torch.tensor(head.std, device=means.device).view(shape)
        return means * std + mean


def _summed(total: FiniteCounts, found: FiniteCounts) -> FiniteCounts:
    """Counts of one more input: the pixels are counted once (every input shares the grid)."""
    if total.pixels:
        found.pixels = 0
    return found


def _mask(
    pixels: torch.Tensor | None, samples: torch.Tensor | None, spatial: bool, value: torch.Tensor
) -> torch.Tensor:
    """No-data of one head's output: per pixel (spatial) or per sample, from every input."""
    if spatial:
        b, h, w = value.shape[0], *value.shape[-2:]
        mask = torch.zeros(b, h, w, dtype=torch.bool, device=value.device)
        if pixels is not None:
            mask = mask | pixels
        return mask if samples is None else mask | samples.view(-1, 1, 1)
    mask = torch.zeros(value.shape[0], dtype=torch.bool, device=value.device)
    if pixels is not None:
        mask = mask | pixels.flatten(1).any(dim=1)
    return mask if samples is None else mask | samples


def _report(seen: FiniteCounts, counts: FiniteCounts | None) -> None:
    if counts is not None:
        counts.add(seen)
    else:
        seen.warn()


def _decisions(probs: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """Class indices, or for a multi-label head 0/1 per class (probability >= 0.5)."""
    if multilabel:  # (B, K[, H, W]); no-data stays IGNORE_INDEX
        decided = (probs >= 0.5).to(torch.uint8)
        return torch.where(torch.isnan(probs), IGNORE_INDEX, decided).to(torch.uint8)
    return classes_of(probs)


def classes_of(probs: torch.Tensor) -> torch.Tensor:
    """Argmax over the class dimension; ``IGNORE_INDEX`` where the probabilities are NaN."""
    void = torch.isnan(probs).any(dim=1)
    return torch.where(void, IGNORE_INDEX, torch.nan_to_num(probs, nan=-1.0).argmax(dim=1))
