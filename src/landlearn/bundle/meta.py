"""What a bundle says about its models: :class:`BundleMeta`, the JSON of the safetensors header.

Format 2 (written now) holds the input specs, the head specs, one or more named models (registry
name and builder arguments) and how they combine (``single``, ``mean`` of the members'
probabilities, or ``first``: the first predicts, the others ride along), the chip size, test
metrics, versions and free-form extras. Format 1 (one model, one ``image`` input, one class
head, flat fields) is upgraded on read: ``BundleMeta`` built from the format-1 keywords
(``task=``, ``band_names=``, ``mean=`` …) derives the specs, and the format-1 names stay as
read-only views of the first input / head / model, so code that reads ``meta.band_names`` or
``meta.num_classes`` works on both.

Upgrade decisions: a format-1 ``std`` of 0 becomes the predictor's floor ``1e-12`` (the spec wants
std > 0; normalisation is bit for bit the same); RGBA ``class_colors`` keep their RGB (a map's
colour table uses RGB only).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from landlearn.bundle_check import validate_meta
from landlearn.colors import default_colors
from landlearn.conventions import BUNDLE_FORMAT_VERSION, IGNORE_INDEX
from landlearn.errors import LandlearnError
from landlearn.schema import HeadSpec, InputSpec

__all__ = ["STD_FLOOR", "BundleMeta", "ModelEntry", "meta_from_specs"]

STD_FLOOR = 1e-12
"""The predictor's floor of a training std (a constant band); format 1 allowed std 0."""

_TASK_OF_KIND = {
    "classification": "classification",
    "multilabel": "classification",
    "segmentation": "segmentation",
    "regression": "regression",
    "pixel_regression": "segmentation",
}


@dataclass
class ModelEntry:
    """One named model of a bundle; its tensors are stored as ``"<name>.<param>"``.

    Args:
        name: the tensor prefix (``model`` for a single model, ``member0`` … in an ensemble).
        registry: the registered model name (``landlearn.models.list_models()``).
        kwargs: builder arguments.
        inputs: this model's own input specs (same names and band counts as the bundle's,
            other statistics), for ensemble members trained on other splits; empty: the
            bundle's.
    """

    name: str = "model"
    registry: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    inputs: list[InputSpec] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``inputs`` only when the model has its own)."""
        out: dict[str, Any] = {"name": self.name, "registry": self.registry, "kwargs": self.kwargs}
        if self.inputs:
            out["inputs"] = [spec.to_dict() for spec in self.inputs]
        return out


@dataclass(init=False)
class BundleMeta:
    """What a bundle says about its models. Mirrors the JSON in the safetensors header.

    Build it from specs (``inputs=``, ``heads=``, ``models=``) or, as format 1 did, from one
    model's flat fields (``task=``, ``model_name=``, ``band_names=``, ``mean=``, ``std=``,
    ``class_names=`` …), which become one ``image`` input, one head named after its kind and
    one model named ``model``.

    Raises:
        LandlearnError: flat fields that do not make valid specs, or neither form complete.
    """

    inputs: list[InputSpec]
    heads: list[HeadSpec]
    models: list[ModelEntry]
    combine: str
    mode: str
    chip_size: int
    metrics: dict[str, Any]
    versions: dict[str, str]
    extra: dict[str, Any]
    format_version: int

    def __init__(
        self,
        task: str | None = None,
        model_name: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        band_names: Sequence[str] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        class_names: Sequence[str] | None = None,
        class_colors: Sequence[Sequence[int]] | None = None,
        mode: str | None = None,
        ignore_index: int = IGNORE_INDEX,
        chip_size: int = 256,
        metrics: dict[str, Any] | None = None,
        versions: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
        format_version: int = BUNDLE_FORMAT_VERSION,
        *,
        inputs: Sequence[InputSpec] | None = None,
        heads: Sequence[HeadSpec] | None = None,
        models: Sequence[ModelEntry | Mapping[str, Any]] | None = None,
        combine: str = "single",
    ) -> None:
        if inputs is None:
            if band_names is None or mean is None or std is None:
                raise LandlearnError("bundle metadata needs inputs, or band_names, mean and std")
            inputs = [_v1_input(band_names, mean, std)]
        if heads is None:
            if task is None or class_names is None:
                raise LandlearnError("bundle metadata needs heads, or task and class_names")
            heads = [_v1_head(task, mode, class_names, class_colors, ignore_index)]
        if models is None:
            if model_name is None:
                raise LandlearnError("bundle metadata needs models, or model_name")
            models = [ModelEntry("model", model_name, dict(model_kwargs or {}))]
        self.inputs = list(inputs)
        self.heads = [_with_colors(h) for h in heads]
        self.models = [m if isinstance(m, ModelEntry) else _entry(m) for m in models]
        self.combine = combine
        default = "multilabel" if self.heads[0].kind == "multilabel" else "multiclass"
        self.mode = mode or default
        self.chip_size = int(chip_size)
        self.metrics = dict(metrics or {})
        self.versions = dict(versions or {})
        self.extra = dict(extra or {})
        self.format_version = int(format_version)

    # ---- format-1 views: the first input (all inputs for bands), head and model -------------

    @property
    def task(self) -> str:
        """``classification``, ``segmentation`` or ``regression``: what the first head predicts."""
        return _TASK_OF_KIND[self.heads[0].kind]

    @property
    def model_name(self) -> str:
        """Registry name of the first model."""
        return self.models[0].registry

    @property
    def model_kwargs(self) -> dict[str, Any]:
        """Builder arguments of the first model."""
        return self.models[0].kwargs

    @property
    def band_names(self) -> list[str]:
        """Band names of every input, in input order (the order of a stacked tensor)."""
        return [b for spec in self.inputs for b in spec.bands]

    @property
    def mean(self) -> list[float]:
        """Training means of every band, in :attr:`band_names` order."""
        return [float(v) for spec in self.inputs for v in (spec.mean or [0.0] * spec.num_bands)]

    @property
    def std(self) -> list[float]:
        """Training standard deviations of every band, in :attr:`band_names` order."""
        return [float(v) for spec in self.inputs for v in (spec.std or [1.0] * spec.num_bands)]

    @property
    def in_channels(self) -> int:
        """Number of input bands, all inputs together."""
        return sum(spec.num_bands for spec in self.inputs)

    @property
    def in_channels_by_input(self) -> dict[str, int]:
        """Input name → band count, in input order."""
        return {spec.name: spec.num_bands for spec in self.inputs}

    @property
    def class_names(self) -> list[str]:
        """Class names of the first head (target names of a regression head)."""
        head = self.heads[0]
        return list(head.targets if head.is_regression else head.classes)

    @property
    def class_colors(self) -> list[list[int]]:
        """RGB per class of the first head."""
        return [list(c) for c in self.heads[0].colors]

    @property
    def num_classes(self) -> int:
        """Number of output classes of the first head."""
        return len(self.class_names)

    @property
    def ignore_index(self) -> int:
        """Unlabelled value of the first head's targets."""
        ignore = self.heads[0].ignore_index
        return IGNORE_INDEX if ignore is None else ignore

    def model_inputs(self, entry: ModelEntry) -> list[InputSpec]:
        """The input specs (statistics) ``entry`` normalises with."""
        return entry.inputs or self.inputs

    def member(self, entry: ModelEntry) -> BundleMeta:
        """The metadata of one model alone (an ensemble member): its inputs, the same heads."""
        return BundleMeta(
            inputs=self.model_inputs(entry),
            heads=self.heads,
            models=[ModelEntry(entry.name, entry.registry, dict(entry.kwargs))],
            mode=self.mode,
            chip_size=self.chip_size,
            metrics=self.metrics,
            versions=self.versions,
            extra=self.extra,
            format_version=self.format_version,
        )

    # ---- JSON -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The format-2 JSON object (a format-1 meta read from an old file is written as 2)."""
        return {
            "format_version": max(self.format_version, BUNDLE_FORMAT_VERSION),
            "inputs": [spec.to_dict() for spec in self.inputs],
            "heads": [head.to_dict() for head in self.heads],
            "models": [m.to_dict() for m in self.models],
            "combine": self.combine,
            "mode": self.mode,
            "chip_size": self.chip_size,
            "metrics": self.metrics,
            "versions": self.versions,
            "extra": self.extra,
        }

    def to_json(self) -> str:
        """Serialise to the JSON stored in the header (format 2)."""
        return json.dumps(self.to_dict(), sort_keys=True, default=_json_default)

    @classmethod
    def from_json(cls, text: str, path: str | os.PathLike[str] | None = None) -> BundleMeta:
        """Parse and check the header JSON (:func:`landlearn.bundle_check.validate_meta`).

        Format 0 / 1 headers are upgraded (see the module docstring).

        Raises:
            LandlearnError: not JSON, or a field of the wrong type, range or length.
        """
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LandlearnError(f"bundle metadata is not valid JSON ({exc.msg})", path) from None
        except RecursionError:
            raise LandlearnError("bundle metadata is nested too deeply to be read", path) from None
        fields = validate_meta(raw, path, palette=default_colors)
        try:
            return cls(**fields)
        except LandlearnError as exc:  # format-1 fields the specs refuse
            raise LandlearnError(f"bundle {exc.message}", path) from None


def meta_from_specs(
    inputs: Sequence[InputSpec],
    heads: Sequence[HeadSpec],
    *,
    model: str,
    model_kwargs: Mapping[str, Any] | None = None,
    mode: str | None = None,
    chip_size: int | None = None,
    metrics: dict[str, Any] | None = None,
) -> BundleMeta:
    """The metadata of one model ``model`` trained on ``inputs`` with ``heads`` (a task's).

    ``in_channels`` is ``{input name: bands}`` for a multi-input model, else the total band
    count; ``num_classes`` the heads' outputs (one logit for a ``binary`` class head). An input
    without statistics gets mean 0 / std 1 (the model saw raw values). The chip size defaults to
    the first input's, else 256.
    """
    from landlearn.models.registry import is_multi_input

    specs = [s if s.has_stats else s.with_stats([0.0] * s.num_bands, [1.0] * s.num_bands)
             for s in inputs]  # fmt: skip
    kwargs = dict(model_kwargs or {})
    multi = is_multi_input(model)
    kwargs["in_channels"] = (
        {s.name: s.num_bands for s in specs} if multi else sum(s.num_bands for s in specs)
    )
    binary = mode == "binary" and len(heads) == 1 and not heads[0].is_regression
    kwargs["num_classes"] = 1 if binary else sum(h.out_channels for h in heads)
    given = chip_size if chip_size is not None and chip_size > 0 else None
    chip = given or next((s.chip_size for s in specs if s.chip_size), None) or 256
    return BundleMeta(
        inputs=specs,
        heads=list(heads),
        models=[ModelEntry("model", model, kwargs)],
        mode=mode,
        chip_size=chip,
        metrics=metrics or {},
    )


def _entry(data: Mapping[str, Any]) -> ModelEntry:
    return ModelEntry(
        str(data["name"]),
        str(data["registry"]),
        dict(data.get("kwargs") or {}),
        list(data.get("inputs") or []),
    )


def _v1_input(bands: Sequence[str], mean: Sequence[float], std: Sequence[float]) -> InputSpec:
    floored = [float(s) if s > 0 else STD_FLOOR for s in std]
    return InputSpec("image", "raster", bands=list(bands), mean=list(mean), std=floored)


def _v1_head(
    task: str,
    mode: str | None,
    classes: Sequence[str],
    colors: Sequence[Sequence[int]] | None,
    ignore_index: int,
) -> HeadSpec:
    kind = "multilabel" if task == "classification" and mode == "multilabel" else task
    rgb = [[int(v) for v in c[:3]] for c in colors or []][: len(classes)]
    if len(rgb) < len(classes):
        rgb += default_colors(len(classes))[len(rgb) :]
    return HeadSpec(kind, kind, classes=list(classes), colors=rgb, ignore_index=ignore_index)


def _with_colors(head: HeadSpec) -> HeadSpec:
    """``head`` with the default palette when a class head names no colours."""
    if head.is_regression or head.colors:
        return head
    from dataclasses import replace

    return replace(head, colors=[tuple(c[:3]) for c in default_colors(len(head.classes))])


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray | torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
