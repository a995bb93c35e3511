"""Multi-input models. Early fusion: the inputs stacked along channels, then one network.

A multi-input model's module has ``input_names`` (the sample keys it reads, in order) and takes a
dict ``{name: (B, C_name, H, W)}`` in ``forward``; its builder takes ``in_channels`` as a mapping
input name → band count, whose order is the stacking order. Each input arrives normalised with
its own training-split statistics (the datamodule's ``normalize``), so bands of different units
(S2 reflectance, S1 dB) share one scale before they meet in the first convolution.

``early_fusion_unet`` wraps the smp U-Net of :mod:`landlearn.models.segmenters` (same encoders,
dropout before the segmentation head, same pretrained first-convolution adaptation for the
stacked band count). With one input it is the U-Net on that input, so single-sensor baselines
run the same code path.

``early_fusion`` is the scene-level form (a timm classifier of the stacked bands). Both take
tables: a table row (already standardised by the table encoder) is broadcast as constant extra
channels over the raster grid, so the first convolution sees image and metadata together (the
study's "join at the encoder input"). With ``modality_dropout`` (see
:mod:`landlearn.models.branches`) a dropped or absent input becomes zeros — its training mean,
as every input is normalised — and the model predicts without it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import segmentation_models_pytorch as smp
import torch
from torch import Tensor, nn

from landlearn.errors import LandlearnError
from landlearn.models.branches import FusionInputs, feature_width, raster_encoder
from landlearn.models.registry import register_model
from landlearn.models.segmenters import _smp

log = logging.getLogger(__name__)

__all__ = ["EarlyFusion", "check_in_channels", "early_fusion", "early_fusion_unet"]


def check_in_channels(in_channels: Any, model: str) -> dict[str, int]:
    """``in_channels`` of a multi-input builder as ``{name: bands}``, validated.

    Raises:
        LandlearnError: not a mapping of input names to positive band counts.
    """
    if not isinstance(in_channels, Mapping) or not in_channels:
        raise LandlearnError(
            f"{model} takes in_channels per input, e.g. {{s2: 13, s1: 2}}, got {in_channels!r}"
        )
    out: dict[str, int] = {}
    for name, count in in_channels.items():
        ok = isinstance(count, int) and not isinstance(count, bool) and count >= 1
        if not isinstance(name, str) or not name or not ok:
            raise LandlearnError(
                f"{model}: in_channels maps input names to band counts >= 1, got {name!r}: "
                f"{count!r}"
            )
        out[name] = int(count)
    return out


class EarlyFusion(nn.Module):
    """Stack the named inputs along channels (in ``input_names`` order) and run ``net``.

    Args:
        in_channels: input name → band count (columns for a table), in stacking order.
        net: the network of the stacked ``sum(in_channels)`` bands.
        tables: the table inputs, broadcast as constant channels.
        modality_dropout: training-time drop probability per input and sample (zeros).
        strict: refuse an absent input even after modality dropout.
        model: the name in messages.
    """

    def __init__(
        self,
        in_channels: Mapping[str, int],
        net: nn.Module,
        *,
        tables: tuple[str, ...] | list[str] = (),
        modality_dropout: float = 0.0,
        strict: bool = False,
        model: str = "early_fusion_unet",
    ) -> None:
        super().__init__()
        self.input_names: tuple[str, ...] = tuple(in_channels)
        self.in_channels: dict[str, int] = dict(in_channels)
        self.fusion = FusionInputs(
            in_channels, tables, model=model, modality_dropout=modality_dropout, strict=strict
        )
        self.net = net

    @property
    def last_missing(self) -> tuple[str, ...]:
        """Inputs absent from the last batch (predicted without them)."""
        return self.fusion.last_missing

    @property
    def encoder(self) -> nn.Module | None:
        """The wrapped network's encoder (``size_divisor`` reads its output stride)."""
        encoder = getattr(self.net, "encoder", None)
        return encoder if isinstance(encoder, nn.Module) else None

    @property
    def requires_divisible_input_shape(self) -> bool:
        """Whether H and W must be multiples of the encoder's output stride (as the net's)."""
        return bool(getattr(self.net, "requires_divisible_input_shape", False))

    def stack(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """``(B, sum C, H, W)``: the inputs in ``input_names`` order, checked.

        Raises:
            LandlearnError: a missing input, a wrong band count, or inputs of different shapes.
        """
        if self.fusion.tables or self.fusion.modality_dropout > 0:
            return self._stack_with_tables(inputs)
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise LandlearnError(
                f"the model reads inputs {list(self.input_names)}; missing {missing} "
                f"(got {sorted(inputs)})"
            )
        parts = [inputs[n] for n in self.input_names]
        for name, x in zip(self.input_names, parts, strict=True):
            if x.ndim != 4 or x.shape[1] != self.in_channels[name]:
                raise LandlearnError(
                    f"input {name!r} must be (B, {self.in_channels[name]}, H, W), "
                    f"got {tuple(x.shape)}; check its bands"
                )
            if (x.shape[0], *x.shape[2:]) != (parts[0].shape[0], *parts[0].shape[2:]):
                raise LandlearnError(
                    f"inputs {self.input_names[0]!r} {tuple(parts[0].shape)} and {name!r} "
                    f"{tuple(x.shape)} differ in batch or grid; early fusion needs one grid"
                )
        return torch.cat(parts, dim=1)  # (B, sum C, H, W)

    def _stack_with_tables(self, inputs: Mapping[str, Tensor]) -> Tensor:
        got, batch, device = self.fusion.present(inputs)
        keep = self.fusion.keep(got, batch, device)  # (B, N)
        rasters = [
            (n, x) for n, x in zip(self.input_names, got, strict=True)
            if x is not None and n not in self.fusion.tables
        ]  # fmt: skip
        if not rasters:
            raise LandlearnError(
                f"{self.fusion.model_name} needs at least one raster input; got {sorted(inputs)}"
            )
        first, ref = rasters[0]
        for name, x in rasters:
            if x.shape[2:] != ref.shape[2:]:
                raise LandlearnError(
                    f"inputs {first!r} {tuple(ref.shape)} and {name!r} {tuple(x.shape)} differ "
                    "in grid; early fusion needs one grid"
                )
        h, w = ref.shape[2:]
        parts = []
        for i, (name, given) in enumerate(zip(self.input_names, got, strict=True)):
            c = self.in_channels[name]
            if given is None:
                parts.append(ref.new_zeros(batch, c, h, w))
                continue
            if name in self.fusion.tables:
                given = given.to(ref.dtype)[:, :, None, None].expand(batch, c, h, w)  # (B,F,H,W)
            parts.append(given * keep[:, i].to(ref.dtype)[:, None, None, None])
        return torch.cat(parts, dim=1)  # (B, sum C, H, W)

    def forward(self, inputs: Mapping[str, Tensor] | Tensor) -> Tensor:
        """Logits of the wrapped network for a dict of inputs (or one tensor already stacked)."""
        if isinstance(inputs, Tensor):
            total = sum(self.in_channels.values())
            if inputs.ndim != 4 or inputs.shape[1] != total:
                raise LandlearnError(
                    f"a stacked input must be (B, {total}, H, W), got {tuple(inputs.shape)}"
                )
            return self.net(inputs)
        return self.net(self.stack(inputs))

    def extra_repr(self) -> str:
        """Shown in the module's repr."""
        return f"in_channels={self.in_channels}"


@register_model("early_fusion", task="classification", multi_input=True)
def early_fusion(
    *,
    in_channels: Mapping[str, int],
    num_classes: int,
    pretrained: bool = False,
    dropout: float = 0.0,
    tables: tuple[str, ...] | list[str] = (),
    encoder: str = "resnet18",
    modality_dropout: float = 0.0,
    strict: bool = False,
) -> nn.Module:
    """A timm classifier of the inputs stacked along channels, tables broadcast as channels.

    Args:
        in_channels: input name → bands (raster) or columns (table), in stacking order.
        tables: which inputs are tables (filled from the data's input specs by the task).
        encoder: the timm model (``in_chans`` = the stacked count; with ``pretrained`` timm
            adapts the first convolution).
        modality_dropout: training-time probability of dropping an input per sample.
        strict: refuse an absent input at prediction time.

    Raises:
        LandlearnError: bad ``in_channels`` / ``tables``, an unknown timm name, weights not
            available.
    """
    channels = check_in_channels(in_channels, "early_fusion")
    body = raster_encoder(encoder, sum(channels.values()), pretrained)
    net = nn.Sequential(body, nn.Dropout(dropout), nn.Linear(feature_width(body), num_classes))
    return EarlyFusion(
        channels,
        net,
        tables=list(tables),
        modality_dropout=modality_dropout,
        strict=strict,
        model="early_fusion",
    )


@register_model("early_fusion_unet", task="segmentation", multi_input=True, kwargs_from=smp.Unet)
def early_fusion_unet(
    *,
    in_channels: Mapping[str, int],
    num_classes: int,
    pretrained: bool = False,
    dropout: float = 0.0,
    encoder: str = "resnet18",
    tables: tuple[str, ...] | list[str] = (),
    modality_dropout: float = 0.0,
    strict: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Smp U-Net on the inputs stacked along channels; ``in_channels`` is ``{name: bands}``.

    ``kwargs`` go to ``smp.Unet`` (e.g. ``decoder_channels``; checked against its signature).
    ``tables``, ``modality_dropout``, ``strict`` as for ``early_fusion``.
    With ``pretrained``, smp adapts the first convolution to the stacked band count (see
    ``landlearn.models.segmenters``).

    Raises:
        LandlearnError: ``in_channels`` not a mapping of positive band counts, or the errors of
            the U-Net builder (unknown encoder, weights not available).
    """
    channels = check_in_channels(in_channels, "early_fusion_unet")
    ours = {"encoder_name": "encoder", "encoder_weights": "pretrained", "classes": "num_classes"}
    for key in kwargs:
        if key in ours:
            raise LandlearnError(f"early_fusion_unet: set {ours[key]!r}, not smp's {key!r}")
    net = _smp(
        "unet",
        in_channels=sum(channels.values()),
        num_classes=num_classes,
        pretrained=pretrained,
        dropout=dropout,
        encoder=encoder,
        **kwargs,
    )
    return EarlyFusion(
        channels, net, tables=list(tables), modality_dropout=modality_dropout, strict=strict
    )
