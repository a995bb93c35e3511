"""The model registry: name → builder returning ``nn.Module``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from landlearn.registry import Registry, check_options

ModelBuilder = Callable[..., nn.Module]
MODELS: Registry[nn.Module] = Registry("model")

MODEL_TASKS = ("classification", "segmentation", "regression")
"""What a registered model predicts: class logits per scene or per pixel, or scene regression
targets (``num_classes`` is then the number of targets)."""

__all__ = [
    "MODELS",
    "MODEL_TASKS",
    "ModelBuilder",
    "build_model",
    "builder_signature",
    "list_models",
    "model_task",
    "register_model",
]


def register_model(
    name: str, task: str, *, kwargs_from: Callable[..., Any] | None = None
) -> Callable[[ModelBuilder], ModelBuilder]:
    """Register a builder under ``name``; ``task`` is one of ``MODEL_TASKS``.

    ``kwargs_from``: for a builder that passes ``**kwargs`` on (to an smp or timm class), the
    callable that receives them; its named parameters are then the extra keys the builder takes
    (:func:`builder_signature`), so a bundle's misspelt key is refused instead of ignored.
    """
    if task not in MODEL_TASKS:
        raise RuntimeError(f"bad task {task!r} for model {name!r}")
    return MODELS.register(name, task=task, kwargs_from=kwargs_from)


def build_model(
    name: str,
    *,
    in_channels: int,
    num_classes: int,
    pretrained: bool = False,
    dropout: float = 0.0,
    **kwargs: Any,
) -> nn.Module:
    """Build a model by name.

    Options are checked against :func:`builder_signature` (so also against ``kwargs_from``);
    a ``TypeError`` from inside the builder is a bug and keeps its traceback.

    Raises:
        LandlearnError: unknown name (with the nearest known one), an option the builder does
            not take, or weights not available.
    """
    options = {
        "in_channels": in_channels,
        "num_classes": num_classes,
        "pretrained": pretrained,
        "dropout": dropout,
        **kwargs,
    }
    check_options(builder_signature(name), f"model {name!r}", (), options)
    return MODELS.get(name)(**options)


def model_task(name: str) -> str:
    """``classification``, ``segmentation`` or ``regression`` for a registered name."""
    return str(MODELS.tags(name)["task"])


def list_models() -> list[str]:
    """Sorted registered model names."""
    return MODELS.names()


def builder_signature(name: str) -> inspect.Signature:
    """The keyword parameters a registered builder takes, with annotations resolved.

    A builder registered with ``kwargs_from`` gets that callable's named parameters in place of
    its ``**kwargs``. ``landlearn.bundle`` checks a bundle's ``model_kwargs`` against the result
    before building anything.

    Raises:
        LandlearnError: unknown name (with the nearest known one).
    """
    sig = _signature(MODELS.get(name))
    target = MODELS.tags(name).get("kwargs_from")
    if target is None:
        return sig
    own = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
    names = {p.name for p in own}
    extra = [
        p.replace(kind=p.KEYWORD_ONLY)
        for p in _signature(target).parameters.values()
        if p.name not in names and p.name != "self"
        and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]  # fmt: skip
    return sig.replace(parameters=[*own, *extra])


def _signature(fn: Callable[..., Any]) -> inspect.Signature:
    try:
        return inspect.signature(fn, eval_str=True)
    except (NameError, TypeError, SyntaxError):  # an annotation that does not resolve here
        return inspect.signature(fn)
