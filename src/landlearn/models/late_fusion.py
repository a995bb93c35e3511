"""Late fusion: one encoder per input, their pooled features concatenated, one shared head.

Each raster input gets its own timm encoder (its own bands, its own weights); each table input
gets an MLP (:class:`landlearn.models.branches.TableMLP`). The features meet only before the
head, so the inputs need not share a grid, and the head's weights on each block of features say
how much it leans on that input. A dropped or absent input contributes zeros (see
:mod:`landlearn.models.branches` for modality dropout and the missing-input rule).

The head is ``Dropout → Linear``: class logits for binary / multiclass / multilabel tasks, or
targets for regression (``num_classes`` is then the number of targets).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from landlearn.models.branches import FusionInputs, FusionModule, build_branches
from landlearn.models.fusion import check_in_channels
from landlearn.models.registry import register_model

__all__ = ["LateFusion", "late_fusion"]


class LateFusion(FusionModule):
    """Branch per input → features (zeros where dropped or absent) → concat → head.

    Args:
        fusion: the inputs and their missing-input rule.
        branches: input name → branch returning ``(B, width)``.
        widths: input name → feature width of its branch.
        num_classes: outputs of the head.
        dropout: before the head.
    """

    def __init__(
        self,
        fusion: FusionInputs,
        branches: nn.ModuleDict,
        widths: Mapping[str, int],
        num_classes: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.fusion = fusion
        self.branches = branches
        self.widths = dict(widths)
        width = sum(self.widths[n] for n in fusion.input_names)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, num_classes))

    def features(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """``(B, sum widths)``: each input's features, zeros where dropped or absent."""
        got, batch, device = self.fusion.present(inputs)
        keep = self.fusion.keep(got, batch, device)  # (B, N)
        parts = []
        for i, (name, x) in enumerate(zip(self.fusion.input_names, got, strict=True)):
            if x is None:
                parts.append(torch.zeros(batch, self.widths[name], device=device))
                continue
            f = self.branches[name](x).float()  # (B, width)
            parts.append(f * keep[:, i : i + 1].to(f.dtype))
        return torch.cat(parts, dim=1)  # (B, sum widths)

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """``(B, num_classes)`` logits (or targets)."""
        return self.head(self.features(inputs))  # (B, K)


@register_model("late_fusion", task="classification", multi_input=True)
def late_fusion(
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
    modality_dropout: float = 0.0,
    strict: bool = False,
) -> nn.Module:
    """Late fusion of rasters (a timm ``encoder`` each) and tables (an MLP each).

    Args:
        in_channels: input name → bands (raster) or columns (table), in model order.
        tables: which inputs are tables (filled from the data's input specs by the task).
        encoder: timm model name of every raster branch; ``encoders`` overrides it per input.
        table_hidden: hidden sizes of each table MLP; ``table_dropout`` inside it (the study's
            regularisation of the metadata branch; L2 is the optimiser's weight decay).
        modality_dropout: training-time probability of dropping an input per sample; > 0 lets
            the model predict with an input absent.
        strict: refuse an absent input even so.

    Raises:
        LandlearnError: bad ``in_channels`` / ``tables`` / ``encoders``, an unknown timm name,
            weights not available.
    """
    channels = check_in_channels(in_channels, "late_fusion")
    fusion = FusionInputs(
        channels, tables, model="late_fusion", modality_dropout=modality_dropout, strict=strict
    )
    branches, widths = build_branches(
        fusion,
        encoder=encoder,
        encoders=encoders,
        pretrained=pretrained,
        table_hidden=table_hidden,
        table_dropout=table_dropout,
    )
    return LateFusion(fusion, branches, widths, num_classes, dropout=dropout)
