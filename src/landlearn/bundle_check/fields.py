"""Field checks shared by the header validators (formats 1 and 2) and the model checks.

Each raises one ``LandlearnError`` naming the file and the field, with the offending value shown
short (:func:`show`) and its JSON type (:func:`type_name`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from landlearn.errors import LandlearnError
from landlearn.registry import did_you_mean

__all__ = [
    "MAX_CHIP_SIZE",
    "MODES",
    "PathLike",
    "choice",
    "dict_field",
    "int_field",
    "is_int",
    "is_number",
    "show",
    "type_name",
]

PathLike = str | os.PathLike[str] | None

MODES = ("multiclass", "binary", "multilabel")
MAX_CHIP_SIZE = 65536
"""Largest chip side a header may ask for (a 65536² float chip is already 16 GiB per band)."""


def type_name(value: object) -> str:
    """A JSON-ish name for the type of ``value``, for messages: ``a list``, ``null``, …."""
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


def show(value: object, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters, for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def is_int(value: object) -> bool:
    """An int that is not a bool (JSON's ``true`` is no count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """An int or float that is not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def int_field(raw: Mapping[str, Any], key: str, lo: int, hi: int | None, path: PathLike) -> int:
    """``raw[key]`` as an integer in ``[lo, hi]``.

    Raises:
        LandlearnError: naming the field, the value and the range.
    """
    value = raw[key]
    if not is_int(value):
        raise LandlearnError(
            f"bundle {key} must be an integer, got {show(value)} ({type_name(value)})", path
        )
    if value < lo or (hi is not None and value > hi):
        span = f">= {lo}" if hi is None else f"between {lo} and {hi}"
        raise LandlearnError(f"bundle {key} must be {span}, got {show(value)}", path)
    return int(value)


def dict_field(raw: Mapping[str, Any], key: str, path: PathLike) -> dict[str, Any]:
    """``raw[key]`` (default ``{}``) as a JSON object.

    Raises:
        LandlearnError: when it is something else.
    """
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise LandlearnError(f"bundle {key} must be a JSON object, got {type_name(value)}", path)
    return dict(value)


def choice(value: object, key: str, known: Sequence[str], path: PathLike) -> str:
    """``value`` if it is one of ``known``.

    Raises:
        LandlearnError: with a "did you mean" and the known names.
    """
    if isinstance(value, str) and value in known:
        return value
    tip = did_you_mean(value, known, otherwise="") if isinstance(value, str) else ""
    listed = f"known: {', '.join(known)}"
    raise LandlearnError(
        f"unknown bundle {key} {show(value)}; " + " ".join(p for p in (tip, listed) if p), path
    )
