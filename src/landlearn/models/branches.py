"""The parts every multi-branch fusion model shares: one branch per input, modality dropout.

A fusion model reads a dict ``{name: tensor}``: rasters ``(B, C, H, W)`` and tables ``(B, F)``.
Its builder gets ``in_channels`` as ``{name: bands or columns}`` and ``tables``, the names among
them that are table inputs (the task fills ``tables`` from the data's input specs, so a bundle
records it). A raster branch is any timm model without its classifier (``num_classes=0``: pooled
features); a table branch is an MLP of ``Linear → LayerNorm → GELU → Dropout`` blocks
(LayerNorm so one row predicts as in a batch).

Modality dropout (``modality_dropout=p``): during training each input of each sample is dropped
with probability ``p`` (at least one input is always kept), its features zeroed and, in the gated
model, its gate closed. A model trained that way can predict with an input *absent* from the
dict (no Sentinel-1 for a date, a table row lost): it does what training taught it for a dropped
input and records the names in ``last_missing``, which the caller reports. A model trained
without modality dropout refuses a missing input (it never learnt what to do), as does any model
with ``strict=True``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, cast

import timm
import torch
from torch import Tensor, nn

from landlearn.errors import LandlearnError

log = logging.getLogger(__name__)

__all__ = [
    "FusionInputs",
    "FusionModule",
    "TableMLP",
    "build_branch",
    "build_branches",
    "check_tables",
    "feature_width",
    "keep_mask",
    "raster_encoder",
]


def check_tables(in_channels: Mapping[str, int], tables: Sequence[str], model: str) -> list[str]:
    """``tables`` as a list, each one an input of ``in_channels``.

    Raises:
        LandlearnError: a table name that is not an input.
    """
    names = [str(t) for t in tables]
    unknown = [t for t in names if t not in in_channels]
    if unknown:
        raise LandlearnError(
            f"{model}: tables {unknown} are not among its inputs {list(in_channels)}"
        )
    return names


def check_probability(value: float, what: str) -> float:
    """``value`` as a float in ``[0, 1)``.

    Raises:
        LandlearnError: outside ``[0, 1)``.
    """
    if not 0.0 <= float(value) < 1.0:
        raise LandlearnError(f"{what} must be in [0, 1), got {value}")
    return float(value)


class TableMLP(nn.Module):
    """``(B, F)`` table features → ``(B, out_features)``: ``Linear → LayerNorm → GELU → Dropout``.

    ``extra`` widens the first layer for a context vector concatenated to the features (the
    progressive model's back-projection).
    """

    def __init__(
        self, in_features: int, hidden: Sequence[int], dropout: float = 0.0, extra: int = 0
    ) -> None:
        super().__init__()
        if not hidden:
            raise LandlearnError("a table branch needs at least one hidden size")
        layers: list[nn.Module] = []
        width = in_features + extra
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.LayerNorm(int(h)), nn.GELU()]
            layers.append(nn.Dropout(dropout))
            width = int(h)
        self.in_features, self.extra, self.out_features = in_features, extra, width
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Features of ``x`` (and of ``context`` when the branch takes one)."""
        x = x.flatten(1).float()  # (B, F)
        if x.shape[1] != self.in_features:
            raise LandlearnError(
                f"expected {self.in_features} table columns, got {x.shape[1]}; check the table"
            )
        if self.extra:
            ctx = context if context is not None else x.new_zeros(x.shape[0], self.extra)
            x = torch.cat([x, ctx], dim=1)  # (B, F + extra)
        return self.body(x)  # (B, out_features)


def feature_width(net: nn.Module) -> int:
    """Pooled feature width of a timm model built with ``num_classes=0``."""
    return int(cast(Any, net).num_features)


def raster_encoder(encoder: str, bands: int, pretrained: bool, **kwargs: Any) -> nn.Module:
    """A timm model without classifier: ``(B, bands, H, W)`` → ``(B, num_features)`` pooled.

    Raises:
        LandlearnError: unknown timm name (with the nearest one), or weights not available.
    """
    from landlearn.registry import unknown_name

    if not timm.is_model(encoder):
        raise unknown_name("timm model", encoder, timm.list_models(), "see timm.list_models()")
    try:
        return timm.create_model(
            encoder, pretrained=pretrained, in_chans=bands, num_classes=0, **kwargs
        )
    except OSError as exc:  # huggingface_hub's offline / HTTP / not-found errors are OSErrors
        if not pretrained:
            raise
        raise LandlearnError(
            f"pretrained weights for {encoder!r} could not be fetched (offline?); "
            "set pretrained: false or place them in the cache"
        ) from exc


def build_branch(
    *,
    bands: int,
    table: bool,
    encoder: str,
    pretrained: bool,
    table_hidden: Sequence[int],
    table_dropout: float,
) -> tuple[nn.Module, int]:
    """The branch of one input and its feature width."""
    if table:
        mlp = TableMLP(bands, table_hidden, dropout=table_dropout)
        return mlp, mlp.out_features
    net = raster_encoder(encoder, bands, pretrained)
    return net, feature_width(net)


def build_branches(
    fusion: FusionInputs,
    *,
    encoder: str,
    encoders: Mapping[str, str] | None,
    pretrained: bool,
    table_hidden: Sequence[int],
    table_dropout: float,
) -> tuple[nn.ModuleDict, dict[str, int]]:
    """One branch per input of ``fusion`` (``encoders`` overrides ``encoder`` per input).

    Raises:
        LandlearnError: ``encoders`` names an input the model does not read, or a branch fails.
    """
    encoders = dict(encoders or {})
    unknown = sorted(set(encoders) - set(fusion.input_names))
    if unknown:
        raise LandlearnError(
            f"{fusion.model_name}: encoders names {unknown}, not among its inputs "
            f"{list(fusion.input_names)}"
        )
    branches, widths = nn.ModuleDict(), {}
    for name, bands in fusion.in_channels.items():
        branches[name], widths[name] = build_branch(
            bands=bands,
            table=name in fusion.tables,
            encoder=encoders.get(name, encoder),
            pretrained=pretrained,
            table_hidden=table_hidden,
            table_dropout=table_dropout,
        )
    return branches, widths


def keep_mask(batch: int, inputs: int, p: float, device: torch.device) -> Tensor:
    """``(B, N)`` bool: which input of each sample survives modality dropout ``p``.

    Each input is dropped with probability ``p``; a sample that would lose all of them keeps one,
    chosen uniformly, so no sample is left without an input.
    """
    keep = torch.rand(batch, inputs, device=device) >= p  # (B, N)
    empty = ~keep.any(dim=1)
    if empty.any():
        pick = torch.randint(inputs, (int(empty.sum()),), device=device)
        keep[empty.nonzero(as_tuple=True)[0], pick] = True
    return keep


class FusionInputs(nn.Module):
    """Input bookkeeping for fusion models: names, kinds, the missing-input rule, dropout.

    Args:
        in_channels: input name → bands (raster) or columns (table), in model order.
        tables: the table inputs among them.
        modality_dropout: training-time drop probability per input and sample.
        strict: refuse a missing input even after modality dropout.
    """

    def __init__(
        self,
        in_channels: Mapping[str, int],
        tables: Sequence[str],
        *,
        model: str,
        modality_dropout: float = 0.0,
        strict: bool = False,
    ) -> None:
        super().__init__()
        self.model_name = model
        self.input_names: tuple[str, ...] = tuple(in_channels)
        self.in_channels: dict[str, int] = dict(in_channels)
        self.tables: tuple[str, ...] = tuple(check_tables(in_channels, tables, model))
        self.modality_dropout = check_probability(modality_dropout, "modality_dropout")
        self.strict = bool(strict)
        self.last_missing: tuple[str, ...] = ()

    def present(self, inputs: Mapping[str, Tensor]) -> tuple[list[Tensor | None], int, Any]:
        """The inputs in model order (``None`` where absent), the batch size and the device.

        Records the absent names in ``last_missing``.

        Raises:
            LandlearnError: no input at all; an absent input when the model is strict or was
                trained without modality dropout; a wrong shape.
        """
        got = [inputs.get(n) for n in self.input_names]
        missing = tuple(n for n, x in zip(self.input_names, got, strict=True) if x is None)
        first = next((x for x in got if x is not None), None)
        if first is None:
            raise LandlearnError(
                f"{self.model_name} reads inputs {list(self.input_names)}; got none of them "
                f"(keys {sorted(inputs)})"
            )
        if missing and (self.strict or self.modality_dropout == 0.0):
            why = (
                "it is strict"
                if self.strict
                else "it was trained without modality_dropout, so it never learnt to do without"
            )
            raise LandlearnError(
                f"{self.model_name} reads inputs {list(self.input_names)}; missing "
                f"{list(missing)} and {why} (got {sorted(inputs)})"
            )
        for name, x in zip(self.input_names, got, strict=True):
            if x is None:
                continue
            want = 2 if name in self.tables else 4
            if x.ndim != want or x.shape[1] != self.in_channels[name]:
                shape = "(B, F)" if want == 2 else "(B, C, H, W)"
                raise LandlearnError(
                    f"input {name!r} must be {shape} with {self.in_channels[name]} "
                    f"{'columns' if want == 2 else 'bands'}, got {tuple(x.shape)}"
                )
            if x.shape[0] != first.shape[0]:
                raise LandlearnError(
                    f"inputs differ in batch size: {tuple(first.shape)} and {name!r} "
                    f"{tuple(x.shape)}"
                )
        self.last_missing = missing
        return got, int(first.shape[0]), first.device

    def keep(self, got: Sequence[Tensor | None], batch: int, device: Any) -> Tensor:
        """``(B, N)`` bool: present and not dropped (modality dropout only while training)."""
        there = torch.tensor([x is not None for x in got], device=device)  # (N,)
        keep = there.expand(batch, -1).clone()  # (B, N)
        if self.training and self.modality_dropout > 0:
            keep &= keep_mask(batch, len(self.input_names), self.modality_dropout, device)
            empty = ~keep.any(dim=1)  # every present input dropped: keep them all
            keep[empty] = there
        return keep

    def extra_repr(self) -> str:
        """Shown in the module's repr."""
        return (
            f"in_channels={self.in_channels}, tables={list(self.tables)}, "
            f"modality_dropout={self.modality_dropout}, strict={self.strict}"
        )


class FusionModule(nn.Module):
    """Base of the multi-branch fusion models: ``fusion`` (:class:`FusionInputs`) and its views."""

    fusion: FusionInputs

    @property
    def input_names(self) -> tuple[str, ...]:
        """The sample keys the model reads, in order."""
        return self.fusion.input_names

    @property
    def last_missing(self) -> tuple[str, ...]:
        """Inputs absent from the last batch (predicted without them)."""
        return self.fusion.last_missing
