"""The model half of the bundle validator: arguments, size and weights, before any allocation.

The model a header describes is built on the ``meta`` device (shapes, no memory), so a 100 KB
bundle asking for a billion parameters is refused in milliseconds; the file's tensor names and
shapes are compared with that model's before a tensor is read. A map's class band is uint8 with
255 as no-data, so :func:`check_map_classes` refuses more than 255 classes.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from landlearn.bundle_check.fields import PathLike, is_int, is_number, show, type_name
from landlearn.conventions import IGNORE_INDEX
from landlearn.errors import LandlearnError
from landlearn.registry import did_you_mean

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_PARAMS",
    "MAX_PARAMS_ENV",
    "build_skeleton",
    "check_map_classes",
    "check_model_kwargs",
    "check_state_shapes",
    "resolve_max_params",
]

MAX_PARAMS_ENV = "LANDLEARN_MAX_PARAMS"
DEFAULT_MAX_PARAMS = 200_000_000
"""Parameter cap of a bundle's model (3 x the largest registered model, wide_resnet50_2)."""
MAP_MAX_CLASSES = IGNORE_INDEX
"""Class indexes 0..254 fit the uint8 class band of a map; 255 is its no-data."""

# build_model's own keywords: every builder takes them
_BUILD_KEYS = ("in_channels", "num_classes", "pretrained", "dropout")


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
            tip = did_you_mean(key, known, otherwise="")
            takes = f"it takes {', '.join(k for k in known if k not in ('pretrained',))}"
            raise LandlearnError(
                f"model {name!r} does not take model_kwargs key {key!r}; "
                + " ".join(part for part in (tip, takes) if part),
                path,
            )
        want = params[key].annotation if key in params else inspect.Parameter.empty
        if not _fits(value, want):
            raise LandlearnError(
                f"model {name!r}: model_kwargs {key} must be {_type_name(want)}, got "
                f"{show(value)} ({type_name(value)})",
                path,
            )


def _fits(value: object, annotation: object) -> bool:
    """Whether ``value`` has the simple type (int, float, bool, str) of a parameter's annotation."""
    if annotation is int:
        return is_int(value)
    if annotation is float:
        return is_number(value)
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
    shown = [f"{k}={show(v, 24)}" for k, v in kwargs.items() if k not in _BUILD_KEYS]
    return f"model {name!r}" + (f" with {', '.join(shown)}" if shown else "")


_BUILD_ERRORS = (
    TypeError,
    ValueError,
    AssertionError,
    KeyError,
    IndexError,
    AttributeError,
    RuntimeError,
    ArithmeticError,  # ZeroDivisionError, OverflowError
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
