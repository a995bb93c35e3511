"""Encoder-decoder fusion for segmentation: one smp encoder per raster, one U-Net decoder.

Each raster input (all on one grid: the aligned datamodule resamples them) runs through its own
smp encoder (any smp name or ``tu-<timm name>``, its own band count), giving features at six
scales (the input itself, then strides 2 … 32). Per scale they are joined, and the U-Net decoder
reads the joined features with its skip connections:

- ``late_fusion_unet`` concatenates them (the decoder sees every sensor's features side by side);
- ``gated_fusion_unet`` projects each to a common width with a 1×1 convolution and mixes them
  with a per-pixel softmax gate over the inputs (a spatial gated multimodal unit): where one
  sensor is blank (cloud), the gate can move to the other, pixel by pixel.

A table input (a row per chip) modulates every scale by FiLM: ``y ← y · (1 + γ) + β`` with
``γ, β`` from the table's MLP. Modality dropout and absent inputs as in
:mod:`landlearn.models.branches`: a dropped raster contributes zeros (late) or a closed gate
(gated); a dropped table leaves the features unmodulated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
from segmentation_models_pytorch.base import SegmentationHead
from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoder
from segmentation_models_pytorch.encoders import get_encoder
from torch import Tensor, nn

from landlearn.errors import LandlearnError
from landlearn.models.branches import FusionInputs, FusionModule, TableMLP
from landlearn.models.fusion import check_in_channels
from landlearn.models.registry import register_model
from landlearn.models.segmenters import _check_encoder

__all__ = ["FusionUnet", "gated_fusion_unet", "late_fusion_unet"]

DEPTH = 5


def _encoder(name: str, bands: int, pretrained: bool) -> nn.Module:
    _check_encoder(name)
    weights: str | bool | None = None
    if pretrained:
        weights = True if name.startswith("tu-") else "imagenet"
    try:
        return get_encoder(name, in_channels=bands, depth=DEPTH, weights=weights)
    except (OSError, KeyError) as exc:
        if not pretrained:
            raise
        raise LandlearnError(
            f"pretrained weights for {name!r} could not be fetched or do not exist; "
            "set pretrained: false or place them in the cache"
        ) from exc


class FusionUnet(FusionModule):
    """Encoders per raster → per-scale join (concat or gate) → FiLM by tables → U-Net decoder.

    Args:
        fusion: the inputs and their missing-input rule.
        encoders: raster input name → smp encoder.
        tables: table input name → ``TableMLP``.
        join: ``concat`` or ``gate``.
        num_classes: output channels.
        decoder_channels: of the U-Net decoder, one per block.
        dropout: ``Dropout2d`` before the segmentation head.
    """

    def __init__(
        self,
        fusion: FusionInputs,
        encoders: nn.ModuleDict,
        tables: nn.ModuleDict,
        *,
        join: str,
        num_classes: int,
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if join not in ("concat", "gate"):
            raise LandlearnError(f"join must be 'concat' or 'gate', got {join!r}")
        if not encoders:
            raise LandlearnError(f"{fusion.model_name} needs at least one raster input")
        self.fusion, self.join = fusion, join
        self.encoders, self.tables = encoders, tables
        self.rasters = tuple(n for n in fusion.input_names if n in encoders)
        self.channels = {n: [int(c) for c in cast(Any, encoders[n]).out_channels]
                         for n in self.rasters}  # fmt: skip
        per_input = [self.channels[n] for n in self.rasters]
        if join == "concat":
            joined = [sum(c[s] for c in per_input) for s in range(DEPTH + 1)]
        else:
            joined = [max(c[s] for c in per_input) for s in range(DEPTH + 1)]
            self.project = nn.ModuleList(
                nn.ModuleDict(
                    {n: nn.Conv2d(self.channels[n][s], joined[s], 1) for n in self.rasters}
                )
                for s in range(DEPTH + 1)
            )
            self.gate = nn.ModuleList(
                nn.Conv2d(sum(c[s] for c in per_input), len(self.rasters), 1)
                for s in range(DEPTH + 1)
            )
        self.joined_channels = joined
        self.film = nn.ModuleDict(
            {
                n: nn.Linear(cast(TableMLP, mlp).out_features, 2 * sum(joined))
                for n, mlp in tables.items()
            }
        )
        for layer in self.film.values():  # start as the identity: γ = β = 0
            nn.init.zeros_(cast(nn.Linear, layer).weight)
            nn.init.zeros_(cast(nn.Linear, layer).bias)
        self.decoder = UnetDecoder(
            encoder_channels=joined, decoder_channels=list(decoder_channels), n_blocks=DEPTH
        )
        self.segmentation_head = nn.Sequential(
            nn.Dropout2d(dropout),
            SegmentationHead(int(decoder_channels[-1]), num_classes, kernel_size=3),
        )
        self.last_gates: Tensor | None = None  # (B, N) mean gate per raster, last batch

    @property
    def encoder(self) -> nn.Module:
        """The first raster encoder (``size_divisor`` reads its output stride)."""
        return self.encoders[self.rasters[0]]

    @property
    def requires_divisible_input_shape(self) -> bool:
        """H and W must be multiples of 32 (the encoders' stride) for the skips to line up."""
        return True

    def _scales(self, got: Mapping[str, Tensor | None], keep: Tensor, batch: int) -> list[Tensor]:
        """Joined features per scale, ``(B, joined[s], H / 2^s, W / 2^s)``."""
        names = self.fusion.input_names
        ref = next(x for n, x in got.items() if n in self.encoders and x is not None)
        size = ref.shape[-2:]
        feats: dict[str, list[Tensor] | None] = {}
        for n in self.rasters:
            x = got[n]
            if x is not None and tuple(x.shape[-2:]) != tuple(size):
                raise LandlearnError(
                    f"{self.fusion.model_name}: rasters {self.rasters[0]!r} and {n!r} are on "
                    f"different grids {tuple(size)} and {tuple(x.shape[-2:])}; align them first"
                )
            feats[n] = None if x is None else list(self.encoders[n](x))
        out = []
        for s in range(DEPTH + 1):
            shape = next(f[s].shape[-2:] for f in feats.values() if f is not None)
            parts: list[Tensor] = []
            for n in self.rasters:
                f = feats[n]
                if f is None:
                    parts.append(ref.new_zeros(batch, self.channels[n][s], *shape))
                    continue
                k = keep[:, names.index(n)].to(f[s].dtype)[:, None, None, None]
                parts.append(f[s] * k)  # (B, C_s, h, w)
            if self.join == "concat":
                out.append(torch.cat(parts, dim=1))
                continue
            logits = self.gate[s](torch.cat(parts, dim=1))  # (B, N, h, w)
            closed = ~keep[:, [names.index(n) for n in self.rasters]]  # (B, N)
            logits = logits.masked_fill(closed[:, :, None, None], float("-inf"))
            z = torch.softmax(logits, dim=1)
            if s == DEPTH:
                self.last_gates = z.detach().mean(dim=(2, 3))
            project = cast(nn.ModuleDict, self.project[s])
            proj = [project[n](p) for n, p in zip(self.rasters, parts, strict=True)]
            out.append(sum(z[:, i : i + 1] * p for i, p in enumerate(proj)))
        return out

    def _film(self, scales: list[Tensor], got: Mapping[str, Tensor | None], keep: Tensor) -> None:
        names = self.fusion.input_names
        for n, mlp in self.tables.items():
            x = got[n]
            if x is None:
                continue
            k = keep[:, names.index(n)].float()[:, None]  # (B, 1)
            gb = self.film[n](mlp(x)) * k  # (B, 2 * sum joined)
            gamma, beta = gb.split(sum(self.joined_channels), dim=1)
            start = 0
            for s, c in enumerate(self.joined_channels):
                g, b = gamma[:, start : start + c], beta[:, start : start + c]
                scales[s] = scales[s] * (1 + g[:, :, None, None]) + b[:, :, None, None]
                start += c

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """``(B, num_classes, H, W)`` logits."""
        got_list, batch, device = self.fusion.present(inputs)
        got = dict(zip(self.fusion.input_names, got_list, strict=True))
        if all(got[n] is None for n in self.rasters):
            raise LandlearnError(
                f"{self.fusion.model_name} needs at least one of its rasters "
                f"{list(self.rasters)}; got only {sorted(inputs)}"
            )
        keep = self.fusion.keep(got_list, batch, device)
        raster_idx = [self.fusion.input_names.index(n) for n in self.rasters]
        empty = ~keep[:, raster_idx].any(dim=1)  # all rasters dropped: keep the present ones
        if empty.any():
            there = torch.tensor([got[n] is not None for n in self.rasters], device=device)
            for j, i in enumerate(raster_idx):
                keep[empty, i] = there[j]
        scales = self._scales(got, keep, batch)
        self._film(scales, got, keep)
        return self.segmentation_head(self.decoder(scales))


def _build(
    name: str,
    join: str,
    *,
    in_channels: Mapping[str, int],
    num_classes: int,
    pretrained: bool,
    dropout: float,
    tables: Sequence[str],
    encoder: str,
    encoders: Mapping[str, str] | None,
    table_hidden: Sequence[int],
    table_dropout: float,
    modality_dropout: float,
    strict: bool,
    decoder_channels: Sequence[int],
) -> nn.Module:
    channels = check_in_channels(in_channels, name)
    fusion = FusionInputs(
        channels, tables, model=name, modality_dropout=modality_dropout, strict=strict
    )
    chosen = dict(encoders or {})
    unknown = sorted(set(chosen) - set(channels) | (set(chosen) & set(fusion.tables)))
    if unknown:
        raise LandlearnError(f"{name}: encoders names {unknown}, not among its raster inputs")
    if len(decoder_channels) != DEPTH:
        raise LandlearnError(
            f"{name}: decoder_channels needs {DEPTH} sizes, got {decoder_channels}"
        )
    enc = nn.ModuleDict()
    tab = nn.ModuleDict()
    for key, bands in channels.items():
        if key in fusion.tables:
            tab[key] = TableMLP(bands, table_hidden, dropout=table_dropout)
        else:
            enc[key] = _encoder(chosen.get(key, encoder), bands, pretrained)
    return FusionUnet(
        fusion,
        enc,
        tab,
        join=join,
        num_classes=num_classes,
        decoder_channels=decoder_channels,
        dropout=dropout,
    )


_DOC_ARGS = """
    Args:
        in_channels: input name → bands (raster) or columns (table), in model order.
        tables: which inputs are tables (filled from the data's input specs by the task).
        encoder: smp encoder of every raster (``resnet18``, ``tu-convnext_atto`` ...);
            ``encoders`` overrides it per input.
        table_hidden: hidden sizes of each table MLP; ``table_dropout`` inside it.
        modality_dropout: training-time probability of dropping an input per chip.
        strict: refuse an absent input at prediction time.
        decoder_channels: the U-Net decoder's five block widths.

    Raises:
        LandlearnError: bad ``in_channels`` / ``tables`` / ``encoders``, an unknown encoder,
            weights not available; at run time, rasters on different grids.
"""


def _registered(name: str, join: str, default_dropout: float, summary: str) -> Any:
    def build(
        *,
        in_channels: Mapping[str, int],
        num_classes: int,
        pretrained: bool = False,
        dropout: float = 0.0,
        tables: Sequence[str] = (),
        encoder: str = "resnet18",
        encoders: Mapping[str, str] | None = None,
        table_hidden: Sequence[int] = (64, 64),
        table_dropout: float = 0.1,
        modality_dropout: float = default_dropout,
        strict: bool = False,
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
    ) -> nn.Module:
        return _build(
            name,
            join,
            in_channels=in_channels,
            num_classes=num_classes,
            pretrained=pretrained,
            dropout=dropout,
            tables=tables,
            encoder=encoder,
            encoders=encoders,
            table_hidden=table_hidden,
            table_dropout=table_dropout,
            modality_dropout=modality_dropout,
            strict=strict,
            decoder_channels=decoder_channels,
        )

    build.__name__ = build.__qualname__ = name
    build.__doc__ = summary + "\n" + _DOC_ARGS
    return register_model(name, task="segmentation", multi_input=True)(build)


late_fusion_unet = _registered(
    "late_fusion_unet",
    "concat",
    0.0,
    "U-Net with one encoder per raster, features concatenated per scale; tables by FiLM.",
)
gated_fusion_unet = _registered(
    "gated_fusion_unet",
    "gate",
    0.2,
    "U-Net with one encoder per raster mixed per pixel by a softmax gate; tables by FiLM.",
)
