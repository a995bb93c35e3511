"""GPU batch augmentation from a small config, on kornia's ``AugmentationSequential``.

Images may have any number of bands, in raw units (0-255, reflectance, dB): augmentation runs before
normalisation, so the intensity ops are scale-free. ``brightness`` multiplies a sample by one gain
in ``[1 - limit, 1 + limit]`` on every band (a darker or brighter acquisition); ``contrast`` scales
each band's deviations from that sample's band mean by one factor in ``[1 - limit, 1 + limit]``.
An additive shift would not do: ±0.1 is nothing on 0-255 or reflectance data. Masks follow the
image's geometry with nearest resampling; pixels that a transform pads in become ``IGNORE_INDEX``.

Several inputs (``s2``, ``s1`` ...) on one grid share each geometric draw (with the mask and a
pixel ``target``, whose padded pixels become NaN); each input gets its own intensity draws.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
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
    "is_geometric",
    "list_augmentations",
    "register_augmentation",
]

log = logging.getLogger(__name__)

TASKS = (
    "classification", "multilabel", "regression", "pixel_regression", "segmentation", "fusion",
    "jem",
)  # fmt: skip
"""Tasks ``build_augment`` accepts; only raster inputs, ``mask`` and a pixel ``target`` move."""

AUGMENTATIONS: Registry[nn.Module] = Registry("augmentation")
"""Config key → kornia op builder ``(size, *, p, **options)``; they apply in registration order."""


def register_augmentation(
    name: str, *, geometric: bool = False, **defaults: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register an op builder ``(size, *, p, **options) -> nn.Module`` under config key ``name``.

    ``defaults`` hold ``p`` and every option: a config may set only these keys. A ``geometric``
    op moves pixels and is applied to every spatial key of a batch at once; any other op changes
    values and is applied to each input alone.
    """
    if "p" not in defaults:
        raise RuntimeError(f"augmentation {name!r} registered without a default p")
    return AUGMENTATIONS.register(name, defaults=defaults, geometric=geometric)


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


@register_augmentation("hflip", p=0.5, geometric=True)
def _hflip(size: Size, *, p: float) -> nn.Module:
    return K.RandomHorizontalFlip(p=p)


@register_augmentation("vflip", p=0.5, geometric=True)
def _vflip(size: Size, *, p: float) -> nn.Module:
    return K.RandomVerticalFlip(p=p)


@register_augmentation("rot90", p=0.5, geometric=True)
def _rot90(size: Size, *, p: float) -> nn.Module:
    # kornia rounds a uniform draw on [1, 3]: 90° and 270° a quarter of the time, 180° half.
    return K.RandomRotation90(times=(1, 3), resample="nearest", p=p)


@register_augmentation("crop", p=0.5, scale=[0.5, 1.0], geometric=True)
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


def is_geometric(name: str) -> bool:
    """Whether augmentation ``name`` moves pixels (applied to every spatial key at once)."""
    return bool(AUGMENTATIONS.tags(name)["geometric"])


class BatchAugment(nn.Module):
    """Augment a batch dict: geometry shared by every spatial key, intensity per input.

    Spatial keys are the raster inputs ``inputs`` (each ``(B, C_i, H, W)``), ``mask``
    ``(B, H, W)`` and a pixel ``target`` ``(B, T, H, W)`` (NaN unknown). The geometric ops (flips,
    quarter turns, crops) run once on all of them together, with one draw per sample, so the
    inputs, the mask and the target stay aligned pixel for pixel: the inputs are stacked along
    channels for the draw and split again. Intensity ops (brightness, contrast, blur) then run
    on each input alone, with draws of their own, since sensors differ (an optical gain is not a
    radar one); ``per_input`` replaces them for a named input. Other keys (``label``, ``meta``,
    ``crs`` ...) pass through untouched. The kornia pipelines are built per input size on first
    use, since a resized crop needs the output size.

    Args:
        params: the validated parameters of every configured op, in the order they apply.
        task: the task kind (only recorded).
        inputs: the raster inputs' sample keys; those absent from a batch are skipped.
        per_input: intensity ops (validated parameters) for a named input instead of
            ``params``' intensity ops.
    """

    def __init__(
        self,
        params: dict[str, dict[str, Any]],
        task: str,
        inputs: Sequence[str] = ("image",),
        per_input: Mapping[str, dict[str, dict[str, Any]]] | None = None,
    ) -> None:
        super().__init__()
        self.params = params
        self.task = task
        self.inputs = tuple(inputs) or ("image",)
        self.per_input = {k: dict(v) for k, v in (per_input or {}).items()}
        self.geometry = {k: v for k, v in params.items() if is_geometric(k)}
        self.intensity = {k: v for k, v in params.items() if not is_geometric(k)}
        # A plain dict, not a ModuleDict: the lazily built pipelines hold only constant buffers
        # and must not add keys to a LightningModule's state_dict after the first batch.
        self._pipelines: dict[tuple[int, int, str, str], nn.Module] = {}

    def _pipeline(
        self, group: str, ops: dict[str, dict[str, Any]], size: tuple[int, int], device: Any
    ) -> nn.Module:
        key = (size[0], size[1], str(device), group)
        if key not in self._pipelines:
            built = [_build_op(name, p, size) for name, p in ops.items()]
            self._pipelines[key] = K.AugmentationSequential(*built, data_keys=None).to(device)  # type: ignore[arg-type]
        return self._pipelines[key]

    def _images(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        names = [k for k in self.inputs if k in batch] or [self.inputs[0]]
        images: dict[str, Tensor] = {}
        for name in names:
            image = batch.get(name)
            if not isinstance(image, Tensor) or image.ndim != 4:
                shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
                raise LandlearnError(
                    f"augmentation needs batch[{name!r}] of shape (B, C, H, W), got {shape}"
                )
            first = next(iter(images.values()), image)
            if (image.shape[0], *image.shape[2:]) != (first.shape[0], *first.shape[2:]):
                raise LandlearnError(
                    f"inputs {names[0]!r} {tuple(first.shape)} and {name!r} "
                    f"{tuple(image.shape)} are not on one grid; augmentation needs one (B, H, W)"
                )
            images[name] = image if image.is_floating_point() else image.float()
        return images

    def _move(
        self, batch: dict[str, Any], images: dict[str, Tensor], result: dict[str, Any]
    ) -> None:
        """Apply the geometric ops to ``images``, ``mask`` and a pixel ``target`` together."""
        first = next(iter(images.values()))
        b, size = first.shape[0], (first.shape[-2], first.shape[-1])
        data: dict[str, Tensor] = {"input": torch.cat(list(images.values()), dim=1)}
        mask = batch.get("mask")
        if isinstance(mask, Tensor):
            if mask.shape != (b, *size):
                raise LandlearnError(
                    f"mask shape {tuple(mask.shape)} does not match image {tuple(first.shape)}"
                )
            # Shift classes by one so that the zeros padded in by a transform can be told apart.
            data["mask"] = (mask.long() + 1).unsqueeze(1)  # (B, 1, H, W)
        target = batch.get("target")
        pixel_target = isinstance(target, Tensor) and target.ndim == 4
        if isinstance(target, Tensor) and pixel_target:
            if (target.shape[0], *target.shape[2:]) != (b, *size):
                raise LandlearnError(
                    f"target shape {tuple(target.shape)} does not match image {tuple(first.shape)}"
                )
            known = ~torch.isnan(target)
            # Values and a "known" flag per target, moved as a mask (nearest): padding is 0 there.
            data["mask_target"] = torch.cat([torch.nan_to_num(target.float()), known.float()], 1)
        out = self._pipeline("geometry", self.geometry, size, first.device)(data)
        for name, part in zip(
            images, out["input"].split([x.shape[1] for x in images.values()], 1), strict=True
        ):
            images[name] = part
        if "mask" in data:
            moved = out["mask"].squeeze(1).long()  # (B, H, W)
            result["mask"] = torch.where(moved == 0, IGNORE_INDEX, moved - 1)
        if "mask_target" in data and isinstance(target, Tensor):
            values, flags = out["mask_target"].split(target.shape[1], dim=1)
            result["target"] = torch.where(flags > 0.5, values, math.nan).to(target.dtype)

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        """A new batch dict: every spatial key moved together, each input brightened alone."""
        images = self._images(batch)
        if not self.params and not any(self.per_input.values()):
            return dict(batch)
        result = dict(batch)
        if self.geometry:
            self._move(batch, images, result)
        for name, image in images.items():
            ops = self.per_input.get(name, self.intensity)
            if ops:
                size = (image.shape[-2], image.shape[-1])
                image = self._pipeline(f"input:{name}", ops, size, image.device)({"input": image})[
                    "input"
                ]
            result[name] = image
        return result

    def extra_repr(self) -> str:
        """Shown in the module's repr."""
        extra = f", inputs={self.inputs}" if self.inputs != ("image",) else ""
        extra += f", per_input={self.per_input}" if self.per_input else ""
        return f"task={self.task!r}, params={self.params}{extra}"


def _parse_per_input(per_input: Any) -> dict[str, dict[str, dict[str, Any]]]:
    if per_input is None:
        return {}
    if not isinstance(per_input, Mapping):
        raise LandlearnError(
            f"augmentation per_input must map input names to intensity ops, got {per_input!r}"
        )
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, ops in per_input.items():
        if ops is not None and not isinstance(ops, Mapping):
            raise LandlearnError(f"augmentation per_input.{name} must be a mapping, got {ops!r}")
        parsed = _parse(ops or {})
        moving = [k for k in (ops or {}) if k in AUGMENTATIONS and is_geometric(k)]
        if moving:
            raise LandlearnError(
                f"augmentation per_input.{name} sets {moving[0]}, a geometric op: geometry is "
                "shared by every input; per_input may only set intensity ops "
                f"({', '.join(k for k in list_augmentations() if not is_geometric(k))})"
            )
        out[str(name)] = parsed
    return out


def build_augment(
    cfg: Mapping[str, Any] | None, task: str, inputs: Sequence[str] = ("image",)
) -> BatchAugment:
    """The batch augmentation described by ``cfg``, e.g. ``{"hflip": 0.5, "crop": {"p": 0.5}}``.

    ``None`` or ``{}`` gives the identity. Keys are ``list_augmentations()``; a value is a
    probability or a dict of the key's options (``augmentation_defaults()``). Operations run in
    ``list_augmentations()`` order: geometry on every spatial key at once, then intensity per
    input. ``per_input: {s1: {brightness: 0}}`` gives a named input its own intensity ops
    (replacing the shared ones; ``{}`` for none).

    Args:
        cfg: the config.
        task: one of ``TASKS``.
        inputs: the sample keys of the raster inputs (``image`` for one input).

    Raises:
        LandlearnError: An unknown key, option or task, or a value out of range.
    """
    if task not in TASKS:
        raise unknown_name("task", task, TASKS)
    if cfg is not None and not isinstance(cfg, Mapping):
        raise LandlearnError(f"augmentation config must be a mapping, got {type(cfg).__name__}")
    shared = dict(cfg or {})
    per_input = _parse_per_input(shared.pop("per_input", None))
    unknown = sorted(set(per_input) - set(inputs))
    if unknown:
        tip = did_you_mean(unknown[0], inputs, otherwise=f"inputs: {', '.join(inputs)}")
        raise LandlearnError(f"augmentation per_input names input {unknown[0]!r}; {tip}")
    params = _parse(shared)
    log.debug("augmentations for %s: %s (per input: %s)", task, params, per_input)
    return BatchAugment(params, task, inputs, per_input)
