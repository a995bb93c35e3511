"""Progressive fusion (after Shankar et al. 2022): the fused context back in every stage.

The fused representation is fed back into every encoder stage, and the whole network runs
again, ``iterations`` times.

Pass 0 runs each branch with a zero context and fuses their pooled features into a context
``c`` (``tanh(Linear([f_1 … f_N]))``, of width ``width``). Each of the next ``iterations`` passes
runs every branch again with ``c`` back-projected into each of its stages, then fuses anew; the
head reads the last ``c``. Gradients flow through the unrolled loop (no detach), so the stages
learn what to do with the context. The cost is ``1 + iterations`` forward passes of every branch:
``landlearn experiment fusion`` times it beside late fusion.

Back-projection into a stage (the stages are the modules timm lists in ``feature_info``: the
stem and the four residual stages of a ResNet, the blocks of a ViT) is a squeeze-and-excitation
block conditioned on the context: ``y ← y · σ(SE([pool(y), c])) + P c``, broadcast over
the stage's pixels (or tokens). ``P`` starts at zero and the SE gate near one, so before training
the raster stages pass almost unchanged and the context earns its place. A table branch (an
MLP) takes
``c`` concatenated to its columns.

Modality dropout and absent inputs as in :mod:`landlearn.models.branches`: a dropped input's
features are zeroed before every fusion, so the context never carries it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from landlearn.errors import LandlearnError
from landlearn.models.branches import (
    FusionInputs,
    FusionModule,
    TableMLP,
    feature_width,
    raster_encoder,
)
from landlearn.models.fusion import check_in_channels
from landlearn.models.registry import register_model

__all__ = ["ContextStage", "ProgressiveFusion", "progressive_fusion"]


class ContextStage(nn.Module):
    """A stage with the context back-projected into its output (SE gate + projection).

    ``context`` is set by :class:`ProgressiveFusion` before each pass; ``None`` leaves the
    stage as it is.
    """

    def __init__(self, stage: nn.Module, channels: int, width: int) -> None:
        super().__init__()
        self.stage = stage
        hidden = max(8, channels // 8)
        excite = nn.Linear(hidden, channels)
        nn.init.zeros_(excite.weight)
        nn.init.constant_(excite.bias, 3.0)  # σ(3) ≈ 0.95: the stage passes almost as is
        self.se = nn.Sequential(nn.Linear(channels + width, hidden), nn.ReLU(), excite)
        self.project = nn.Linear(width, channels)
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)
        self.context: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        """The stage's output, rescaled and shifted by the context."""
        y = self.stage(x)
        c = self.context
        if c is None or not isinstance(y, Tensor) or y.ndim not in (3, 4):
            return y
        if y.ndim == 4:  # (B, C, H, W)
            pooled = y.mean(dim=(2, 3))
            s = torch.sigmoid(self.se(torch.cat([pooled, c], dim=1)))  # (B, C)
            return y * s[:, :, None, None] + self.project(c)[:, :, None, None]
        pooled = y.mean(dim=1)  # (B, T, C) tokens
        s = torch.sigmoid(self.se(torch.cat([pooled, c], dim=1)))
        return y * s[:, None, :] + self.project(c)[:, None, :]


def _wrap_stages(net: nn.Module, width: int, encoder: str) -> list[ContextStage]:
    """Replace each ``feature_info`` module of a timm model by a :class:`ContextStage`."""
    info = getattr(net, "feature_info", None)
    if not info:
        raise LandlearnError(
            f"progressive_fusion: timm model {encoder!r} lists no feature stages "
            "(feature_info); choose a CNN such as resnet18 or a ViT"
        )
    wrapped = []
    for stage in info:
        path, channels = str(stage["module"]), int(stage["num_chs"])
        parent_path, _, leaf = path.rpartition(".")
        parent = net.get_submodule(parent_path) if parent_path else net
        wrapper = ContextStage(getattr(parent, leaf), channels, width)
        if isinstance(parent, nn.Sequential | nn.ModuleList) and leaf.isdigit():
            parent[int(leaf)] = wrapper
        else:
            setattr(parent, leaf, wrapper)
        wrapped.append(wrapper)
    return wrapped


class ProgressiveFusion(FusionModule):
    """Branches that take the fused context back, ``iterations`` times; head on the context.

    Args:
        fusion: the inputs and their missing-input rule.
        branches: input name → timm model (rasters, stages wrapped) or ``TableMLP`` with
            ``extra=width`` (tables).
        widths: input name → pooled feature width of its branch.
        num_classes: outputs of the head.
        width: width of the context.
        iterations: passes with the context after the first (``R``).
        dropout: before the head.
    """

    def __init__(
        self,
        fusion: FusionInputs,
        branches: nn.ModuleDict,
        widths: Mapping[str, int],
        num_classes: int,
        *,
        width: int = 256,
        iterations: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if int(iterations) < 0:
            raise LandlearnError(f"progressive_fusion: iterations must be >= 0, got {iterations}")
        self.fusion = fusion
        self.branches = branches
        self.widths = dict(widths)
        self.width = int(width)
        self.iterations = int(iterations)
        total = sum(self.widths[n] for n in fusion.input_names)
        self.fuse = nn.Sequential(nn.Linear(total, self.width), nn.Tanh())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.width, num_classes))

    def _features(self, name: str, x: Tensor, context: Tensor) -> Tensor:
        branch = self.branches[name]
        if isinstance(branch, TableMLP):
            return branch(x, context)
        for stage in branch.modules():
            if isinstance(stage, ContextStage):
                stage.context = context
        try:
            return branch(x)
        finally:
            for stage in branch.modules():
                if isinstance(stage, ContextStage):
                    stage.context = None

    def contexts(self, inputs: Mapping[str, Tensor]) -> list[Tensor]:
        """The context after pass 0 and after each iteration: ``1 + iterations``, ``(B, width)``."""
        got, batch, device = self.fusion.present(inputs)
        keep = self.fusion.keep(got, batch, device).float()  # (B, N): one draw for all passes
        context = torch.zeros(batch, self.width, device=device)
        out = []
        for _ in range(1 + self.iterations):
            parts = []
            for i, (name, x) in enumerate(zip(self.fusion.input_names, got, strict=True)):
                if x is None:
                    parts.append(torch.zeros(batch, self.widths[name], device=device))
                    continue
                f = self._features(name, x, context).float()  # (B, w_i)
                parts.append(f * keep[:, i : i + 1])
            context = self.fuse(torch.cat(parts, dim=1))  # (B, width)
            out.append(context)
        return out

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """``(B, num_classes)`` logits (or targets) from the last context."""
        return self.head(self.contexts(inputs)[-1])


@register_model("progressive_fusion", task="classification", multi_input=True)
def progressive_fusion(
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
    width: int = 256,
    iterations: int = 2,
    modality_dropout: float = 0.0,
    strict: bool = False,
) -> nn.Module:
    """Progressive fusion with back-projection into each stage for ``iterations`` passes.

    Args:
        in_channels: input name → bands (raster) or columns (table), in model order.
        tables: which inputs are tables (filled from the data's input specs by the task).
        encoder: timm model of every raster branch (one with ``feature_info`` stages: ResNets,
            ConvNeXts, ViTs ...); ``encoders`` overrides it per input.
        table_hidden: hidden sizes of each table MLP; ``table_dropout`` inside it.
        width: width of the fused context.
        iterations: passes with the context after the first (the study's R, default 2).
        modality_dropout: training-time probability of dropping an input per sample.
        strict: refuse an absent input at prediction time.

    Raises:
        LandlearnError: bad ``in_channels`` / ``tables`` / ``encoders`` / ``iterations``, an
            unknown timm name or one without stages, weights not available.
    """
    name = "progressive_fusion"
    channels = check_in_channels(in_channels, name)
    fusion = FusionInputs(
        channels, tables, model=name, modality_dropout=modality_dropout, strict=strict
    )
    chosen = dict(encoders or {})
    unknown = sorted(set(chosen) - set(channels))
    if unknown:
        raise LandlearnError(
            f"{name}: encoders names {unknown}, not among its inputs {list(channels)}"
        )
    branches, widths = nn.ModuleDict(), {}
    for key, bands in channels.items():
        if key in fusion.tables:
            mlp = TableMLP(bands, table_hidden, dropout=table_dropout, extra=int(width))
            branches[key], widths[key] = mlp, mlp.out_features
            continue
        enc = chosen.get(key, encoder)
        net = raster_encoder(enc, bands, pretrained)
        _wrap_stages(net, int(width), enc)
        branches[key], widths[key] = net, feature_width(net)
    return ProgressiveFusion(
        fusion, branches, widths, num_classes, width=width, iterations=iterations, dropout=dropout
    )
