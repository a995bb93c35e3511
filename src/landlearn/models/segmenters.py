"""Semantic segmenters: segmentation-models-pytorch architectures with any smp encoder.

Every builder returns a model mapping ``(B, C, H, W)`` float images to ``(B, K, H, W)`` logits.

Input size (smp 0.6.0): H and W must be multiples of the encoder's output stride, else smp
raises a ``RuntimeError``: 32 for ``unetplusplus``, 16 for ``deeplabv3plus``, 8 for ``deeplabv3``
(dilated encoder); ``unet`` resizes internally and takes any size. :func:`size_divisor` gives the
number for a built model, so callers (tiling, mapping) can pad.

Dropout: the segmentation head becomes ``Sequential(Dropout2d(p), head)``, with ``Dropout2d``
present even for ``p = 0`` so ``state_dict`` keys never depend on ``dropout``; MC-dropout switches
that module to train mode at inference.

Bands other than RGB: with pretrained weights smp adapts the first convolution itself
(``encoder.set_in_channels``): 1 band sums the RGB kernels; ``C > 3`` bands repeat them
cyclically and scale by ``3 / C``. Weights come from the Hugging Face hub cache; offline, set
``HF_HUB_OFFLINE=1`` so a missing file fails at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import segmentation_models_pytorch as smp
from torch import nn

from landlearn.errors import LandlearnError
from landlearn.models.registry import register_model
from landlearn.registry import unknown_name

log = logging.getLogger(__name__)

__all__ = ["deeplabv3", "deeplabv3plus", "size_divisor", "unet", "unetplusplus"]


def _check_encoder(encoder: str) -> None:
    names = smp.encoders.get_encoder_names()
    if encoder.startswith("tu-") or encoder in names:  # "tu-<timm name>": any timm backbone
        return
    raise unknown_name("encoder", encoder, names, "see smp.encoders.get_encoder_names()")


def _smp(
    arch: str,
    *,
    in_channels: int,
    num_classes: int,
    pretrained: bool,
    dropout: float,
    encoder: str,
    **kwargs: Any,
) -> nn.Module:
    """Build an smp model, wrap its head with dropout, map weight failures to LandlearnError."""
    if in_channels < 1 or num_classes < 1:
        raise LandlearnError(
            f"in_channels and num_classes must be >= 1, got {in_channels} and {num_classes}"
        )
    _check_encoder(encoder)
    weights: str | bool | None = None
    if pretrained:
        weights = True if encoder.startswith("tu-") else "imagenet"
    try:
        model = smp.create_model(
            arch,
            encoder_name=encoder,
            encoder_weights=weights,
            in_channels=in_channels,
            classes=num_classes,
            **kwargs,
        )
    except OSError as exc:  # huggingface_hub's offline / HTTP / not-found errors are OSErrors
        if not pretrained:
            raise
        raise LandlearnError(
            f"pretrained weights for {encoder!r} could not be fetched (offline?); "
            "set pretrained: false or place them in the cache"
        ) from exc
    except KeyError as exc:  # smp: this encoder has no "imagenet" weights
        if not pretrained:
            raise
        raise LandlearnError(
            f"encoder {encoder!r} has no imagenet weights in smp; set pretrained: false"
        ) from exc
    if pretrained:
        log.info("loaded pretrained %s encoder with %d input bands", encoder, in_channels)
    model.segmentation_head = nn.Sequential(nn.Dropout2d(dropout), model.segmentation_head)
    return model


def size_divisor(model: nn.Module) -> int:
    """The number H and W of the input must be multiples of (1 for non-smp models)."""
    encoder = getattr(model, "encoder", None)
    if encoder is None or not getattr(model, "requires_divisible_input_shape", False):
        return 1
    return int(encoder.output_stride)


# registry name → what the builder's docstring says; smp.create_model takes the same names
_ARCHITECTURES = {
    "unet": "smp U-Net; ``kwargs`` go to ``smp.Unet`` (e.g. ``decoder_channels``).",
    "unetplusplus": "smp U-Net++; ``kwargs`` go to ``smp.UnetPlusPlus``.",
    "deeplabv3": "smp DeepLabV3 (output stride 8); ``kwargs`` go to ``smp.DeepLabV3``.",
    "deeplabv3plus": "smp DeepLabV3+ (output stride 16); ``kwargs`` go to ``smp.DeepLabV3Plus``.",
}


def _builder(arch: str, doc: str) -> Callable[..., nn.Module]:
    def build(
        *,
        in_channels: int,
        num_classes: int,
        pretrained: bool = False,
        dropout: float = 0.0,
        encoder: str = "resnet18",
        **kwargs: Any,
    ) -> nn.Module:
        return _smp(
            arch,
            in_channels=in_channels,
            num_classes=num_classes,
            pretrained=pretrained,
            dropout=dropout,
            encoder=encoder,
            **kwargs,
        )

    build.__name__ = build.__qualname__ = arch
    build.__doc__ = doc
    return register_model(arch, task="segmentation")(build)


unet, unetplusplus, deeplabv3, deeplabv3plus = (
    _builder(arch, doc) for arch, doc in _ARCHITECTURES.items()
)
