"""The header half of the bundle validator: the ``landlearn`` JSON, field by field (format 1).

Format 2 headers are checked by :mod:`landlearn.bundle_check.header_v2`.

Decisions: ``std`` may be 0 (a constant band; the predictor floors it at ``1e-12``, as before) but
not negative; ``class_colors`` missing or empty take the default palette, fewer colours than
classes are filled from it and more are cut, with a warning either way; names may not repeat or
hold control characters; unknown keys are dropped (a newer minor writer may add some).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from landlearn.bundle_check.fields import (
    MAX_CHIP_SIZE,
    MODES,
    PathLike,
    choice,
    dict_field,
    int_field,
    is_int,
    is_number,
    show,
    type_name,
)
from landlearn.bundle_check.header_v2 import validate_v2
from landlearn.conventions import BUNDLE_FORMAT_VERSION
from landlearn.errors import LandlearnError

log = logging.getLogger(__name__)

__all__ = ["TASKS", "validate_meta"]


TASKS = ("classification", "segmentation")
_REQUIRED = ("task", "model_name", "band_names", "class_names", "mean", "std")


def _names(raw: Mapping[str, Any], key: str, path: PathLike) -> list[str]:
    value = raw[key]
    if not isinstance(value, list):
        raise LandlearnError(f"bundle {key} must be a list of names, got {type_name(value)}", path)
    if not value:
        raise LandlearnError(f"bundle {key} is empty; a model needs at least one", path)
    for i, name in enumerate(value):
        if not isinstance(name, str) or not name.strip():
            raise LandlearnError(
                f"bundle {key}[{i}] must be a non-empty string, got {show(name)} "
                f"({type_name(name)})",
                path,
            )
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
            raise LandlearnError(
                f"bundle {key}[{i}] {name!r} holds a control character (newline, tab, …)", path
            )
    seen: set[str] = set()
    dup = [n for n in value if n in seen or seen.add(n)]  # type: ignore[func-returns-value]
    if dup:
        raise LandlearnError(f"bundle {key} name {dup[0]!r} more than once", path)
    return list(value)


def _stats(raw: Mapping[str, Any], key: str, bands: Sequence[str], path: PathLike) -> list[float]:
    value = raw[key]
    if not isinstance(value, list):
        raise LandlearnError(
            f"bundle {key} must be a list of numbers, got {type_name(value)}", path
        )
    if len(value) != len(bands):
        raise LandlearnError(
            f"bundle {key} has {len(value)} values but band_names has {len(bands)} "
            f"({', '.join(bands)}); one per band",
            path,
        )
    for i, v in enumerate(value):
        if not is_number(v):
            raise LandlearnError(
                f"bundle {key}[{i}] ({bands[i]}) must be a number, got {show(v)} ({type_name(v)})",
                path,
            )
        if not math.isfinite(v):
            raise LandlearnError(f"bundle {key}[{i}] ({bands[i]}) is {v}, must be finite", path)
        if key == "std" and v < 0:
            raise LandlearnError(f"bundle std[{i}] ({bands[i]}) is {v}, must be >= 0", path)
    return [float(v) for v in value]


def _colors(
    value: object, k: int, palette: Callable[[int], list[list[int]]] | None, path: PathLike
) -> list[list[int]]:
    if value is None:
        value = []
    if not isinstance(value, list):
        raise LandlearnError(f"bundle class_colors must be a list, got {type_name(value)}", path)
    for i, c in enumerate(value):
        ok = isinstance(c, list) and len(c) in (3, 4)
        ok = ok and all(is_int(v) and 0 <= v <= 255 for v in c)
        if not ok:
            raise LandlearnError(
                f"bundle class_colors[{i}] must be 3 or 4 integers 0-255 (RGB or RGBA), "
                f"got {show(c)}",
                path,
            )
    colors = [list(c) for c in value]
    if colors and len(colors) != k:
        fix = "filled from the default palette" if len(colors) < k else "the extra ones ignored"
        log.warning("%s: %d class_colors for %d classes; %s", path, len(colors), k, fix)
    if len(colors) < k and palette is not None:
        colors += palette(k)[len(colors) :]
    return colors[:k]


def _version(raw: Mapping[str, Any], path: PathLike) -> int:
    version = raw.get("format_version", 0)
    if not is_int(version) or version < 0:
        raise LandlearnError(
            f"bundle format_version must be an integer >= 0, got {show(version)} "
            f"({type_name(version)})",
            path,
        )
    if version > BUNDLE_FORMAT_VERSION:
        raise LandlearnError(
            f"bundle format {show(version)} is newer than this landlearn understands "
            f"({BUNDLE_FORMAT_VERSION}); upgrade landlearn",
            path,
        )
    return int(version)


def _model_kwargs(
    raw: Mapping[str, Any], mode: str, bands: list[str], classes: list[str], path: PathLike
) -> dict[str, Any]:
    kwargs = raw.get("model_kwargs", {})
    if not isinstance(kwargs, dict):
        raise LandlearnError(
            "bundle model_kwargs must be a JSON object of builder arguments, got "
            f"{type_name(kwargs)}",
            path,
        )
    c = kwargs.get("in_channels", len(bands))
    if c != len(bands) or not is_int(c):
        raise LandlearnError(
            f"bundle model_kwargs in_channels is {show(c)} but band_names has {len(bands)}",
            path,
        )
    k = kwargs.get("num_classes", len(classes))
    ok = (1, len(classes)) if mode == "binary" else (len(classes),)
    if not is_int(k) or k not in ok:
        raise LandlearnError(
            f"bundle model_kwargs num_classes is {show(k)} but class_names has {len(classes)}"
            + (" (binary: 1 or 2)" if mode == "binary" else ""),
            path,
        )
    return dict(kwargs)


def validate_meta(
    raw: object,
    path: PathLike = None,
    *,
    palette: Callable[[int], list[list[int]]] | None = None,
) -> dict[str, Any]:
    """Check the parsed ``landlearn`` header (or a checkpoint's meta) and return clean fields.

    The result holds every known field with its default filled in, ready for ``BundleMeta(**d)``:
    the format-1 fields of a format 0 / 1 header (``BundleMeta`` upgrades them), or the specs and
    models of a format-2 header (:func:`landlearn.bundle_check.header_v2.validate_v2`). Unknown
    keys are dropped (a newer minor writer may add some). ``palette(k)`` gives the default
    colours used to fill ``class_colors``.

    Raises:
        LandlearnError: the first problem found, naming the field.
    """
    if not isinstance(raw, dict):
        raise LandlearnError(
            f"bundle metadata (the header's landlearn entry) is {type_name(raw)}, "
            "expected a JSON object",
            path,
        )
    version = _version(raw, path)
    if version >= 2:
        return validate_v2(raw, version, path, palette=palette)
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise LandlearnError(f"bundle metadata lacks {', '.join(missing)}", path)
    task = choice(raw["task"], "task", TASKS, path)
    mode = choice(raw.get("mode", "multiclass"), "mode", MODES, path)
    name = raw["model_name"]
    if not isinstance(name, str) or not name:
        raise LandlearnError(f"bundle model_name must be a string, got {show(name)}", path)
    bands = _names(raw, "band_names", path)
    classes = _names(raw, "class_names", path)
    out: dict[str, Any] = {
        "format_version": version,
        "task": task,
        "mode": mode,
        "model_name": name,
        "model_kwargs": _model_kwargs(raw, mode, bands, classes, path),
        "band_names": bands,
        "class_names": classes,
        "mean": _stats(raw, "mean", bands, path),
        "std": _stats(raw, "std", bands, path),
        "class_colors": _colors(raw.get("class_colors"), len(classes), palette, path),
    }
    if "ignore_index" in raw:
        out["ignore_index"] = int_field(raw, "ignore_index", -(2**31), 2**31 - 1, path)
    if "chip_size" in raw:
        out["chip_size"] = int_field(raw, "chip_size", 1, MAX_CHIP_SIZE, path)
    for key in ("metrics", "versions", "extra"):
        out[key] = dict_field(raw, key, path)
    return out
