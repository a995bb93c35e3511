"""Gated fusion: a gated multimodal unit (Arevalo et al. 2017) that can learn to ignore an input.

Each input's features ``f_i`` (from its own branch, as in late fusion) become
``h_i = tanh(W_i f_i)`` of one width ``d``. A gate reads all features at once and gives, per
sample and per feature dimension, a softmax over the inputs: ``z = softmax_i(G [f_1 … f_N])``,
``(B, N, d)``. The fused representation is ``Σ_i z_i ⊙ h_i``. An input whose features say
nothing about the label earns little gate weight, so it barely moves the prediction — the
study's recommendation ("weight the metadata by attention so a model can ignore it").

A dropped (modality dropout) or absent input has its gate logit set to −∞, so the softmax
spreads over the inputs that are there: the model predicts from what it has, as it learnt to
during training. :meth:`GatedFusion.gate_weights` gives the mean gate of each input over the
last batch (each sample's weights sum to one), the number to read when asking whether the
model uses an input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from landlearn.models.branches import FusionInputs, FusionModule, build_branches
from landlearn.models.fusion import check_in_channels
from landlearn.models.registry import register_model

__all__ = ["GatedFusion", "gated_fusion"]


class GatedFusion(FusionModule):
    """Branches → ``tanh`` projections to ``width`` → softmax gate over inputs → head.

    Args:
        fusion: the inputs and their missing-input rule.
        branches: input name → branch returning ``(B, widths[name])``.
        widths: input name → feature width of its branch.
        num_classes: outputs of the head.
        width: the shared width ``d`` of the projections.
        dropout: before the head.
    """

    def __init__(
        self,
        fusion: FusionInputs,
        branches: nn.ModuleDict,
        widths: Mapping[str, int],
        num_classes: int,
        *,
        width: int = 128,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.fusion = fusion
        self.branches = branches
        self.widths = dict(widths)
        self.width = int(width)
        names = fusion.input_names
        self.project = nn.ModuleDict({n: nn.Linear(self.widths[n], self.width) for n in names})
        total = sum(self.widths[n] for n in names)
        self.gate = nn.Linear(total, len(names) * self.width)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.width, num_classes))
        self.last_gates: Tensor | None = None  # (B, N): mean gate per input, last batch

    def fused(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """``(B, width)``: the gated sum of the inputs' projections."""
        got, batch, device = self.fusion.present(inputs)
        keep = self.fusion.keep(got, batch, device)  # (B, N)
        feats, hidden = [], []
        for i, (name, x) in enumerate(zip(self.fusion.input_names, got, strict=True)):
            if x is None:
                f = torch.zeros(batch, self.widths[name], device=device)
            else:
                f = self.branches[name](x).float() * keep[:, i : i + 1].float()  # (B, w_i)
            feats.append(f)
            hidden.append(torch.tanh(self.project[name](f)))  # (B, d)
        h = torch.stack(hidden, dim=1)  # (B, N, d)
        logits = self.gate(torch.cat(feats, dim=1)).view(batch, len(feats), self.width)
        logits = logits.masked_fill(~keep[:, :, None], float("-inf"))  # (B, N, d)
        z = torch.softmax(logits, dim=1)  # (B, N, d): sums to one over the inputs
        self.last_gates = z.detach().mean(dim=2)  # (B, N)
        return (z * h).sum(dim=1)  # (B, d)

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """``(B, num_classes)`` logits (or targets)."""
        return self.head(self.fused(inputs))  # (B, K)

    def gate_weights(self) -> dict[str, float]:
        """Mean gate weight of each input over the last batch (they sum to one).

        Raises:
            RuntimeError: no batch has been seen.
        """
        if self.last_gates is None:
            raise RuntimeError("gate_weights: run a batch through the model first")
        mean = self.last_gates.mean(dim=0)
        return {n: float(mean[i]) for i, n in enumerate(self.fusion.input_names)}


@register_model("gated_fusion", task="classification", multi_input=True)
def gated_fusion(
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
    width: int = 128,
    modality_dropout: float = 0.2,
    strict: bool = False,
) -> nn.Module:
    """Gated multimodal unit over rasters (a timm ``encoder`` each) and tables (an MLP each).

    Args:
        in_channels: input name → bands (raster) or columns (table), in model order.
        tables: which inputs are tables (filled from the data's input specs by the task).
        encoder: timm model of every raster branch; ``encoders`` overrides it per input.
        table_hidden: hidden sizes of each table MLP; ``table_dropout`` inside it.
        width: the shared width of the gated projections.
        modality_dropout: training-time probability of dropping an input per sample (default
            0.2: the gate learns to do without each input, and a missing input at prediction
            time is handled).
        strict: refuse an absent input at prediction time.

    Raises:
        LandlearnError: bad ``in_channels`` / ``tables`` / ``encoders``, an unknown timm name,
            weights not available.
    """
    channels = check_in_channels(in_channels, "gated_fusion")
    fusion = FusionInputs(
        channels, tables, model="gated_fusion", modality_dropout=modality_dropout, strict=strict
    )
    branches, widths = build_branches(
        fusion,
        encoder=encoder,
        encoders=encoders,
        pretrained=pretrained,
        table_hidden=table_hidden,
        table_dropout=table_dropout,
    )
    return GatedFusion(fusion, branches, widths, num_classes, width=width, dropout=dropout)
