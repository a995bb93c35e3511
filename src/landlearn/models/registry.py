"""The model registry: name → builder returning ``nn.Module``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from landlearn.registry import Registry

ModelBuilder = Callable[..., nn.Module]
MODELS: Registry[ModelBuilder] = Registry("model")

MODEL_TASKS = ("classification", "segmentation", "regression")
"""What a registered model predicts: class logits per scene or per pixel, or scene regression
targets (``num_classes`` is then the number of targets)."""

__all__ = [
    "MODELS",
    "MODEL_TASKS",
    "ModelBuilder",
    "build_model",
    "list_models",
    "model_task",
    "register_model",
]


def register_model(name: str, task: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Register a builder under ``name``; ``task`` is one of ``MODEL_TASKS``."""
    if task not in MODEL_TASKS:
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
    """``classification``, ``segmentation`` or ``regression`` for a registered name."""
    return str(MODELS.tags(name)["task"])


def list_models() -> list[str]:
    """Sorted registered model names."""
    return MODELS.names()
