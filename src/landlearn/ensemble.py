"""Ensembles of bundles: several models, one prediction (the mean of their probabilities).

The DeepGlobe study averaged the probabilities of independently trained models; ``landlearn map
--ensemble`` does it window by window, and :class:`Ensemble` does it for ``landlearn evaluate``
and Python callers. Each member normalises with its own training statistics, so members trained on
different splits or seeds combine correctly; they must agree on the task, the classes (in order)
and the bands the input carries.

``load_ensemble(paths).save("ens.safetensors")`` writes the members into one bundle
(``combine: "mean"``, models ``member0`` …), which :func:`~landlearn.bundle.load_bundle` loads
back as an ``Ensemble`` (``landlearn bundle merge``). ``Ensemble`` and ``check_members`` live in
:mod:`landlearn.bundle.members` (a bundle can hold an ensemble) and are re-exported here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from landlearn.bundle import Ensemble, Predictor, check_members, load_bundle
from landlearn.errors import LandlearnError

__all__ = ["Ensemble", "check_members", "load_ensemble"]


def load_ensemble(
    paths: Sequence[str | os.PathLike[str]],
    device: str | torch.device = "cpu",
    *,
    max_params: int | float | None = None,
) -> Ensemble:
    """Load bundles (or landlearn ``.ckpt`` files) as one :class:`Ensemble`.

    Each member is checked as :func:`~landlearn.bundle.load_bundle` checks a bundle
    (``max_params`` is its parameter cap); a member's problem names that member's file. A
    one-file ensemble among ``paths`` adds each of its members.

    Raises:
        LandlearnError: a missing or corrupt file, or members that do not match.
    """
    members: list[Predictor] = []
    where: list[str | os.PathLike[str] | None] = []
    for path in paths:
        loaded = _member(path, device, max_params)
        found = loaded.members if isinstance(loaded, Ensemble) else [loaded]
        members += found
        where += [path] * len(found)
    return Ensemble(members, where)


def _member(
    path: str | os.PathLike[str], device: str | torch.device, max_params: int | float | None
) -> Predictor | Ensemble:
    """Load one member; an error about it names that member's file, never "the bundle"."""
    try:
        loaded: Predictor | Ensemble = load_bundle(path, device=device, max_params=max_params)
    except LandlearnError as exc:
        if exc.path is not None:
            raise
        raise LandlearnError(f"ensemble member: {exc.message}", path) from None
    return loaded
