"""Ensembles of bundles: several models, one prediction (the mean of their probabilities).

The DeepGlobe study averaged the probabilities of independently trained models; ``landlearn map
--ensemble`` does it window by window, and :class:`Ensemble` does it for ``landlearn evaluate``
and Python callers. Each member normalises with its own training statistics, so members trained on
different splits or seeds combine correctly; they must agree on the task, the classes (in order)
and the bands the input carries.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from landlearn.bundle import BundleMeta, MetaView, Predictor, classes_of, load_bundle
from landlearn.errors import LandlearnError
from landlearn.finite import FiniteCounts

__all__ = ["Ensemble", "check_members", "load_ensemble"]


def check_members(
    members: Sequence[Predictor],
    paths: Sequence[str | os.PathLike[str] | None] | None = None,
    *,
    same_bands: bool = True,
) -> None:
    """Refuse members that cannot be averaged with the first one.

    ``same_bands=False`` leaves the bands alone, for callers that read each member's own bands
    (``landlearn map`` picks them from the scene per member).

    Raises:
        LandlearnError: no members, or a member with other classes, task, mode or bands; the
            message names that member's file when ``paths`` are given.
    """
    if not members:
        raise LandlearnError("an ensemble needs at least one bundle")
    where = list(paths) if paths is not None else [None] * len(members)
    first = members[0].meta
    for p, path in zip(members[1:], where[1:], strict=True):
        meta = p.meta
        if meta.task != first.task:
            raise LandlearnError(f"ensemble mixes {first.task} and {meta.task} bundles", path)
        if meta.class_names != first.class_names:
            raise LandlearnError(
                "ensemble members must have the same classes, in order: "
                f"{', '.join(meta.class_names)} vs {', '.join(first.class_names)}",
                path,
            )
        if meta.mode != first.mode:
            raise LandlearnError(f"ensemble mixes {first.mode} and {meta.mode} bundles", path)
        if same_bands and [b.lower() for b in meta.band_names] != [
            b.lower() for b in first.band_names
        ]:
            raise LandlearnError(
                f"ensemble members must take the same bands: {', '.join(meta.band_names)} vs "
                f"{', '.join(first.band_names)}",
                path,
            )


class Ensemble(MetaView):
    """Predictors with one task, classes and bands; predicts the mean of their probabilities.

    Has the :class:`~landlearn.bundle.Predictor` surface that evaluation needs (``meta``,
    ``task``, ``class_names``, ``band_names``, ``predict_proba``, ``predict``); ``meta`` is the
    first member's.
    """

    def __init__(
        self,
        members: Sequence[Predictor],
        paths: Sequence[str | os.PathLike[str] | None] | None = None,
    ) -> None:
        check_members(members, paths)
        self.members = list(members)
        self.meta: BundleMeta = self.members[0].meta  # classes, bands, chip size, …

    def __len__(self) -> int:
        return len(self.members)

    def to(self, device: str | torch.device) -> Ensemble:
        """Move every member to ``device``."""
        for m in self.members:
            m.to(device)
        return self

    @torch.inference_mode()
    def predict_proba(
        self,
        image: torch.Tensor | np.ndarray,
        tta: str | None = None,
        *,
        counts: FiniteCounts | None = None,
    ) -> torch.Tensor:
        """The members' mean class probabilities for a raw-unit batch or one image.

        ``tta="d4"`` averages each member over the 8 flips / quarter turns first. Non-finite
        pixels are no-data as in :meth:`landlearn.bundle.Predictor.predict_proba`; what the
        first member found is added to ``counts`` (or logged), the others see the same input.
        """
        seen = FiniteCounts()
        total = self.members[0].predict_proba(image, tta=tta, counts=seen)
        for m in self.members[1:]:
            total = total + m.predict_proba(image, tta=tta, counts=FiniteCounts()).to(total.device)
        if counts is not None:
            counts.add(seen)
        else:
            seen.warn()
        return total / len(self.members)

    def predict(self, image: torch.Tensor | np.ndarray, tta: str | None = None) -> torch.Tensor:
        """Class indices of the mean probabilities; ``IGNORE_INDEX`` (255) at no-data."""
        return classes_of(self.predict_proba(image, tta=tta))


def load_ensemble(
    paths: Sequence[str | os.PathLike[str]],
    device: str | torch.device = "cpu",
    *,
    max_params: int | float | None = None,
) -> Ensemble:
    """Load bundles (or landlearn ``.ckpt`` files) as one :class:`Ensemble`.

    Each member is checked as :func:`~landlearn.bundle.load_bundle` checks a bundle
    (``max_params`` is its parameter cap); a member's problem names that member's file.

    Raises:
        LandlearnError: a missing or corrupt file, or members that do not match.
    """
    return Ensemble([_member(p, device, max_params) for p in paths], paths)


def _member(
    path: str | os.PathLike[str], device: str | torch.device, max_params: int | float | None
) -> Predictor:
    """Load one member; an error about it names that member's file, never "the bundle"."""
    try:
        return load_bundle(path, device=device, max_params=max_params)
    except LandlearnError as exc:
        if exc.path is not None:
            raise
        raise LandlearnError(f"ensemble member: {exc.message}", path) from None
