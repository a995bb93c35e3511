"""The model registry: name → builder returning ``nn.Module``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from landlearn.registry import Registry

ModelBuilder = Callable[..., nn.Module]
MODELS: Registry[ModelBuilder] = Registry("model")

__all__ = [
    "MODELS",
    "ModelBuilder",
    "build_model",
    "builder_signature",
    "list_models",
    "model_task",
    "register_model",
]


def register_model(name: str, task: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Register a builder under ``name``; ``task`` is ``classification`` or ``segmentation``."""
    if task not in ("classification", "segmentation"):
        raise RuntimeError(f"bad task {task!r} for model {name!r}")
    return MODELS.register(name, task=task)


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

    Raises:
        LandlearnError: unknown name (with the nearest known one), or weights not available.
    """
    builder = MODELS.get(name)
    return builder(
        in_channels=in_channels,
        num_classes=num_classes,
        pretrained=pretrained,
        dropout=dropout,
        **kwargs,
    )


def model_task(name: str) -> str:
    """``classification`` or ``segmentation`` for a registered name."""
    return str(MODELS.tags(name)["task"])


def list_models() -> list[str]:
    """Sorted registered model names."""
    return MODELS.names()


def builder_signature(name: str) -> inspect.Signature:
    """The signature of a registered builder, with its annotations resolved.

    ``landlearn.bundle`` checks a bundle's ``model_kwargs`` against it before building anything.

    Raises:
        LandlearnError: unknown name (with the nearest known one).
    """
    builder = MODELS.get(name)
    try:
        return inspect.signature(builder, eval_str=True)
    except (NameError, TypeError, SyntaxError):  # an annotation that does not resolve here
        return inspect.signature(builder)
