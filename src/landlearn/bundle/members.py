"""Several models, one prediction: :class:`Ensemble`, the mean of the members' probabilities.

The DeepGlobe study averaged the probabilities of independently trained models; ``landlearn map
--ensemble`` does it window by window, and :class:`Ensemble` does it for ``landlearn evaluate``
and Python callers. Each member normalises with its own training statistics, so members trained on
different splits or seeds combine correctly; they must agree on the task, the classes (in order)
and the bands the input carries.

It lives beside the bundle because a bundle can hold an ensemble (``combine: "mean"``):
:func:`landlearn.bundle.load_bundle` of such a file returns an ``Ensemble``, and
:meth:`Ensemble.save` writes one (``landlearn bundle merge``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from landlearn.bundle.meta import BundleMeta, ModelEntry
from landlearn.bundle.predictor import Inputs, MetaView, Predictor, classes_of
from landlearn.errors import LandlearnError
from landlearn.finite import FiniteCounts

__all__ = ["Ensemble", "check_members", "merged_meta"]


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
        self.paths = list(paths) if paths is not None else [None] * len(self.members)
        self.meta: BundleMeta = self.members[0].meta  # classes, bands, chip size, …

    def __len__(self) -> int:
        return len(self.members)

    @property
    def device(self) -> torch.device:
        """The first member's device."""
        return self.members[0].device

    def to(self, device: str | torch.device) -> Ensemble:
        """Move every member to ``device``."""
        for m in self.members:
            m.to(device)
        return self

    @torch.inference_mode()
    def predict_proba(
        self,
        image: Inputs,
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

    def predict(self, image: Inputs, tta: str | None = None) -> Any:
        """Class indices of the mean probabilities; ``IGNORE_INDEX`` (255) at no-data.

        With a dict ``{input name: batch}``: ``{first head's name: class indices}``, as
        :meth:`landlearn.bundle.Predictor.predict` gives (members average class heads only).
        """
        classes = classes_of(self.predict_proba(image, tta=tta))
        return {self.meta.heads[0].name: classes} if isinstance(image, Mapping) else classes

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the members into one bundle (``combine: "mean"``, models ``member0`` …).

        Loading it (:func:`~landlearn.bundle.load_bundle`) gives an ``Ensemble`` predicting
        the same; each member keeps its own training statistics.
        """
        from landlearn.bundle.files import save_bundle

        meta = merged_meta(self.members, self.paths)
        models = {entry.name: m.model for entry, m in zip(meta.models, self.members, strict=True)}
        return save_bundle(path, models, meta)


def merged_meta(
    members: Sequence[Predictor], paths: Sequence[str | os.PathLike[str] | None] | None = None
) -> BundleMeta:
    """The metadata of a one-file ensemble of ``members`` (checked with :func:`check_members`).

    The bundle's inputs are the first member's; a member normalising with other statistics
    keeps its own input specs in its model entry. ``extra["members"]`` records where each
    member came from and its test metrics.
    """
    check_members(members, paths)
    first = members[0].meta
    where = list(paths) if paths is not None else [None] * len(members)
    shape = first.in_channels_by_input
    for m, path in zip(members[1:], where[1:], strict=True):
        if m.meta.in_channels_by_input != shape:
            raise LandlearnError(
                f"ensemble members must read the same inputs: {m.meta.in_channels_by_input} vs "
                f"{shape} (input name: bands)",
                path,
            )
    models, sources = [], []
    for i, (m, path) in enumerate(zip(members, where, strict=True)):
        name = f"member{i}"
        own = [] if m.meta.inputs == first.inputs else list(m.meta.inputs)
        models.append(ModelEntry(name, m.meta.model_name, dict(m.meta.model_kwargs), own))
        source: dict[str, Any] = {"name": name, "metrics": m.meta.metrics}
        if path is not None:
            source["file"] = Path(path).name
        sources.append(source)
    return BundleMeta(
        inputs=first.inputs,
        heads=first.heads,
        models=models,
        combine="mean",
        mode=first.mode,
        chip_size=first.chip_size,
        extra={"members": sources},
    )
