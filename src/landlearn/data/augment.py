"""GPU batch augmentation from a small config, on kornia's ``AugmentationSequential``.

Images may have any number of bands, in raw units (0-255, reflectance, dB): augmentation runs before
normalisation, so the intensity ops are scale-free. ``brightness`` multiplies a sample by one gain
in ``[1 - limit, 1 + limit]`` on every band (a darker or brighter acquisition); ``contrast`` scales
each band's deviations from that sample's band mean by one factor in ``[1 - limit, 1 + limit]``.
An additive shift would not do: ±0.1 is nothing on 0-255 or reflectance data. Masks follow the
image's geometry with nearest resampling; pixels that a transform pads in become ``IGNORE_INDEX``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import kornia.augmentation as K
import kornia.augmentation.random_generator as rg
import torch
from torch import Tensor, nn

from landlearn.conventions import IGNORE_INDEX
from landlearn.errors import LandlearnError
from landlearn.registry import Registry, did_you_mean, unknown_name

__all__ = [
    "AUGMENTATIONS",
    "TASKS",
    "BatchAugment",
    "augmentation_defaults",
    "build_augment",
    "list_augmentations",
    "register_augmentation",
]

log = logging.getLogger(__name__)

TASKS = ("classification", "multilabel", "regression", "segmentation", "fusion", "jem")
"""Tasks ``build_augment`` accepts; only a batch's ``image`` and ``mask`` are ever transformed."""

AUGMENTATIONS: Registry[nn.Module] = Registry("augmentation")
"""Config key → kornia op builder ``(size, *, p, **options)``; they apply in registration order."""


def register_augmentation(
    name: str, **defaults: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register an op builder ``(size, *, p, **options) -> nn.Module`` under config key ``name``.

    ``defaults`` hold ``p`` and every option: a config may set only these keys.
    """
    if "p" not in defaults:
        raise RuntimeError(f"augmentation {name!r} registered without a default p")
    return AUGMENTATIONS.register(name, defaults=defaults)


def list_augmentations() -> list[str]:
    """Config keys in the order they are applied."""
    return AUGMENTATIONS.in_order()


def augmentation_defaults() -> dict[str, dict[str, Any]]:
    """Config key → its default parameters, in the order they are applied."""
    return {name: dict(AUGMENTATIONS.tags(name)["defaults"]) for name in list_augmentations()}


def _range(value: Any, name: str, low: float, high: float) -> tuple[float, float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise LandlearnError(f"augmentation {name} must be a pair [min, max], got {value!r}")
    a, b = float(value[0]), float(value[1])
    if not low <= a <= b <= high:
        raise LandlearnError(f"augmentation {name} must satisfy {low} <= min <= max <= {high}")
    return a, b


def _parse(cfg: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Validated parameters of each configured augmentation, in the order they apply."""
    parsed: dict[str, dict[str, Any]] = {}
    order = list_augmentations()
    for name, value in cfg.items():
        if name not in AUGMENTATIONS:
            raise unknown_name("augmentation", name, order)
        params = dict(AUGMENTATIONS.tags(name)["defaults"])
        if isinstance(value, Mapping):
            for key in value:
                if key not in params:
                    raise LandlearnError(
                        f"unknown option {key!r} of {name}; {did_you_mean(key, list(params))}"
                    )
            params.update(value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            params["p"] = value
        else:
            raise LandlearnError(
                f"augmentation {name} needs a probability or a dict, got {value!r}"
            )
        p = params["p"]
        if not isinstance(p, int | float) or not 0.0 <= p <= 1.0:
            raise LandlearnError(f"augmentation {name} probability must be in [0, 1], got {p!r}")
        if "limit" in params and not 0.0 <= float(params["limit"]) < 1.0:
            raise LandlearnError(
                f"augmentation {name} limit must be in [0, 1), got {params['limit']}"
            )
        if p > 0:
            parsed[name] = params
    return {name: parsed[name] for name in order if name in parsed}


class RandomMeanContrast(K.IntensityAugmentationBase2D):
    """Scale each band's deviations from the sample's band mean: ``m + (x - m) * factor``.

    kornia's ``RandomContrast`` multiplies raw values (a gain, i.e. brightness); torchvision's
    blends with a grey mean, which only exists for RGB. This works on any band count.
    """

    def __init__(self, factor: tuple[float, float], p: float = 1.0) -> None:
        super().__init__(p=p)
        bounds = torch.tensor([float(factor[0]), float(factor[1])])
        self._param_generator = rg.PlainUniformGenerator((bounds, "factor", None, None))

    def apply_transform(
        self,
        input: Tensor,
        params: dict[str, Tensor],
        flags: dict[str, Any],
        transform: Tensor | None = None,
    ) -> Tensor:
        factor = params["factor"].to(input.device, input.dtype).view(-1, 1, 1, 1)
        mean = input.mean(dim=(-2, -1), keepdim=True)
        return mean + (input - mean) * factor


Size = tuple[int, int]


@register_augmentation("hflip", p=0.5)
def _hflip(size: Size, *, p: float) -> nn.Module:
    return K.RandomHorizontalFlip(p=p)


@register_augmentation("vflip", p=0.5)
def _vflip(size: Size, *, p: float) -> nn.Module:
    return K.RandomVerticalFlip(p=p)


@register_augmentation("rot90", p=0.5)
def _rot90(size: Size, *, p: float) -> nn.Module:
    # kornia rounds a uniform draw on [1, 3]: 90° and 270° a quarter of the time, 180° half.
    return K.RandomRotation90(times=(1, 3), resample="nearest", p=p)


@register_augmentation("crop", p=0.5, scale=[0.5, 1.0])
def _crop(size: Size, *, p: float, scale: Any) -> nn.Module:
    # kornia crops the whole batch or none of it: p is per batch here, not per sample.
    return K.RandomResizedCrop(size, scale=_range(scale, "crop scale", 1e-3, 1.0), p=p)


@register_augmentation("brightness", p=0.3, limit=0.1)
def _brightness(size: Size, *, p: float, limit: float) -> nn.Module:
    limit = float(limit)  # one gain in [1 - limit, 1 + limit] on every band
    return K.RandomContrast((1.0 - limit, 1.0 + limit), clip_output=False, p=p)


@register_augmentation("contrast", p=0.3, limit=0.1)
def _contrast(size: Size, *, p: float, limit: float) -> nn.Module:
    limit = float(limit)  # deviations from each band's mean × [1 - limit, 1 + limit]
    return RandomMeanContrast((1.0 - limit, 1.0 + limit), p=p)


@register_augmentation("blur", p=0.1, sigma=[0.1, 1.0])
def _blur(size: Size, *, p: float, sigma: Any) -> nn.Module:
    low, high = _range(sigma, "blur sigma", 1e-3, 10.0)
    kernel = 2 * math.ceil(3.0 * high) + 1
    return K.RandomGaussianBlur((kernel, kernel), (low, high), p=p)


def _build_op(name: str, params: dict[str, Any], size: Size) -> nn.Module:
    options = {**params, "p": float(params["p"])}
    return AUGMENTATIONS.build(name, size, **options)


class BatchAugment(nn.Module):
    """Augment a batch dict: ``image`` ``(B, C, H, W)`` and, when present, ``mask`` ``(B, H, W)``.

    Other keys (``label``, ``meta``, ``crs`` ...) pass through untouched. The kornia pipeline is
    built per input size on first use, since a resized crop needs the output size.
    """

    def __init__(self, params: dict[str, dict[str, Any]], task: str) -> None:
        super().__init__()
        self.params = params
        self.task = task
        # A plain dict, not a ModuleDict: the lazily built pipelines hold only constant buffers
        # and must not add keys to a LightningModule's state_dict after the first batch.
        self._pipelines: dict[tuple[int, int, str], nn.Module] = {}

    def _pipeline(self, size: tuple[int, int], device: torch.device) -> nn.Module:
        key = (size[0], size[1], str(device))
        if key not in self._pipelines:
            ops = [_build_op(name, p, size) for name, p in self.params.items()]
            self._pipelines[key] = K.AugmentationSequential(*ops, data_keys=None).to(device)  # type: ignore[arg-type]
        return self._pipelines[key]

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Return a new batch dict with ``image`` and ``mask`` augmented together."""
        image = batch.get("image")
        if not isinstance(image, Tensor) or image.ndim != 4:
            shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
            raise LandlearnError(
                f"augmentation needs batch['image'] of shape (B, C, H, W), got {shape}"
            )
        if not self.params:
            return dict(batch)
        inputs: dict[str, Tensor] = {"input": image if image.is_floating_point() else image.float()}
        mask = batch.get("mask")
        if isinstance(mask, Tensor):
            if mask.shape != (image.shape[0], *image.shape[2:]):
                raise LandlearnError(
                    f"mask shape {tuple(mask.shape)} does not match image {tuple(image.shape)}"
                )
            # Shift classes by one so that the zeros padded in by a transform can be told apart.
            inputs["mask"] = (mask.long() + 1).unsqueeze(1)  # (B, 1, H, W)
        out = self._pipeline((image.shape[-2], image.shape[-1]), image.device)(inputs)
        result = {**batch, "image": out["input"]}
        if "mask" in inputs:
            moved = out["mask"].squeeze(1).long()  # (B, H, W)
            result["mask"] = torch.where(moved == 0, IGNORE_INDEX, moved - 1)
        return result

    def extra_repr(self) -> str:
        return f"task={self.task!r}, params={self.params}"


def build_augment(cfg: dict | None, task: str) -> nn.Module:
    """The batch augmentation described by ``cfg``, e.g. ``{"hflip": 0.5, "crop": {"p": 0.5}}``.

    ``None`` or ``{}`` gives the identity. Keys are ``list_augmentations()``; a value is a
    probability or a dict of the key's options (``augmentation_defaults()``). Operations run in
    ``list_augmentations()`` order.

    Raises:
        LandlearnError: An unknown key, option or task, or a value out of range.
    """
    if task not in TASKS:
        raise unknown_name("task", task, TASKS)
    if cfg is not None and not isinstance(cfg, Mapping):
        raise LandlearnError(f"augmentation config must be a mapping, got {type(cfg).__name__}")
    params = _parse(cfg or {})
    log.debug("augmentations for %s: %s", task, params)
    return BatchAugment(params, task)
