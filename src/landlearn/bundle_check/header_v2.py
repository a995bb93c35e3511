"""The header half of the bundle validator for format 2: inputs, heads, models, combine.

Format 2 describes a bundle by its input specs, head specs (``landlearn.schema``) and one or
more named models whose tensors are stored under ``"<name>.<param>"``. Every field is checked
for type before a spec is built from it, so hostile JSON gives one ``LandlearnError`` naming the
field (``bundle inputs[1].bands[0] ...``) and never a traceback; the specs then check their own
rules (lengths, positive std, classes of a class head). Unknown keys inside an input, head or
model entry are refused (with the nearest known key); unknown top-level keys are dropped, as
in format 1 (a newer minor writer may add some).

Decisions: a model entry may carry its own ``inputs`` (the same names and band counts as the
bundle's, other statistics): the members of a one-file ensemble keep the training statistics
each was trained with. ``mode`` (``multiclass`` | ``binary`` | ``multilabel``) says how the first
class head's logits become probabilities; it defaults to ``multilabel`` for a multilabel head,
else ``multiclass``.
"""

from __future__ import annotations

import dataclasses
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
from landlearn.errors import LandlearnError
from landlearn.registry import did_you_mean
from landlearn.schema import HeadSpec, InputSpec

log = logging.getLogger(__name__)

__all__ = ["COMBINES", "V2_KEYS", "validate_v2"]

COMBINES = ("single", "mean", "first")
"""How a bundle's models combine: one model, the mean of the members' probabilities, or the
first model predicting while the others ride along (a mean teacher's student, a CPS network)."""

V2_KEYS = (
    "format_version", "inputs", "heads", "models", "combine", "mode", "chip_size", "metrics",
    "versions", "extra",
)  # fmt: skip
_MODEL_KEYS = ("name", "registry", "kwargs", "inputs")
_INPUT_STATS = ("mean", "std")
_HEAD_LISTS = ("classes", "targets", "units")


def _fail(where: str, problem: str, path: PathLike) -> LandlearnError:
    return LandlearnError(f"bundle {where} {problem}", path)


def _entries(raw: Mapping[str, Any], key: str, path: PathLike) -> list[Any]:
    if key not in raw:
        raise LandlearnError(f"bundle metadata lacks {key}", path)
    value = raw[key]
    if not isinstance(value, list):
        raise _fail(key, f"must be a list of objects, got {type_name(value)}", path)
    if not value:
        raise _fail(key, "is empty; a bundle needs at least one", path)
    for i, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise _fail(f"{key}[{i}]", f"must be an object, got {type_name(entry)}", path)
    return value


def _known(entry: Mapping[str, Any], known: Sequence[str], where: str, path: PathLike) -> None:
    for key in entry:
        if key not in known:
            tip = did_you_mean(str(key), known, otherwise=f"known: {', '.join(known)}")
            raise LandlearnError(f"unknown bundle {where} key {show(key)}; {tip}", path)


def _text(value: object, where: str, path: PathLike) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, f"must be a non-empty string, got {show(value)} ({type_name(value)})",
                    path)  # fmt: skip
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise _fail(where, f"{value!r} holds a control character (newline, tab, …)", path)
    return value


def _texts(value: object, where: str, path: PathLike, *, empty: bool = True) -> list[str]:
    if not isinstance(value, list):
        raise _fail(where, f"must be a list of names, got {type_name(value)}", path)
    if not value and not empty:
        raise _fail(where, "is empty; a model needs at least one", path)
    return [_text(v, f"{where}[{i}]", path) for i, v in enumerate(value)]


def _numbers(value: object, where: str, path: PathLike) -> list[float] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise _fail(where, f"must be a list of numbers or null, got {type_name(value)}", path)
    for i, v in enumerate(value):
        if not is_number(v):
            raise _fail(f"{where}[{i}]", f"must be a number, got {show(v)} ({type_name(v)})",
                        path)  # fmt: skip
        if not math.isfinite(v):
            raise _fail(f"{where}[{i}]", f"is {v}, must be finite", path)
    return [float(v) for v in value]


def _optional(value: object, where: str, path: PathLike, kind: str) -> object:
    """``value`` if it is null or of ``kind`` (``int``, ``number``, ``bool``, ``str``)."""
    ok = {
        "int": is_int(value),
        "number": is_number(value),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
    }[kind]
    if value is not None and not ok:
        names = {"int": "an integer", "number": "a number", "bool": "true or false",
                 "str": "a string"}  # fmt: skip
        raise _fail(where, f"must be {names[kind]} or null, got {show(value)} "
                    f"({type_name(value)})", path)  # fmt: skip
    return value


def _spec(build: Callable[[], Any], where: str, path: PathLike) -> Any:
    try:
        return build()
    except LandlearnError as exc:
        raise _fail(where, f"is invalid: {exc.message}", path) from None


def _input(entry: Mapping[str, Any], where: str, path: PathLike) -> InputSpec:
    fields = [f.name for f in dataclasses.fields(InputSpec)]
    _known(entry, fields, where, path)
    for key in ("name", "bands"):
        if key not in entry:
            raise _fail(where, f"lacks {key}", path)
    values = dict(entry)
    values["name"] = _text(entry["name"], f"{where}.name", path)
    values["bands"] = _texts(entry["bands"], f"{where}.bands", path, empty=False)
    values["kind"] = _text(entry.get("kind", "raster"), f"{where}.kind", path)
    for key in _INPUT_STATS:
        values[key] = _numbers(entry.get(key), f"{where}.{key}", path)
        if values[key] is None:
            raise _fail(where, f"has no {key}; a bundle stores the training statistics", path)
    nodata = entry.get("nodata")
    if not (nodata is None or nodata == "nan" or is_number(nodata)):
        raise _fail(f"{where}.nodata", f"must be a number, 'nan' or null, got {show(nodata)}",
                    path)  # fmt: skip
    _optional(entry.get("chip_size"), f"{where}.chip_size", path, "int")
    _optional(entry.get("resolution"), f"{where}.resolution", path, "number")
    return _spec(lambda: InputSpec.from_dict(values), where, path)


def _colors(value: object, where: str, path: PathLike) -> list[list[int]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(where, f"must be a list, got {type_name(value)}", path)
    for i, c in enumerate(value):
        ok = isinstance(c, list) and len(c) == 3 and all(is_int(v) and 0 <= v <= 255 for v in c)
        if not ok:
            raise _fail(f"{where}[{i}]", f"must be 3 integers 0-255 (RGB), got {show(c)}", path)
    return [list(c) for c in value]


def _head(
    entry: Mapping[str, Any],
    where: str,
    palette: Callable[[int], list[list[int]]] | None,
    path: PathLike,
) -> HeadSpec:
    fields = [f.name for f in dataclasses.fields(HeadSpec)]
    _known(entry, fields, where, path)
    for key in ("name", "kind"):
        if key not in entry:
            raise _fail(where, f"lacks {key}", path)
    values = dict(entry)
    values["name"] = _text(entry["name"], f"{where}.name", path)
    values["kind"] = _text(entry["kind"], f"{where}.kind", path)
    for key in _HEAD_LISTS:
        values[key] = _texts(entry.get(key, []), f"{where}.{key}", path)
    for key in _INPUT_STATS:
        values[key] = _numbers(entry.get(key), f"{where}.{key}", path)
    values["colors"] = _colors(entry.get("colors"), f"{where}.colors", path)
    _optional(entry.get("variance", False), f"{where}.variance", path, "bool")
    _optional(entry.get("target_key", ""), f"{where}.target_key", path, "str")
    _optional(entry.get("ignore_index"), f"{where}.ignore_index", path, "int")
    values["variance"] = bool(entry.get("variance") or False)
    values["target_key"] = entry.get("target_key") or ""
    k = len(values["classes"])
    if k and not values["colors"] and palette is not None:
        values["colors"] = [list(c[:3]) for c in palette(k)]
    return _spec(lambda: HeadSpec.from_dict(values), where, path)


def _unique(names: Sequence[str], key: str, path: PathLike) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise _fail(key, f"name {name!r} more than once", path)
        seen.add(name)


def _in_channels(value: object, inputs: Sequence[InputSpec], where: str, path: PathLike) -> None:
    per_input = {spec.name: spec.num_bands for spec in inputs}
    total = sum(per_input.values())
    if isinstance(value, dict):
        if value != per_input:  # the order is the inputs' (JSON objects are written sorted)
            raise _fail(f"{where}.kwargs", f"in_channels is {show(value, 60)} but the inputs "
                        f"have {per_input}", path)  # fmt: skip
        return
    if not is_int(value) or value != total:
        raise _fail(f"{where}.kwargs", f"in_channels is {show(value)} but the inputs have "
                    f"{total} bands", path)  # fmt: skip


def _model(
    entry: Mapping[str, Any],
    where: str,
    inputs: Sequence[InputSpec],
    outputs: tuple[int, ...],
    path: PathLike,
) -> dict[str, Any]:
    _known(entry, _MODEL_KEYS, where, path)
    for key in ("name", "registry"):
        if key not in entry:
            raise _fail(where, f"lacks {key}", path)
    name = _text(entry["name"], f"{where}.name", path)
    if "." in name:
        raise _fail(f"{where}.name", f"{name!r} holds a dot; tensors are named <model>.<param>",
                    path)  # fmt: skip
    registry = _text(entry["registry"], f"{where}.registry", path)
    kwargs = entry.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise _fail(f"{where}.kwargs", f"must be a JSON object of builder arguments, got "
                    f"{type_name(kwargs)}", path)  # fmt: skip
    own = inputs
    out: dict[str, Any] = {"name": name, "registry": registry, "kwargs": dict(kwargs)}
    if "inputs" in entry:
        listed = _member_inputs(entry["inputs"], where, path)
        own = [_input(e, f"{where}.inputs[{i}]", path) for i, e in enumerate(listed)]
        shape = [(s.name, s.num_bands) for s in own]
        if shape != [(s.name, s.num_bands) for s in inputs]:
            raise _fail(f"{where}.inputs", f"are {shape} but the bundle's inputs are "
                        f"{[(s.name, s.num_bands) for s in inputs]}", path)  # fmt: skip
        out["inputs"] = own
    if "in_channels" in kwargs:
        _in_channels(kwargs["in_channels"], own, where, path)
    k = kwargs.get("num_classes", outputs[-1])
    if not is_int(k) or k not in outputs:
        raise _fail(f"{where}.kwargs", f"num_classes is {show(k)} but the heads have "
                    f"{' or '.join(map(str, outputs))} outputs", path)  # fmt: skip
    return out


def _member_inputs(value: object, where: str, path: PathLike) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise _fail(f"{where}.inputs", f"must be a non-empty list of objects, got "
                    f"{type_name(value)}", path)  # fmt: skip
    for i, e in enumerate(value):
        if not isinstance(e, dict):
            raise _fail(f"{where}.inputs[{i}]", f"must be an object, got {type_name(e)}", path)
    return value


def _outputs(heads: Sequence[HeadSpec], mode: str) -> tuple[int, ...]:
    """The model output counts the heads allow (one logit for a binary head)."""
    total = sum(h.out_channels for h in heads)
    if mode == "binary" and len(heads) == 1 and not heads[0].is_regression:
        return (1, total)
    return (total,)


def validate_v2(
    raw: Mapping[str, Any],
    version: int,
    path: PathLike = None,
    *,
    palette: Callable[[int], list[list[int]]] | None = None,
) -> dict[str, Any]:
    """Check a format-2 header; the fields for ``BundleMeta(**d)`` (specs built).

    Raises:
        LandlearnError: the first problem found, naming the field.
    """
    unknown = [k for k in raw if k not in V2_KEYS]
    if unknown:
        log.debug("%s: unknown bundle keys dropped: %s", path, ", ".join(map(repr, unknown)))
    inputs = [_input(e, f"inputs[{i}]", path) for i, e in enumerate(_entries(raw, "inputs", path))]
    _unique([s.name for s in inputs], "inputs", path)
    heads = [
        _head(e, f"heads[{i}]", palette, path) for i, e in enumerate(_entries(raw, "heads", path))
    ]
    _unique([h.name for h in heads], "heads", path)
    default = "multilabel" if heads[0].kind == "multilabel" else "multiclass"
    mode = choice(raw.get("mode", default), "mode", MODES, path)
    outputs = _outputs(heads, mode)
    models = [
        _model(e, f"models[{i}]", inputs, outputs, path)
        for i, e in enumerate(_entries(raw, "models", path))
    ]
    _unique([m["name"] for m in models], "models", path)
    combine = choice(raw.get("combine", "single"), "combine", COMBINES, path)
    if combine == "single" and len(models) != 1:
        raise LandlearnError(
            f"bundle combine 'single' needs exactly one model, got {len(models)}; use 'mean' "
            "for an ensemble",
            path,
        )
    if combine == "first" and len(models) < 2:
        raise LandlearnError("bundle combine 'first' needs two models or more; use 'single'", path)
    out: dict[str, Any] = {
        "format_version": version,
        "inputs": inputs,
        "heads": heads,
        "models": models,
        "combine": combine,
        "mode": mode,
    }
    if "chip_size" in raw:
        out["chip_size"] = int_field(raw, "chip_size", 1, MAX_CHIP_SIZE, path)
    for key in ("metrics", "versions", "extra"):
        out[key] = dict_field(raw, key, path)
    return out
