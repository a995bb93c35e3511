"""The data contract: what a model reads (``InputSpec``) and what it writes (``HeadSpec``).

Both are frozen dataclasses holding plain values, validated on construction (sequences given
as lists are stored as tuples, so specs compare and hash by value), with a JSON round trip
(``to_dict`` / ``from_dict``) that the model bundle stores. Datasets and datamodules expose
them; tasks, bundles, predictors, maps and reports read them instead of branching on
"classification or segmentation" (``DESIGN.md``, "named inputs, named heads").

- ``InputSpec``: the sample key (``name``), ``kind`` (``raster`` | ``table`` | ``photos``), band
  or column names, per-band statistics of the training split in raw units, the no-data value,
  and the chip size or ground resolution of rasters.
- ``HeadSpec``: the head's name, ``kind`` (``classification`` | ``multilabel`` | ``segmentation``
  | ``regression`` | ``pixel_regression``), class names and colours (class heads) or target
  names, units and training-split statistics (regression heads), the sample key of its target
  and, for class heads, the ignore index (``IGNORE_INDEX``). Regression heads mark unknown
  targets with NaN instead, and may predict a variance (``variance=True``: the model gives a
  mean and a log-variance per target).

A NaN ``nodata`` is written to JSON as the string ``"nan"`` (JSON has no NaN).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from landlearn.conventions import IGNORE_INDEX
from landlearn.errors import LandlearnError
from landlearn.registry import did_you_mean

__all__ = [
    "CLASS_HEAD_KINDS",
    "DEFAULT_TARGET_KEYS",
    "HEAD_KINDS",
    "INPUT_KINDS",
    "REGRESSION_HEAD_KINDS",
    "HeadSpec",
    "InputSpec",
    "specs_by_name",
]

INPUT_KINDS = ("raster", "table", "photos")
CLASS_HEAD_KINDS = ("classification", "multilabel", "segmentation")
REGRESSION_HEAD_KINDS = ("regression", "pixel_regression")
HEAD_KINDS = CLASS_HEAD_KINDS + REGRESSION_HEAD_KINDS
DEFAULT_TARGET_KEYS = {
    "classification": "label",
    "multilabel": "label",
    "segmentation": "mask",
    "regression": "target",
    "pixel_regression": "target",
}
"""The sample key a head's target sits under unless ``target_key`` says otherwise."""

Where = str | os.PathLike[str] | None


def _choose(value: Any, allowed: Sequence[str], owner: str) -> str:
    """``value`` if it is one of ``allowed``; else an error naming the nearest allowed one."""
    if isinstance(value, str) and value in allowed:
        return value
    tip = did_you_mean(str(value), allowed, otherwise=f"expected one of {', '.join(allowed)}")
    raise LandlearnError(f"{owner}: unknown kind {value!r}; {tip}")


def _names(values: Iterable[Any] | None, what: str, owner: str) -> tuple[str, ...]:
    if values is None:
        return ()
    if isinstance(values, str):
        raise LandlearnError(f"{owner}: {what} must be a list of names, got the string {values!r}")
    names = tuple(values)
    bad = [v for v in names if not isinstance(v, str) or not v]
    if bad:
        raise LandlearnError(f"{owner}: {what} must be non-empty strings, got {bad[0]!r}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise LandlearnError(
            f"{owner}: {what} repeat {', '.join(map(repr, dupes))}; names are keys"
        )
    return names


def _floats(values: Iterable[Any] | None, what: str, owner: str) -> tuple[float, ...] | None:
    if values is None:
        return None
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError) as exc:
        raise LandlearnError(f"{owner}: {what} must be numbers ({exc})") from exc
    if not all(math.isfinite(v) for v in out):
        raise LandlearnError(f"{owner}: {what} must be finite, got {list(out)}")
    return out


def _stats(
    mean: Iterable[Any] | None, std: Iterable[Any] | None, n: int, what: str, owner: str
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """Validated ``(mean, std)``: both or neither, one value per ``what``, std > 0."""
    m, s = _floats(mean, "mean", owner), _floats(std, "std", owner)
    if (m is None) != (s is None):
        raise LandlearnError(f"{owner}: give both mean and std, or neither")
    if m is not None and s is not None:
        if len(m) != n or len(s) != n:
            raise LandlearnError(
                f"{owner}: mean / std have {len(m)} / {len(s)} values for {n} {what}; "
                f"give one per {what[:-1]}"
            )
        if any(v <= 0 for v in s):
            raise LandlearnError(f"{owner}: std must be positive, got {list(s)}")
    return m, s


def _positive_int(value: Any, what: str, owner: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LandlearnError(f"{owner}: {what} must be a positive integer, got {value!r}")
    return int(value)


def _check_keys(cls: type, data: Any, where: Where) -> dict[str, Any]:
    """``data`` as a dict whose keys are fields of ``cls``; ``name`` and ``kind`` required."""
    title = cls.__name__
    if not isinstance(data, Mapping):
        raise LandlearnError(f"{title} must be a mapping, got {type(data).__name__}", where)
    fields = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in fields:
            tip = did_you_mean(str(key), fields)
            raise LandlearnError(f"unknown {title} key {key!r}; {tip}", where)
    missing = [k for k in ("name", "kind") if k not in data]
    if missing:
        raise LandlearnError(f"{title} needs {' and '.join(missing)}", where)
    return dict(data)


def _check_name(name: Any, title: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise LandlearnError(f"{title} name must be a non-empty string, got {name!r}")
    return name


@dataclass(frozen=True)
class InputSpec:
    """One input of a model: the sample key it is read from and how to normalise it.

    Args:
        name: the sample key (``image``, ``s1``, ``meta`` ...).
        kind: ``raster`` (``C×H×W`` on a grid), ``table`` (a vector of ``F`` columns) or
            ``photos`` (ground photographs, ``C×H×W`` without georeference).
        bands: band names (rasters, photos) or column names (tables), in tensor order.
        mean: per-band / per-column mean of the training split, in raw units.
        std: per-band / per-column standard deviation of the training split, > 0.
        nodata: raw value that means "no data" (NaN allowed), or None.
        chip_size: side in pixels of the chips a raster model was trained on.
        resolution: ground sampling distance in CRS units (metres for projected grids).
    """

    name: str
    kind: str = "raster"
    bands: Sequence[str] = ()
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    nodata: float | None = None
    chip_size: int | None = None
    resolution: float | None = None

    def __post_init__(self) -> None:
        """Validate and turn lists into tuples.

        Raises:
            LandlearnError: bad kind (with the nearest one), no bands, stats of the wrong
                length, a non-positive std, chip size or resolution.
        """
        name = _check_name(self.name, "input")
        owner = f"input {name!r}"
        kind = _choose(self.kind, INPUT_KINDS, owner)
        bands = _names(self.bands, "bands", owner)
        if not bands:
            raise LandlearnError(f"{owner}: give its band or column names (bands: [...])")
        what = "columns" if kind == "table" else "bands"
        mean, std = _stats(self.mean, self.std, len(bands), what, owner)
        nodata = None if self.nodata is None else _nodata(self.nodata, owner)
        chip = _positive_int(self.chip_size, "chip_size", owner)
        if chip is not None and kind == "table":
            raise LandlearnError(f"{owner}: a table input has no chip_size")
        res = None if self.resolution is None else float(self.resolution)
        if res is not None and not (math.isfinite(res) and res > 0):
            raise LandlearnError(f"{owner}: resolution must be positive, got {self.resolution!r}")
        fixed = {"kind": kind, "bands": bands, "mean": mean, "std": std, "nodata": nodata,
                 "chip_size": chip, "resolution": res}  # fmt: skip
        for key, value in fixed.items():
            object.__setattr__(self, key, value)

    @property
    def num_bands(self) -> int:
        """Channels of a raster or photo input; columns of a table."""
        return len(self.bands)

    @property
    def has_stats(self) -> bool:
        """Whether training-split statistics are known."""
        return self.mean is not None

    def with_stats(self, mean: Sequence[float], std: Sequence[float]) -> InputSpec:
        """A copy holding these training-split statistics (validated)."""
        return dataclasses.replace(self, mean=tuple(mean), std=tuple(std))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists, floats; NaN no-data as ``"nan"``)."""
        nan = self.nodata is not None and math.isnan(self.nodata)
        nodata: float | str | None = "nan" if nan else self.nodata
        return {
            "name": self.name,
            "kind": self.kind,
            "bands": list(self.bands),
            "mean": None if self.mean is None else list(self.mean),
            "std": None if self.std is None else list(self.std),
            "nodata": nodata,
            "chip_size": self.chip_size,
            "resolution": self.resolution,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: Where = None) -> InputSpec:
        """Rebuild from :meth:`to_dict` output; ``where`` (a file) prefixes error messages.

        Raises:
            LandlearnError: not a mapping, unknown or missing keys, or invalid values.
        """
        values = _check_keys(cls, data, where)
        try:
            return cls(**values)
        except LandlearnError as exc:
            raise LandlearnError(exc.message, where or exc.path) from exc


def _nodata(value: Any, owner: str) -> float:
    if isinstance(value, str) and value.lower() == "nan":
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LandlearnError(f"{owner}: nodata must be a number, 'nan' or null, got {value!r}")
    return float(value)


def _colors(values: Iterable[Any] | None, n: int, owner: str) -> tuple[tuple[int, int, int], ...]:
    if values is None:
        return ()
    out = []
    for c in values:
        ok = isinstance(c, Sequence) and not isinstance(c, str) and len(c) == 3
        ok = ok and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in c)
        if not ok:
            raise LandlearnError(f"{owner}: a colour is 3 integers 0-255 (R, G, B), got {c!r}")
        out.append((int(c[0]), int(c[1]), int(c[2])))
    if out and len(out) != n:
        raise LandlearnError(f"{owner}: {len(out)} colours for {n} classes; give one per class")
    return tuple(out)


@dataclass(frozen=True)
class HeadSpec:
    """One output of a model and the sample key of its target.

    Args:
        name: the head's name (the key of its output and of its metrics).
        kind: ``classification``, ``multilabel``, ``segmentation`` (class heads) or
            ``regression``, ``pixel_regression`` (regression heads).
        classes: class names, in logit order (class heads).
        colors: one ``(R, G, B)`` per class, for maps and figures (optional).
        targets: target names, in output order (regression heads).
        units: one unit per target (``"%"``, ``"m"``; optional).
        mean: per-target mean of the training split (regression; the model predicts
            standardised targets and ``mean + std * output`` is in units).
        std: per-target standard deviation of the training split, > 0.
        variance: the model also predicts a log-variance per target (regression heads).
        target_key: sample key of the target; default ``label`` / ``mask`` / ``target`` by kind.
        ignore_index: unlabelled value of class targets (``IGNORE_INDEX``); None for regression,
            whose unknown targets are NaN.
    """

    name: str
    kind: str
    classes: Sequence[str] = ()
    colors: Sequence[Sequence[int]] = ()
    targets: Sequence[str] = ()
    units: Sequence[str] = ()
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    variance: bool = False
    target_key: str = ""
    ignore_index: int | None = field(default=None)

    def __post_init__(self) -> None:
        """Validate, fill defaults by kind, and turn lists into tuples.

        Raises:
            LandlearnError: bad kind (with the nearest one), class fields on a regression head
                or the reverse, lengths that do not match, an ignore index that is a class.
        """
        name = _check_name(self.name, "head")
        owner = f"head {name!r}"
        kind = _choose(self.kind, HEAD_KINDS, owner)
        classes = _names(self.classes, "classes", owner)
        targets = _names(self.targets, "targets", owner)
        units = tuple(self.units or ())
        if any(not isinstance(u, str) for u in units):
            raise LandlearnError(f"{owner}: units must be strings, got {list(units)}")
        key = self.target_key or DEFAULT_TARGET_KEYS[kind]
        if not isinstance(key, str):
            raise LandlearnError(f"{owner}: target_key must be a string, got {key!r}")
        if kind in CLASS_HEAD_KINDS:
            fixed = _class_fields(self, kind, classes, targets, units, owner)
        else:
            fixed = _regression_fields(self, classes, targets, units, owner)
        fixed.update(kind=kind, classes=classes, targets=targets, units=units, target_key=key)
        for k, v in fixed.items():
            object.__setattr__(self, k, v)

    @property
    def is_regression(self) -> bool:
        """``regression`` or ``pixel_regression``."""
        return self.kind in REGRESSION_HEAD_KINDS

    @property
    def is_spatial(self) -> bool:
        """The head predicts per pixel (``segmentation``, ``pixel_regression``)."""
        return self.kind in ("segmentation", "pixel_regression")

    @property
    def num_outputs(self) -> int:
        """Classes of a class head; targets of a regression head (means only)."""
        return len(self.targets) if self.is_regression else len(self.classes)

    @property
    def out_channels(self) -> int:
        """Model output channels for this head: twice the targets when it predicts a variance."""
        return self.num_outputs * (2 if self.variance else 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists, ints, floats)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "classes": list(self.classes),
            "colors": [list(c) for c in self.colors],
            "targets": list(self.targets),
            "units": list(self.units),
            "mean": None if self.mean is None else list(self.mean),
            "std": None if self.std is None else list(self.std),
            "variance": self.variance,
            "target_key": self.target_key,
            "ignore_index": self.ignore_index,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: Where = None) -> HeadSpec:
        """Rebuild from :meth:`to_dict` output; ``where`` (a file) prefixes error messages.

        Raises:
            LandlearnError: not a mapping, unknown or missing keys, or invalid values.
        """
        values = _check_keys(cls, data, where)
        try:
            return cls(**values)
        except LandlearnError as exc:
            raise LandlearnError(exc.message, where or exc.path) from exc


def _class_fields(
    head: HeadSpec,
    kind: str,
    classes: tuple[str, ...],
    targets: tuple[str, ...],
    units: tuple[str, ...],
    owner: str,
) -> dict[str, Any]:
    if targets or units or head.mean is not None or head.std is not None or head.variance:
        raise LandlearnError(
            f"{owner}: a {kind} head has classes, not targets, units, mean, std or variance"
        )
    least = 1 if kind == "multilabel" else 2
    if len(classes) < least:
        raise LandlearnError(f"{owner}: a {kind} head needs at least {least} class names")
    ignore = IGNORE_INDEX if head.ignore_index is None else head.ignore_index
    if isinstance(ignore, bool) or not isinstance(ignore, int):
        raise LandlearnError(f"{owner}: ignore_index must be an integer, got {ignore!r}")
    # More classes than IGNORE_INDEX: the convention's 255 stays the ignore value (as bundle
    # format 1 had it); maps refuse such heads (a uint8 class band), evaluation still works.
    if 0 <= ignore < len(classes) and not (ignore == IGNORE_INDEX < len(classes)):
        raise LandlearnError(
            f"{owner}: ignore_index {ignore} is class {classes[ignore]!r}; "
            f"use {IGNORE_INDEX} for unlabelled targets"
        )
    return {"colors": _colors(head.colors, len(classes), owner), "ignore_index": int(ignore)}


def _regression_fields(
    head: HeadSpec,
    classes: tuple[str, ...],
    targets: tuple[str, ...],
    units: tuple[str, ...],
    owner: str,
) -> dict[str, Any]:
    if classes or head.colors:
        raise LandlearnError(f"{owner}: a {head.kind} head has targets, not classes or colors")
    if head.ignore_index is not None:
        raise LandlearnError(
            f"{owner}: a {head.kind} head has no ignore_index; unknown targets are NaN"
        )
    if not targets:
        raise LandlearnError(f"{owner}: give its target names (targets: [...])")
    if units and len(units) != len(targets):
        raise LandlearnError(
            f"{owner}: {len(units)} units for {len(targets)} targets; give one per target"
        )
    if not isinstance(head.variance, bool):
        raise LandlearnError(f"{owner}: variance must be true or false, got {head.variance!r}")
    mean, std = _stats(head.mean, head.std, len(targets), "targets", owner)
    return {"colors": (), "mean": mean, "std": std}


def specs_by_name(specs: Iterable[InputSpec | HeadSpec], where: Where = None) -> dict[str, Any]:
    """``{spec.name: spec}``, refusing two specs of one name.

    Raises:
        LandlearnError: a repeated name.
    """
    out: dict[str, Any] = {}
    for spec in specs:
        if spec.name in out:
            title = "input" if isinstance(spec, InputSpec) else "head"
            raise LandlearnError(f"two {title}s named {spec.name!r}; names must be unique", where)
        out[spec.name] = spec
    return out
