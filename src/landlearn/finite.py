"""One rule for non-finite and absurd input values: map, evaluate, predict and the Python API.

- A pixel with NaN or ±inf in any band is **no-data**: it is never fed to the network (its
  normalised value becomes 0, the training mean), its probabilities are NaN in the Python API,
  its class is ``IGNORE_INDEX`` (255) in maps and in ``predict``, and it is left out of metrics.
  A scene-classification sample with any such pixel is no-data as a whole.
- A finite value further than ``ABSURD_STD`` (50) training standard deviations from the
  training mean (3e38 in a reflectance band, a sensor's fill value that is not declared as
  no-data) is **absurd**: it is clamped to ±50 std before the network, so it cannot overflow
  into NaN and spread over the window, counted and warned about.
- An output the network still makes non-finite is no-data too.

Every counter ends in one warning per call (``FiniteCounts.warn``), naming the file when known.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from landlearn.errors import escape

__all__ = ["ABSURD_STD", "FiniteCounts", "screen", "void_nonfinite"]

log = logging.getLogger(__name__)

ABSURD_STD = 50.0
"""Standard deviations from the training mean beyond which a finite value is absurd."""


@dataclass
class FiniteCounts:
    """How many pixels (or samples) the rule touched; summed over batches and windows."""

    pixels: int = 0
    nonfinite: int = 0
    absurd: int = 0
    nonfinite_outputs: int = 0
    unit: str = "pixels"

    def add(self, other: FiniteCounts) -> None:
        """Add ``other``'s counts (and take its unit) to these."""
        self.unit = other.unit
        self.pixels += other.pixels
        self.nonfinite += other.nonfinite
        self.absurd += other.absurd
        self.nonfinite_outputs += other.nonfinite_outputs

    @property
    def clean(self) -> bool:
        """Nothing non-finite or absurd was seen."""
        return not (self.nonfinite or self.absurd or self.nonfinite_outputs)

    def messages(self, nodata: str = "no-data") -> list[str]:
        """The warnings these counts call for (empty when clean)."""
        out = []
        share = f" of {self.pixels:,}" if self.pixels else ""
        if self.nonfinite:
            out.append(
                f"{self.nonfinite:,}{share} {self.unit} hold NaN or inf in some band; they are "
                f"{nodata} and were not fed to the model"
            )
        if self.absurd:
            out.append(
                f"{self.absurd:,}{share} {self.unit} lie beyond ±{ABSURD_STD:g} std of the "
                "bundle's training statistics in some band (clamped there); their predictions "
                "are unreliable: check the units and band order, or declare the fill value as "
                "no-data"
            )
        if self.nonfinite_outputs:
            out.append(
                f"the model gave non-finite outputs for {self.nonfinite_outputs:,} {self.unit}; "
                f"they are {nodata}"
            )
        return out

    def warn(self, where: object = None, nodata: str = "no-data") -> None:
        """Log each message once, prefixed with ``where`` (a path) when given."""
        prefix = f"{escape(str(where))}: " if where is not None else ""
        for message in self.messages(nodata):
            log.warning("%s%s", prefix, message)


def screen(
    image: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    valid: torch.Tensor | None = None,
    counted: torch.Tensor | None = None,
    per_sample: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, FiniteCounts]:
    """Normalise a raw-unit batch and apply the rule.

    Args:
        image: (B, C, H, W) or (B, C) raw units.
        mean, std: broadcastable to ``image`` (the std already floored).
        valid: optional (B, H, W) pixels the caller already knows to be data; others are
            zeroed but not counted as non-finite.
        counted: optional (B, H, W) pixels to count (e.g. the part of a window that no other
            window covers, so overlapping windows count each scene pixel once); all by default.
        per_sample: count images (with any such pixel) instead of pixels, for scene-level
            models.

    Returns:
        The normalised batch (non-finite and invalid pixels 0, absurd values clamped to
        ±``ABSURD_STD``), the (B, H, W) / (B,) mask of pixels that are no-data because of
        non-finite values, and the counts.
    """
    x = image.float()
    finite = torch.isfinite(x).all(dim=1)
    z = (x - mean) / std
    big = ~(z.abs() <= ABSURD_STD)  # NaN compares False: non-finite counts as big here
    absurd = big.any(dim=1) & finite
    keep = finite if valid is None else finite & valid
    z = torch.where(keep.unsqueeze(1), z.clamp(-ABSURD_STD, ABSURD_STD), 0.0)
    nonfinite = ~finite if valid is None else ~finite & valid
    scope = torch.ones_like(finite) if counted is None else counted.to(finite.device)
    found_nonfinite, found_absurd = nonfinite & scope, absurd & scope & keep
    if per_sample and finite.ndim > 1:
        scope, found_nonfinite, found_absurd = (
            m.flatten(1).any(dim=1) for m in (scope, found_nonfinite, found_absurd)
        )
    counts = FiniteCounts(
        pixels=int(scope.sum()),
        nonfinite=int(found_nonfinite.sum()),
        absurd=int(found_absurd.sum()),
        unit="images" if per_sample else "pixels",
    )
    return z, nonfinite, counts


def void_nonfinite(
    probs: torch.Tensor, nodata: torch.Tensor, spatial: bool
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """NaN probabilities where the input was no-data or the output is not finite.

    Args:
        probs: (B, K, H, W) when ``spatial``, else (B, K).
        nodata: (B, H, W) per-pixel no-data mask from :func:`screen`; for a scene-level
            output a sample with any no-data pixel is no-data as a whole.
        spatial: a per-pixel output.

    Returns:
        The probabilities with NaN rows / pixels, the (B, H, W) or (B,) mask of them, and the
        number of outputs that were non-finite although their input was data.
    """
    bad_out = ~torch.isfinite(probs).all(dim=1)
    from_input = nodata_view(nodata, spatial)
    void = from_input | bad_out
    probs = torch.where(void.unsqueeze(1), torch.nan, probs)
    return probs, void, int((bad_out & ~from_input).sum())


def nodata_view(nodata: torch.Tensor, spatial: bool) -> torch.Tensor:
    """``nodata`` in the shape of the output's no-data mask (per pixel, or per sample)."""
    if spatial or nodata.ndim == 1:
        return nodata
    return nodata.flatten(1).any(dim=1)
