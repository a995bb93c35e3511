"""Models by name: timm classifiers, smp segmenters, a small CNN.

``build_model(name, in_channels=..., num_classes=..., pretrained=False, dropout=0.0, **kwargs)``.
Importing this package fills the registry.
"""

from __future__ import annotations

from landlearn.models.registry import (
    MODELS,
    build_model,
    list_models,
    model_task,
    register_model,
)

# Builder modules register themselves on import.
from landlearn.models import classifiers, segmenters  # noqa: E402, F401, I001

__all__ = ["MODELS", "build_model", "list_models", "model_task", "register_model"]
