"""Regression heads over feature vectors: an MLP for tables and flattened time series.

``mlp_regressor`` maps ``(B, F)`` features (or ``(B, S, C)`` series, flattened to ``F = S·C``)
to ``(B, T)`` target means, or with ``variance=True`` to ``(B, 2T)``: the ``T`` means followed
by ``T`` log-variances (:func:`split_mean_logvar`). Through :func:`landlearn.models.build_model`
``in_channels`` is the number of features and ``num_classes`` the number of targets ``T``.

Each hidden block is ``Linear → LayerNorm → GELU → Dropout``: the ``nn.Dropout`` modules are
always present (``p = 0`` included), so ``state_dict`` keys do not depend on ``dropout`` and
MC-dropout can switch them to train mode at inference. LayerNorm, not BatchNorm, so a batch of
one sample (a single map pixel, a single table row) predicts the same as in a batch.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from landlearn.errors import LandlearnError
from landlearn.models.registry import register_model

__all__ = ["MLPRegressor", "mlp_regressor", "split_mean_logvar"]


def split_mean_logvar(out: Tensor, num_targets: int) -> tuple[Tensor, Tensor | None]:
    """``(B, T)`` → ``(means, None)``; ``(B, 2T)`` → ``(means, log-variances)``."""
    if out.shape[1] == num_targets:
        return out, None
    if out.shape[1] == 2 * num_targets:
        return out[:, :num_targets], out[:, num_targets:]
    raise RuntimeError(f"output {tuple(out.shape)} is neither T={num_targets} nor 2T columns")


class MLPRegressor(nn.Module):
    """Hidden blocks of ``Linear → LayerNorm → GELU → Dropout``, then a linear output."""

    def __init__(
        self,
        in_features: int,
        num_targets: int,
        hidden: Sequence[int] = (256, 256),
        dropout: float = 0.0,
        variance: bool = False,
    ) -> None:
        super().__init__()
        self.in_features, self.num_targets, self.variance = in_features, num_targets, variance
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LayerNorm(h), nn.GELU(), nn.Dropout(dropout)]
            width = h
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(width, num_targets * (2 if variance else 1))
        if variance:
            # start at unit variance (targets are standardised), so early NLL steps are tame
            nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, F)`` or ``(B, S, C)`` → ``(B, T)`` means, or ``(B, 2T)`` with log-variances."""
        x = x.flatten(1)  # (B, F)
        if x.shape[1] != self.in_features:
            raise LandlearnError(
                f"expected {self.in_features} features per sample, got {x.shape[1]}; "
                "check the input's columns"
            )
        return self.out(self.body(x))


@register_model("mlp_regressor", task="regression")
def mlp_regressor(
    *,
    in_channels: int,
    num_classes: int,
    pretrained: bool = False,
    dropout: float = 0.0,
    hidden: Sequence[int] = (256, 256),
    variance: bool = False,
) -> nn.Module:
    """An MLP over ``in_channels`` features predicting ``num_classes`` targets.

    ``variance=True`` adds a log-variance per target (for a Gaussian NLL loss). There are no
    pretrained weights.

    Raises:
        LandlearnError: ``pretrained=True``, sizes below 1, or dropout outside ``[0, 1)``.
    """
    if pretrained:
        raise LandlearnError("mlp_regressor has no pretrained weights; set pretrained: false")
    hidden = [int(h) for h in hidden]
    if min([in_channels, num_classes, *hidden]) < 1:
        raise LandlearnError(
            f"mlp_regressor needs in_channels, num_classes and hidden sizes >= 1, got "
            f"{in_channels}, {num_classes}, {hidden}"
        )
    if not 0.0 <= dropout < 1.0:
        raise LandlearnError(f"dropout must be in [0, 1), got {dropout}")
    return MLPRegressor(in_channels, num_classes, hidden, dropout=dropout, variance=variance)
