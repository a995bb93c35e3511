"""One validator for what a bundle header or a checkpoint says about its model (issue 21).

A bundle is user input, and its header decides what gets built: every field is checked for type,
range and length before anything is allocated, and each problem is one ``LandlearnError`` naming
the file and the field. The checks come in the order loading needs them:

1. :func:`validate_meta`: the header JSON (types, ranges, lengths, known task and mode);
2. :func:`check_model_kwargs`: ``model_kwargs`` against the builder's signature;
3. :func:`build_skeleton`: the model built on the ``meta`` device (no memory), its parameter
   count against a cap (``max_params``, or the ``LANDLEARN_MAX_PARAMS`` environment variable);
4. :func:`check_state_shapes`: the file's tensor names and shapes against that model's, before a
   tensor is read.

Decisions: ``std`` may be 0 (a constant band; the predictor floors it at ``1e-12``, as before) but
not negative; ``class_colors`` missing or empty take the default palette, fewer colours than
classes are filled from it and more are cut, with a warning either way; a ``map`` class band is
uint8 with 255 as no-data, so :func:`check_map_classes` refuses more than 255 classes.

This module sits at the bottom: it imports only ``errors``, ``conventions`` and torch; callers
pass the builder's signature and a function that builds the model.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from landlearn.conventions import BUNDLE_FORMAT_VERSION, IGNORE_INDEX
from landlearn.errors import LandlearnError

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_PARAMS",
    "MAX_CHIP_SIZE",
    "MAX_PARAMS_ENV",
    "build_skeleton",
    "check_map_classes",
    "check_model_kwargs",
    "check_state_shapes",
    "resolve_max_params",
    "type_name",
    "validate_meta",
]

PathLike = str | os.PathLike[str] | None

TASKS = ("classification", "segmentation")
MODES = ("multiclass", "binary", "multilabel")
MAX_CHIP_SIZE = 65536
"""Largest chip side a header may ask for (a 65536² float chip is already 16 GiB per band)."""
MAX_PARAMS_ENV = "LANDLEARN_MAX_PARAMS"
DEFAULT_MAX_PARAMS = 200_000_000
"""Parameter cap of a bundle's model (4 x the largest registered model, wide_resnet50_2)."""
MAP_MAX_CLASSES = IGNORE_INDEX
"""Class indexes 0..254 fit the uint8 class band of a map; 255 is its no-data."""

_REQUIRED = ("task", "model_name", "band_names", "class_names", "mean", "std")
# build_model's own keywords: every builder takes them
_BUILD_KEYS = ("in_channels", "num_classes", "pretrained", "dropout")


def type_name(value: object) -> str:
    """A JSON-ish name for the type of ``value``, for messages: ``a list``, ``null``, …"""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _show(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _int_field(raw: Mapping[str, Any], key: str, lo: int, hi: int | None, path: PathLike) -> int:
    value = raw[key]
    if not _is_int(value):
        raise LandlearnError(
            f"bundle {key} must be an integer, got {_show(value)} ({type_name(value)})", path
        )
    if value < lo or (hi is not None and value > hi):
        span = f">= {lo}" if hi is None else f"between {lo} and {hi}"
        raise LandlearnError(f"bundle {key} must be {span}, got {value}", path)
    return int(value)


def _names(raw: Mapping[str, Any], key: str, path: PathLike) -> list[str]:
    value = raw[key]
    if not isinstance(value, list):
        raise LandlearnError(f"bundle {key} must be a list of names, got {type_name(value)}", path)
    if not value:
        raise LandlearnError(f"bundle {key} is empty; a model needs at least one", path)
    for i, name in enumerate(value):
        if not isinstance(name, str) or not name.strip():
            raise LandlearnError(
                f"bundle {key}[{i}] must be a non-empty string, got {_show(name)} "
                f"({type_name(name)})",
                path,
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
        if not _is_number(v):
            raise LandlearnError(
                f"bundle {key}[{i}] ({bands[i]}) must be a number, got {_show(v)} ({type_name(v)})",
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
        ok = ok and all(_is_int(v) and 0 <= v <= 255 for v in c)
        if not ok:
            raise LandlearnError(
                f"bundle class_colors[{i}] must be 3 or 4 integers 0-255 (RGB or RGBA), "
                f"got {_show(c)}",
                path,
            )
    colors = [list(c) for c in value]
    if colors and len(colors) != k:
        fix = "filled from the default palette" if len(colors) < k else "the extra ones ignored"
        log.warning("%s: %d class_colors for %d classes; %s", path, len(colors), k, fix)
    if len(colors) < k and palette is not None:
        colors += palette(k)[len(colors) :]
    return colors[:k]


def _dict_field(raw: Mapping[str, Any], key: str, path: PathLike) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise LandlearnError(f"bundle {key} must be a JSON object, got {type_name(value)}", path)
    return dict(value)


def _choice(value: object, key: str, known: Sequence[str], path: PathLike) -> str:
    if isinstance(value, str) and value in known:
        return value
    near = difflib.get_close_matches(value, known, n=1) if isinstance(value, str) else []
    tip = f"did you mean {near[0]!r}? " if near else ""
    raise LandlearnError(
        f"unknown bundle {key} {_show(value)}; {tip}known: {', '.join(known)}", path
    )


def _version(raw: Mapping[str, Any], path: PathLike) -> int:
    version = raw.get("format_version", 0)
    if not _is_int(version) or version < 0:
        raise LandlearnError(
            f"bundle format_version must be an integer >= 0, got {_show(version)} "
            f"({type_name(version)})",
            path,
        )
    if version > BUNDLE_FORMAT_VERSION:
        raise LandlearnError(
            f"bundle format {version} is newer than this landlearn understands "
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
    if c != len(bands) or not _is_int(c):
        raise LandlearnError(
            f"bundle model_kwargs in_channels is {_show(c)} but band_names has {len(bands)}",
            path,
        )
    k = kwargs.get("num_classes", len(classes))
    ok = (1, len(classes)) if mode == "binary" else (len(classes),)
    if not _is_int(k) or k not in ok:
        raise LandlearnError(
            f"bundle model_kwargs num_classes is {_show(k)} but class_names has {len(classes)}"
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

    The result holds every known field with its default filled in, ready for ``BundleMeta(**d)``;
    unknown keys are dropped (a newer minor writer may add some). ``palette(k)`` gives the
    default colours used to fill ``class_colors``.

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
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise LandlearnError(f"bundle metadata lacks {', '.join(missing)}", path)
    task = _choice(raw["task"], "task", TASKS, path)
    mode = _choice(raw.get("mode", "multiclass"), "mode", MODES, path)
    name = raw["model_name"]
    if not isinstance(name, str) or not name:
        raise LandlearnError(f"bundle model_name must be a string, got {_show(name)}", path)
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
        out["ignore_index"] = _int_field(raw, "ignore_index", -(2**31), 2**31 - 1, path)
    if "chip_size" in raw:
        out["chip_size"] = _int_field(raw, "chip_size", 1, MAX_CHIP_SIZE, path)
    for key in ("metrics", "versions", "extra"):
        out[key] = _dict_field(raw, key, path)
    return out


def check_model_kwargs(
    name: str, kwargs: Mapping[str, Any], signature: inspect.Signature, path: PathLike = None
) -> None:
    """Refuse ``model_kwargs`` keys the builder does not take, and values of the wrong type.

    A builder with ``**kwargs`` (timm and smp wrappers) passes unknown keys on; those are caught
    when the model is built (:func:`build_skeleton`).

    Raises:
        LandlearnError: an unknown key (with the nearest known one) or a mistyped value.
    """
    params = {
        p.name: p
        for p in signature.parameters.values()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }
    open_ended = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    known = sorted(set(params) | set(_BUILD_KEYS))
    for key, value in kwargs.items():
        if key not in known:
            if open_ended:
                continue
            near = difflib.get_close_matches(key, known, n=1)
            tip = f"did you mean {near[0]!r}? " if near else ""
            raise LandlearnError(
                f"model {name!r} does not take model_kwargs key {key!r}; {tip}"
                f"it takes {', '.join(k for k in known if k not in ('pretrained',))}",
                path,
            )
        want = params[key].annotation if key in params else inspect.Parameter.empty
        if not _fits(value, want):
            raise LandlearnError(
                f"model {name!r}: model_kwargs {key} must be {_type_name(want)}, got "
                f"{_show(value)} ({type_name(value)})",
                path,
            )


def _fits(value: object, annotation: object) -> bool:
    """Whether ``value`` has the simple type (int, float, bool, str) of a parameter's annotation."""
    if annotation is int:
        return _is_int(value)
    if annotation is float:
        return _is_number(value)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    return True  # unions, Any, unannotated: left to the builder


def _type_name(annotation: object) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return names.get(annotation, str(annotation))  # type: ignore[call-overload]


def resolve_max_params(max_params: int | float | None = None) -> int:
    """The parameter cap: ``max_params``, else ``$LANDLEARN_MAX_PARAMS``, else 2e8.

    Raises:
        LandlearnError: the cap is not a positive number.
    """
    source = "max_params"
    value: object = max_params
    if value is None:
        text = os.environ.get(MAX_PARAMS_ENV, "").strip()
        if not text:
            return DEFAULT_MAX_PARAMS
        source = MAX_PARAMS_ENV
        try:
            value = float(text)
        except ValueError:
            value = text
    if not isinstance(value, int | float) or isinstance(value, bool) or not value >= 1:
        raise LandlearnError(f"{source} must be a positive number of parameters, got {value!r}")
    return int(min(value, 2**62))  # inf: no cap


def _sci(x: float) -> str:
    """``1.2e9``, ``2e8``: short scientific notation for counts."""
    mantissa, exp = f"{x:.1e}".split("e")
    return f"{mantissa.removesuffix('.0')}e{int(exp)}"


def _size(nbytes: float) -> str:
    return f"{nbytes / 1e9:.1f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.1f} MB"


def _describe(name: str, kwargs: Mapping[str, Any]) -> str:
    shown = [f"{k}={_show(v, 24)}" for k, v in kwargs.items() if k not in _BUILD_KEYS]
    return f"model {name!r}" + (f" with {', '.join(shown)}" if shown else "")


_BUILD_ERRORS = (
    TypeError,
    ValueError,
    AssertionError,
    KeyError,
    IndexError,
    AttributeError,
    RuntimeError,
    OverflowError,
    NotImplementedError,
)


def build_skeleton(
    build: Callable[[], nn.Module],
    name: str,
    kwargs: Mapping[str, Any],
    path: PathLike = None,
    max_params: int | float | None = None,
) -> nn.Module:
    """Build the model on the ``meta`` device (shapes only, no memory) and check its size.

    ``build`` is called inside ``with torch.device("meta")``; errors it raises from the header's
    arguments (an unknown keyword passed on to timm or smp, a value the builder refuses) become
    one ``LandlearnError`` naming ``name`` and the file.

    Raises:
        LandlearnError: the model cannot be built from the header, or it has more parameters
            than the cap (:func:`resolve_max_params`).
    """
    cap = resolve_max_params(max_params)
    try:
        with torch.device("meta"):
            model = build()
    except LandlearnError as exc:
        raise LandlearnError(f"{_describe(name, kwargs)}: {exc.message}", path) from None
    except _BUILD_ERRORS as exc:
        log.debug("building %s on the meta device failed", name, exc_info=True)
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise LandlearnError(
            f"{_describe(name, kwargs)} cannot be built from the bundle's model_kwargs "
            f"({type(exc).__name__}: {first})",
            path,
        ) from None
    tensors = [*model.parameters(), *model.buffers()]
    n_params = sum(p.numel() for p in model.parameters())
    n_bytes = sum(t.numel() * t.element_size() for t in tensors)
    if n_params > cap:
        raise LandlearnError(
            f"{_describe(name, kwargs)} would have {_sci(n_params)} parameters "
            f"({_size(n_bytes)}); limit {_sci(cap)} (set {MAX_PARAMS_ENV} to raise it)",
            path,
        )
    return model


def _shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _some(keys: Sequence[str], n: int = 3) -> str:
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def check_state_shapes(
    name: str,
    have: Mapping[str, Sequence[int]],
    want: Mapping[str, Sequence[int]],
    path: PathLike = None,
) -> None:
    """Refuse weights whose names or shapes differ from the model's (strict loading).

    ``have`` is what the file holds (read from its header), ``want`` the model's state dict
    shapes (from :func:`build_skeleton`).

    Raises:
        LandlearnError: one line naming up to 3 missing keys, 3 unexpected keys and 3 shapes.
    """
    missing = [k for k in want if k not in have]
    unexpected = [k for k in have if k not in want]
    shapes = [k for k in want if k in have and tuple(have[k]) != tuple(want[k])]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f"missing {_some(missing)}")
    if unexpected:
        parts.append(f"unexpected {_some(unexpected)}")
    for k in shapes[:3]:
        parts.append(
            f"shape of {k} is {_shape(have[k])} in the file, {_shape(want[k])} in the model"
        )
    if len(shapes) > 3:
        parts.append(f"{len(shapes) - 3} more shapes differ")
    raise LandlearnError(f"weights do not fit model {name!r}: {'; '.join(parts)}", path)


def check_map_classes(num_classes: int, path: PathLike = None) -> None:
    """Refuse a model whose classes do not fit a map's uint8 class band (255 is no-data).

    Raises:
        LandlearnError: more than 255 classes.
    """
    if num_classes > MAP_MAX_CLASSES:
        raise LandlearnError(
            f"map: {num_classes} classes do not fit the uint8 class band (at most "
            f"{MAP_MAX_CLASSES}: indexes 0-{MAP_MAX_CLASSES - 1}, {IGNORE_INDEX} is no-data)",
            path,
        )
