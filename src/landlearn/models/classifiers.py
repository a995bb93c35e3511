"""Scene classifiers: timm backbones by name, plus a tiny CNN for tests and demos.

Every builder returns a model mapping ``(B, C, H, W)`` float images to ``(B, K)`` logits.

Dropout sits in a module right before the final linear layer (``nn.Dropout`` inside the
classifier, as ``Sequential(Dropout(p), Linear)``) and is always present, ``p = 0`` included, so
that the ``state_dict`` keys do not depend on ``dropout`` and MC-dropout can switch those modules
to train mode at inference. (timm's own ``drop_rate`` is a functional ``F.dropout`` in ResNets,
which MC-dropout could not find, so we do not use it.)

Bands other than RGB: timm's ``in_chans`` adapts a pretrained first convolution itself
(``timm.models.adapt_input_conv``): for 1 band the RGB kernels are summed; for ``C > 3`` bands
the RGB kernels are repeated cyclically (R, G, B, R, G, B, ...) and scaled by ``3 / C`` so the
activation scale stays that of ImageNet. ``tests/models/test_classifiers.py`` checks this with a
local weights file.

Any other timm classifier: the model name ``timm:<timm name>`` (e.g. ``timm:convnext_atto``,
``timm:efficientnet_b0``) builds it through the same path (``in_chans``, dropout before the
classifier, weight errors); the prefix keeps a misspelt registered name (``resnet81``) an error
with a "did you mean" instead of a timm model, and ``timm:convnext_ato`` names the nearest timm
model. ``landlearn.models.list_models()`` does not list them (``timm.list_models()`` does).

Pretrained weights come from the Hugging Face hub cache (``HF_HOME``). Offline, set
``HF_HUB_OFFLINE=1`` so a missing file fails at once instead of after ~45 s of retries, or pass
``pretrained_cfg_overlay={"file": "/path/to/weights.safetensors"}`` to use a local file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, cast

import timm
from torch import Tensor, nn

from landlearn.errors import LandlearnError
from landlearn.models.registry import register_model, register_model_prefix
from landlearn.registry import unknown_name

log = logging.getLogger(__name__)

__all__ = [
    "SmallCNN",
    "resnet18",
    "resnet50",
    "small_cnn",
    "timm_classifier",
    "vit_small",
    "wide_resnet50_2",
]


def _weights_error(name: str) -> LandlearnError:
    return LandlearnError(
        f"pretrained weights for {name!r} could not be fetched (offline?); "
        "set pretrained: false or place them in the cache"
    )


def _wrap_classifier(model: nn.Module, dropout: float) -> nn.Module:
    """Put ``nn.Dropout(dropout)`` in front of a timm model's final linear layer."""
    cfg = cast(dict[str, Any], model.pretrained_cfg)
    attrs = cfg["classifier"]  # "fc" (ResNets), "head" (ViT), "head.fc" (ConvNeXt) or a tuple
    for attr in [attrs] if isinstance(attrs, str) else list(attrs):
        parent: nn.Module = model
        *path, last = str(attr).split(".")
        for part in path:
            parent = getattr(parent, part)
        head = getattr(parent, last)
        setattr(parent, last, nn.Sequential(nn.Dropout(dropout), head))
    return model


def _timm(
    timm_name: str,
    *,
    in_channels: int,
    num_classes: int,
    pretrained: bool,
    dropout: float,
    **kwargs: Any,
) -> nn.Module:
    """Build a timm model, mapping weight-fetch failures to ``LandlearnError``."""
    if in_channels < 1 or num_classes < 1:
        raise LandlearnError(
            f"in_channels and num_classes must be >= 1, got {in_channels} and {num_classes}"
        )
    try:
        model = timm.create_model(
            timm_name,
            pretrained=pretrained,
            in_chans=in_channels,
            num_classes=num_classes,
            **kwargs,
        )
    except OSError as exc:  # huggingface_hub's offline / HTTP / not-found errors are OSErrors
        if not pretrained:
            raise
        raise _weights_error(timm_name) from exc
    if pretrained:
        log.info("loaded pretrained %s with %d input bands", timm_name, in_channels)
    return _wrap_classifier(model, dropout)


def _timm_builder(name: str, title: str) -> Callable[..., nn.Module]:
    return register_model(name, task="classification")(_make_timm_builder(name, title))


def _make_timm_builder(name: str, title: str) -> Callable[..., nn.Module]:
    def build(
        *,
        in_channels: int,
        num_classes: int,
        pretrained: bool = False,
        dropout: float = 0.0,
        small_input: bool = False,
        **kwargs: Any,
    ) -> nn.Module:
        model = _timm(
            name,
            in_channels=in_channels,
            num_classes=num_classes,
            pretrained=pretrained,
            dropout=dropout,
            **kwargs,
        )
        if small_input:
            if not isinstance(getattr(model, "maxpool", None), nn.Module):
                raise LandlearnError(
                    f"small_input drops a ResNet-style stem max-pool; {name!r} has none"
                )
            # The ImageNet stem divides the side by 4 (stride-2 conv, stride-2 max-pool): a
            # 64x64 chip reaches the last stage as 2x2. Without the pool every stage keeps twice
            # the resolution (4x the compute); the weights are the same, pretrained ones too.
            model.maxpool = nn.Identity()
        return model

    build.__name__ = build.__qualname__ = name.replace("-", "_").replace(".", "_")
    build.__doc__ = (
        f"timm {title}; ``small_input=True`` drops the stem's max-pool (for chips of about "
        "64 px and less); other ``kwargs`` go to ``timm.create_model``."
    )
    return build


@register_model_prefix("timm", task="classification")
def timm_classifier(timm_name: str) -> Callable[..., nn.Module]:
    """The builder of ``timm:<timm_name>``: any model ``timm.list_models()`` knows.

    Raises:
        LandlearnError: a name timm does not know (with the nearest one).
    """
    if not timm.is_model(timm_name):
        raise unknown_name("timm model", timm_name, timm.list_models(), "see timm.list_models()")
    return _make_timm_builder(timm_name, timm_name)


resnet18 = _timm_builder("resnet18", "ResNet-18")
resnet50 = _timm_builder("resnet50", "ResNet-50")
wide_resnet50_2 = _timm_builder("wide_resnet50_2", "Wide ResNet-50-2")


@register_model("vit_small", task="classification")
def vit_small(
    *,
    in_channels: int,
    num_classes: int,
    pretrained: bool = False,
    dropout: float = 0.0,
    img_size: int = 224,
    patch_size: int = 16,
    **kwargs: Any,
) -> nn.Module:
    """Timm ``vit_small_patch16_224`` with ``dynamic_img_size`` so 64×64 chips work.

    The position embedding is interpolated to each input's size, so H and W only need to be
    multiples of ``patch_size``; a different ``patch_size`` resamples pretrained patch kernels.
    """
    kwargs.setdefault("dynamic_img_size", True)
    return _timm(
        "vit_small_patch16_224",
        in_channels=in_channels,
        num_classes=num_classes,
        pretrained=pretrained,
        dropout=dropout,
        img_size=img_size,
        patch_size=patch_size,
        **kwargs,
    )


class SmallCNN(nn.Module):
    """A few conv-bn-relu blocks, each halving H and W, then global pooling, dropout, linear."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        width: int = 16,
        depth: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for i in range(depth):
            out = width * 2**i
            layers += [
                nn.Conv2d(channels, out, 3, stride=1 if i == 0 else 2, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, K)`` for images ``(B, C, H, W)``."""
        return self.fc(self.pool(self.features(x)))


@register_model("small_cnn", task="classification")
def small_cnn(
    *,
    in_channels: int,
    num_classes: int,
    pretrained: bool = False,
    dropout: float = 0.0,
    width: int = 16,
    depth: int = 3,
) -> nn.Module:
    """A tiny CNN for tests and demos; it has no pretrained weights.

    Raises:
        LandlearnError: ``pretrained=True`` (there are none), or sizes below 1.
    """
    if pretrained:
        raise LandlearnError("small_cnn has no pretrained weights; set pretrained: false")
    if min(in_channels, num_classes, width, depth) < 1:
        raise LandlearnError(
            f"small_cnn needs in_channels, num_classes, width, depth >= 1, got "
            f"{in_channels}, {num_classes}, {width}, {depth}"
        )
    return SmallCNN(in_channels, num_classes, width=width, depth=depth, dropout=dropout)
