"""Per-window predictions with uncertainty: ensembles, D4 test-time augmentation, MC dropout.

The helpers (entropy, MC-dropout switch) live in :mod:`landlearn.uncertainty`, below tasks
and mapping; they are re-exported here.

Every (member, dropout pass, transform) gives one probability sample ``p_s``. A window's output
is the mean probability ``p̄`` plus what its uncertainty bands need, blended like probabilities:

* predictive entropy ``H[p̄]`` (computed from the blended ``p̄`` when a block is final);
* mutual information ``H[p̄] − mean_s H[p_s]`` (MC dropout; Gal & Ghahramani 2016) needs the
  expected entropy ``mean_s H[p_s]``, carried as an extra channel;
* ensemble variance ``Σ_k Var_m[p̄_m,k]`` across the members' mean probabilities, in [0, 1];
* the energy ``E(x) = −logsumexp_y f(x)[y]`` of a JEM bundle (its metadata's ``extra["jem"]``),
  averaged over the samples like the probabilities: higher is less like the training data.

A regression head's samples are values in target units: a window carries their mean and, when
there is more than one sample, their second moment ``mean_s v_s²`` per target; a block's
standard deviation ``sqrt(E[v²] − E[v]²)`` is computed once blended (the spread of the mixture).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from landlearn.bundle import Predictor
from landlearn.d4 import D4, d4_forward, d4_inverse, tta_transforms
from landlearn.errors import LandlearnError
from landlearn.finite import FiniteCounts, screen
from landlearn.uncertainty import energy, entropy, mc_dropout

log = logging.getLogger(__name__)

__all__ = [
    "D4",
    "WindowModel",
    "d4_forward",
    "d4_inverse",
    "energy_reference",
    "entropy",
    "is_jem",
    "mc_dropout",
]


def is_jem(predictor: Predictor) -> bool:
    """Whether a bundle's model is a Joint Energy-based Model (its energy is meaningful)."""
    return isinstance(predictor.meta.extra.get("jem"), Mapping)


def energy_reference(predictor: Predictor) -> dict[str, float]:
    """The validation-energy quantiles a JEM bundle keeps (empty when it has none)."""
    jem = predictor.meta.extra.get("jem")
    ref = jem.get("energy_reference") if isinstance(jem, Mapping) else None
    return {str(k): float(v) for k, v in ref.items()} if isinstance(ref, Mapping) else {}


class WindowModel:
    """One or more predictors turned into a function: windows → blended-ready values.

    Output per window: ``K`` mean probabilities, then the extra channels named in ``extras``
    (``expected_entropy`` with MC dropout, ``variance`` with an ensemble, ``energy`` when every
    member is a JEM); (B, C) for
    classification bundles, (B, C, H, W) for segmentation.
    """

    def __init__(
        self,
        predictors: Sequence[Predictor],
        takes: Sequence[Sequence[int]],
        *,
        tta: str | None = None,
        mc_dropout: int = 0,
        split: Mapping[str, int] | None = None,
        bands: Sequence[Sequence[int] | None] | None = None,
    ) -> None:
        """Set up the members' predictions.

        ``takes``: per member, the stacked bands it reads; ``split``: input name → bands
        for a model that reads a dict (the stacked bands cut in that order), else None;
        ``bands``: per member, the positions of the bundle bands that are read (None: all),
        when an input is absent.
        """
        if mc_dropout < 0:
            raise LandlearnError(f"--mc-dropout must be >= 0, got {mc_dropout}")
        self.predictors = list(predictors)
        self.split = dict(split) if split else None
        self.takes = [torch.as_tensor(list(t), dtype=torch.long) for t in takes]
        chosen = list(bands) if bands is not None else [None] * len(self.predictors)
        self.stats = [
            (p._mean, p._std) if b is None else (p._mean[:, list(b)], p._std[:, list(b)])
            for p, b in zip(self.predictors, chosen, strict=True)
        ]
        self.transforms = tta_transforms(tta)
        self.passes = max(1, mc_dropout)
        self.mc = mc_dropout > 0
        self.task = self.predictors[0].task
        self.regression = self.predictors[0].regression
        self.num_classes = self.predictors[0].meta.num_classes  # targets of a regression head
        self.extras: list[str] = []
        if self.mc and not self.regression:
            self.extras.append("expected_entropy")
        if len(self.predictors) > 1 and not self.regression:
            self.extras.append("variance")
        self.energy = not self.regression and all(is_jem(p) for p in self.predictors)
        if self.energy:
            self.extras.append("energy")
        self.device = self.predictors[0].device
        self.counts = FiniteCounts()
        self.uncertain = self.mc or tta == "d4" or len(self.predictors) > 1
        if self.regression and self.uncertain:
            self.extras.append("second_moment")  # one channel per target
        cuda = self.device.type == "cuda"
        self._autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
        )
        if cuda:
            for p in self.predictors:
                p.model.to(memory_format=torch.channels_last)
        self._channels_last = cuda

    @property
    def channels(self) -> int:
        """Values per pixel (or per window for classification)."""
        if self.regression:
            return self.num_classes * (2 if self.uncertain else 1)
        return self.num_classes + len(self.extras)

    def __call__(
        self, image: np.ndarray, valid: np.ndarray, counted: np.ndarray | None = None
    ) -> np.ndarray:
        """(B, C, H, W) raw units + (B, H, W) valid → (B, channels[, H, W]) float32.

        Non-finite pixels are no-data and absurd values are clamped (:mod:`landlearn.finite`):
        ``valid`` is cleared in place where the input or the output is not finite, and what
        was found inside ``counted`` (default: everywhere) is added to ``self.counts``.
        """
        with torch.inference_mode():
            values, void = self._forward(image, valid, counted)
            valid &= ~void.cpu().numpy()
            return values.float().cpu().numpy()

    def _forward(
        self, image: np.ndarray, valid: np.ndarray, counted: np.ndarray | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(image).to(self.device, non_blocking=True)
        ok = torch.from_numpy(valid).to(self.device, non_blocking=True)
        scope = None if counted is None else torch.from_numpy(counted).to(self.device) & ok
        seg = self.task == "segmentation"
        total: torch.Tensor | None = None
        square: torch.Tensor | None = None
        exp_h: torch.Tensor | None = None
        moment: torch.Tensor | None = None  # Σ_s v_s² of a regression head
        energies: torch.Tensor | None = None  # Σ_s E_s of a JEM
        nodata: torch.Tensor | None = None
        for pred, take, (mu, sd) in zip(self.predictors, self.takes, self.stats, strict=True):
            xm, bad, seen = screen(x[:, take.to(self.device)], mu, sd, ok, scope)
            if nodata is None:  # every member sees the same pixels: count once
                nodata = bad
                self.counts.add(seen)
            if self._channels_last:
                xm = xm.contiguous(memory_format=torch.channels_last)
            member: torch.Tensor | None = None
            mode = mc_dropout(pred.model) if self.mc else contextlib.nullcontext()
            with mode:
                for _ in range(self.passes):
                    for k, flip in self.transforms:
                        p, e = self._sample(pred, xm, k, flip, seg)
                        if e is not None:
                            energies = e if energies is None else energies + e
                        member = p if member is None else member + p
                        if self.regression:
                            moment = p * p if moment is None else moment + p * p
                        elif self.mc:
                            h = entropy(p)
                            assert isinstance(h, torch.Tensor)
                            exp_h = h if exp_h is None else exp_h + h
            assert member is not None
            member = member / (self.passes * len(self.transforms))
            total = member if total is None else total + member
            sq = (member * member).sum(dim=1)
            square = sq if square is None else square + sq
        assert total is not None
        assert square is not None
        m = len(self.predictors)
        mean = total / m
        out = [mean]
        if self.regression:
            if self.uncertain:
                assert moment is not None
                out.append(moment / (m * self.passes * len(self.transforms)))
        elif self.mc:
            assert exp_h is not None
            out.append((exp_h / (m * self.passes * len(self.transforms)))[:, None])
        if m > 1 and not self.regression:  # Σ_k (E[p²] − E[p]²)
            out.append((square / m - (mean * mean).sum(dim=1)).clamp_min(0.0)[:, None])
        if self.energy:
            assert energies is not None
            out.append((energies / (m * self.passes * len(self.transforms)))[:, None])
        values = torch.cat(out, dim=1)
        assert nodata is not None
        bad_out = ~torch.isfinite(values).all(dim=1)
        if seg:
            void = nodata | bad_out
            fresh = bad_out & ~nodata & ok
        else:  # one value per window: a non-finite one voids the window
            void = nodata | bad_out[:, None, None]
            fresh = bad_out[:, None, None] & ~nodata & ok
        if scope is not None:
            fresh = fresh & scope
        self.counts.nonfinite_outputs += int(fresh.sum())
        return torch.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0), void

    def _sample(
        self, pred: Predictor, x: torch.Tensor, k: int, flip: bool, seg: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One sample's probabilities (or values), and its energy when the model is a JEM."""
        xt: Any = d4_forward(x, k, flip)
        if self.split is not None:
            parts = torch.split(xt, list(self.split.values()), dim=1)
            xt = dict(zip(self.split, parts, strict=True))
        with self._autocast:
            logits = pred.model(xt)
        e = None
        if self.regression:
            p = pred.values_from_output(logits)
        else:
            p = pred.probs_from_logits(logits.float())
            if self.energy:
                e = energy(logits.float())
        if not seg:
            return p, e  # (B, K) and (B,): invariant to the transform
        p = d4_inverse(p, k, flip)
        if e is not None:
            e = d4_inverse(e[:, None], k, flip)[:, 0]
        if p.shape[-2:] != x.shape[-2:]:  # a model with a coarser output grid
            p = F.interpolate(p, size=x.shape[-2:], mode="bilinear", align_corners=False)
            if e is not None:
                e = F.interpolate(e[:, None], size=x.shape[-2:], mode="bilinear")[:, 0]
        return p, e
