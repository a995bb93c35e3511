"""A small Wide-ResNet (Zagoruyko & Komodakis 2016), the classifier JEM is usually trained with.

``wide_resnet``: WRN-``depth``-``widen`` with pre-activation basic blocks, three stages of
``16·widen``, ``32·widen``, ``64·widen`` channels (stride 1, 2, 2), global average pooling and a
dropout + linear head (``fc``, as in :mod:`landlearn.models.classifiers`, so MC dropout finds it).
``depth`` is ``6n + 4``: 10 gives one block per stage, 28 gives four (JEM's WRN-28-10).

``norm``: ``batch`` (default), ``group`` (8 groups; no running statistics) or ``none`` (an
identity). Grathwohl et al. train JEM without batch norm: SGLD samples drawn in eval mode meet
running statistics of real data, and a batch of samples in train mode would bias the statistics;
``none`` is that choice. Leaky-ReLU (0.2) follows their code, which keeps the input gradient that
SGLD follows from vanishing on negative activations.

``wide_resnet_unet`` (segmentation): the same stages as a U-Net encoder (full, 1/2 and 1/4
resolution) and a decoder of the same blocks, each step upsampling bilinearly to the skip's size
and joining it; a dropout and 1×1 conv head gives per-pixel logits at the input's size (any
H, W). It is the Wide-ResNet + U-Net of the founding study's segmentation JEM.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from landlearn.errors import LandlearnError
from landlearn.models.registry import register_model

__all__ = ["WideResNet", "WideResNetUNet", "wide_resnet", "wide_resnet_unet"]

_NORMS = ("batch", "group", "none")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    return nn.Identity()


class _Block(nn.Module):
    """Pre-activation basic block: norm → act → 3×3 conv → norm → act → 3×3 conv (+ shortcut)."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm: str) -> None:
        super().__init__()
        self.n1 = _norm(norm, c_in)
        self.c1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=norm == "none")
        self.n2 = _norm(norm, c_out)
        self.c2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=True)
        self.act = nn.LeakyReLU(0.2)
        self.short = (
            nn.Conv2d(c_in, c_out, 1, stride, bias=True) if stride != 1 or c_in != c_out else None
        )

    def forward(self, x: Tensor) -> Tensor:
        """The residual sum."""
        out = self.c1(self.act(self.n1(x)))
        out = self.c2(self.act(self.n2(out)))
        return out + (x if self.short is None else self.short(x))


class WideResNet(nn.Module):
    """WRN-``depth``-``widen`` for ``(B, C, H, W)`` images of any size; logits ``(B, K)``."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        depth: int = 10,
        widen: int = 2,
        norm: str = "batch",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.stem = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=True)
        layers: list[nn.Module] = []
        for stage in range(3):
            for i in range(n):
                c_in = widths[stage] if i == 0 else widths[stage + 1]
                layers.append(_Block(c_in, widths[stage + 1], 2 if i == 0 and stage else 1, norm))
        self.blocks = nn.Sequential(*layers)
        self.head_norm = _norm(norm, widths[-1])
        self.act = nn.LeakyReLU(0.2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(widths[-1], num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        """Logits."""
        return self.fc(self.pool(self.act(self.head_norm(self.blocks(self.stem(x))))))


def _check(
    name: str, pretrained: bool, depth: int, norm: str, in_channels: int, classes: int, widen: int
) -> None:
    if pretrained:
        raise LandlearnError(f"{name} has no pretrained weights; set pretrained: false")
    if depth < 10 or (depth - 4) % 6:
        raise LandlearnError(f"{name} depth must be 6n + 4 (10, 16, 22, 28 …), got {depth}")
    if norm not in _NORMS:
        raise LandlearnError(f"{name} norm must be one of {', '.join(_NORMS)}, got {norm!r}")
    if min(in_channels, classes, widen) < 1:
        raise LandlearnError(
            f"{name} needs in_channels, num_classes, widen >= 1, got "
            f"{in_channels}, {classes}, {widen}"
        )


@register_model("wide_resnet", task="classification")
def wide_resnet(
    *,
    in_channels: int,
    num_classes: int,
    pretrained: bool = False,
    dropout: float = 0.0,
    depth: int = 10,
    widen: int = 2,
    norm: str = "batch",
) -> nn.Module:
    """WRN-``depth``-``widen`` (default WRN-10-2, 0.3 M parameters); no pretrained weights.

    Raises:
        LandlearnError: ``pretrained=True``, a depth that is not ``6n + 4``, or an unknown norm.
    """
    _check("wide_resnet", pretrained, depth, norm, in_channels, num_classes, widen)
    return WideResNet(in_channels, num_classes, depth, widen, norm, dropout)


class WideResNetUNet(nn.Module):
    """Wide-ResNet stages as a U-Net: logits ``(B, K, H, W)`` for any ``H, W``."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        depth: int = 10,
        widen: int = 2,
        norm: str = "batch",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        n = (depth - 4) // 6
        w = [16, 16 * widen, 32 * widen, 64 * widen]
        self.stem = nn.Conv2d(in_channels, w[0], 3, 1, 1, bias=True)

        def stage(c_in: int, c_out: int, stride: int) -> nn.Sequential:
            first = _Block(c_in, c_out, stride, norm)
            return nn.Sequential(first, *[_Block(c_out, c_out, 1, norm) for _ in range(n - 1)])

        self.down = nn.ModuleList([stage(w[i], w[i + 1], 1 if i == 0 else 2) for i in range(3)])
        self.up = nn.ModuleList([stage(w[3] + w[2], w[2], 1), stage(w[2] + w[1], w[1], 1)])
        self.head_norm = _norm(norm, w[1])
        self.act = nn.LeakyReLU(0.2)
        self.segmentation_head = nn.Sequential(
            nn.Dropout2d(dropout), nn.Conv2d(w[1], num_classes, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        """Per-pixel logits."""
        skips = []
        h = self.stem(x)
        for block in self.down:
            h = block(h)
            skips.append(h)
        h = skips.pop()
        for block in self.up:
            skip = skips.pop()
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = block(torch.cat([h, skip], dim=1))
        return self.segmentation_head(self.act(self.head_norm(h)))


@register_model("wide_resnet_unet", task="segmentation")
def wide_resnet_unet(
    *,
    in_channels: int,
    num_classes: int,
    pretrained: bool = False,
    dropout: float = 0.0,
    depth: int = 10,
    widen: int = 2,
    norm: str = "batch",
) -> nn.Module:
    """A U-Net of WRN-``depth``-``widen`` stages (default 10-2); no pretrained weights.

    Raises:
        LandlearnError: as :func:`wide_resnet`.
    """
    _check("wide_resnet_unet", pretrained, depth, norm, in_channels, num_classes, widen)
    return WideResNetUNet(in_channels, num_classes, depth, widen, norm, dropout)
