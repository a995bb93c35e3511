"""Models by name.

Models by name: timm classifiers (any timm name as ``timm:<name>``), smp segmenters, the
early-fusion U-Net of several inputs, a small CNN, an MLP regressor.

``build_model(name, in_channels=..., num_classes=..., pretrained=False, dropout=0.0, **kwargs)``.
Importing this package fills the registry.
"""

from __future__ import annotations

# Builder modules register themselves on import.
from landlearn.models import (  # noqa: F401
    classifiers,
    fusion,
    fusion_unet,
    gated_fusion,
    late_fusion,
    progressive_fusion,
    regressors,
    segmenters,
    wide_resnet,
)
from landlearn.models.registry import (
    MODELS,
    build_model,
    is_multi_input,
    list_models,
    model_task,
    register_model,
)

__all__ = ["MODELS", "build_model", "is_multi_input", "list_models", "model_task", "register_model"]
