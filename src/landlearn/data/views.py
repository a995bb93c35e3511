"""Random views of normalised multispectral batches, for contrastive pre-training.

SimCLR learns by pulling two random views of one chip together; on satellite imagery the views
must keep what a land-cover label keeps (the ground, at any orientation) and vary what it does
not (look direction, illumination, one band's calibration). :class:`GeoViews` draws, per sample:

- **geometry**: a horizontal flip, a quarter turn (square chips), a resized crop of
  ``crop_scale`` of the area (aspect ``crop_ratio``), all as one affine map per sample, applied
  with ``grid_sample`` to every input of the call with the **same** map, so the bands of two
  sensors of one chip stay on one grid;
- **intensity**, per input and per band: brightness (an offset) and contrast (a gain around the
  band mean) in normalised units, band dropout (a band set to 0, its training mean; at least one
  band kept), Gaussian blur (kornia) with a random sigma.

Two calls give two independent views. lightly's transforms (``SimCLRTransform``) work on PIL
RGB images one at a time, so they do not fit 2–13-band tensors on a grid: these batch operations
are ours; the loss and the projection heads are lightly's (:mod:`landlearn.tasks.contrastive`).

``band_groups`` (``[[0, 1, 2], [3, 4, 5, 6]]``) makes the two views of one sensor see different
bands (the others set to 0): RGB against NIR / SWIR, a stated stand-in for a second sensor when
only one is at hand; the encoder still reads every band, so it loads into any model of that
band count afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from landlearn.errors import LandlearnError

__all__ = ["GeoViews", "band_group_view"]


@dataclass
class GeoViews:
    """Random views of ``{input name: (B, C, H, W)}`` batches (see the module docstring).

    Args:
        flip: probability of a horizontal flip (with quarter turns this gives all 8 of D4).
        rotate: probability of a random quarter turn (1–3 × 90°; square chips only).
        crop_scale: range of the crop's share of the area; ``(1, 1)`` turns cropping off.
        crop_ratio: range of the crop's aspect ratio (log-uniform).
        brightness: the band offset is uniform in ``±brightness`` (normalised units).
        contrast: the band gain is uniform in ``1 ± contrast``.
        band_dropout: probability that a band is set to 0 (at least one band stays).
        blur: probability of a Gaussian blur.
        blur_sigma: range of the blur's sigma in pixels.
    """

    flip: float = 0.5
    rotate: float = 0.5
    crop_scale: tuple[float, float] = (0.35, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    brightness: float = 0.4
    contrast: float = 0.4
    band_dropout: float = 0.1
    blur: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 1.5)

    def __post_init__(self) -> None:
        for name in ("flip", "rotate", "band_dropout", "blur"):
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise LandlearnError(f"views: {name} is a probability in [0, 1], got {value}")
        lo, hi = (float(v) for v in self.crop_scale)
        if not 0.0 < lo <= hi <= 1.0:
            raise LandlearnError(f"views: crop_scale must be 0 < low <= high <= 1, got {lo, hi}")
        if self.brightness < 0 or not 0 <= self.contrast < 1:
            raise LandlearnError("views: brightness must be >= 0 and contrast in [0, 1)")

    def __call__(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """One view of every input; the geometry is shared by the inputs of this call."""
        if not batch:
            raise LandlearnError("views: no input to view")
        first = next(iter(batch.values()))
        b, _, h, w = first.shape
        theta = self.geometry(b, h, w, first.device)
        out = {}
        for name, x in batch.items():
            if x.shape[0] != b or x.shape[-2:] != first.shape[-2:]:
                raise LandlearnError(
                    f"views: input {name!r} is {tuple(x.shape)}, not on the grid of the first "
                    f"input {tuple(first.shape)}"
                )
            out[name] = self.intensity(warp(x.float(), theta))
        return out

    def geometry(self, b: int, h: int, w: int, device: torch.device) -> Tensor:
        """``(B, 2, 3)`` affine maps (output → input coordinates, ``affine_grid``'s convention)."""
        lo, hi = (float(v) for v in self.crop_scale)
        area = torch.empty(b, device=device).uniform_(lo, hi)
        r0, r1 = (math.log(float(v)) for v in self.crop_ratio)
        ratio = torch.exp(torch.empty(b, device=device).uniform_(r0, r1))
        sx = torch.sqrt(area * ratio).clamp(max=1.0)  # share of the width
        sy = torch.sqrt(area / ratio).clamp(max=1.0)
        tx = (torch.rand(b, device=device) * 2 - 1) * (1 - sx)  # the crop stays inside
        ty = (torch.rand(b, device=device) * 2 - 1) * (1 - sy)
        flip = torch.where(torch.rand(b, device=device) < self.flip, -1.0, 1.0)
        turns = torch.zeros(b, device=device)
        if h == w:
            turn = torch.rand(b, device=device) < self.rotate
            turns = torch.where(turn, torch.randint(1, 4, (b,), device=device).float(), turns)
        angle = turns * (math.pi / 2)
        cos, sin = torch.cos(angle).round(), torch.sin(angle).round()  # exact quarter turns
        theta = torch.zeros(b, 2, 3, device=device)
        # scale (and flip x), then rotate, then translate: A = R @ diag(flip * sx, sy)
        theta[:, 0, 0] = cos * flip * sx
        theta[:, 0, 1] = -sin * sy
        theta[:, 1, 0] = sin * flip * sx
        theta[:, 1, 1] = cos * sy
        theta[:, 0, 2] = tx
        theta[:, 1, 2] = ty
        return theta

    def intensity(self, x: Tensor) -> Tensor:
        """Per-band brightness and contrast, band dropout and blur of one input ``(B, C, H, W)``."""
        b, c = x.shape[:2]
        dev = x.device
        mean = x.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        gain = 1 + (torch.rand(b, c, 1, 1, device=dev) * 2 - 1) * self.contrast
        offset = (torch.rand(b, c, 1, 1, device=dev) * 2 - 1) * self.brightness
        x = (x - mean) * gain + mean + offset
        if self.band_dropout > 0 and c > 1:
            keep = torch.rand(b, c, device=dev) >= self.band_dropout  # (B, C)
            none = ~keep.any(dim=1)
            if none.any():
                pick = torch.randint(c, (int(none.sum()),), device=dev)
                keep[none.nonzero(as_tuple=True)[0], pick] = True
            x = x * keep[:, :, None, None].to(x.dtype)
        if self.blur > 0:
            x = _blur(x, self.blur, self.blur_sigma)
        return x


def warp(x: Tensor, theta: Tensor) -> Tensor:
    """``x`` resampled by the affine maps ``theta`` (bilinear), same size."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _blur(x: Tensor, p: float, sigma: tuple[float, float]) -> Tensor:
    from kornia.filters import gaussian_blur2d

    b = x.shape[0]
    chosen = torch.rand(b, device=x.device) < p
    if not chosen.any():
        return x
    lo, hi = (float(v) for v in sigma)
    s = torch.empty(int(chosen.sum()), device=x.device).uniform_(lo, hi)
    size = 2 * math.ceil(2 * hi) + 1
    blurred = gaussian_blur2d(x[chosen], (size, size), torch.stack([s, s], dim=1))
    out = x.clone()
    out[chosen] = blurred
    return out


def band_group_view(x: Tensor, group: Sequence[int]) -> Tensor:
    """``x`` with every band outside ``group`` set to 0 (the training mean once normalised).

    Raises:
        LandlearnError: a band index outside ``0 .. C-1``, or an empty group.
    """
    c = x.shape[1]
    idx = [int(i) for i in group]
    if not idx or min(idx) < 0 or max(idx) >= c:
        raise LandlearnError(f"band_groups: group {list(group)} is not within bands 0..{c - 1}")
    keep = torch.zeros(c, dtype=x.dtype, device=x.device)
    keep[idx] = 1
    return x * keep[None, :, None, None]
