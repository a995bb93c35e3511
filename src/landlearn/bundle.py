"""The model bundle: one ``.safetensors`` file holding weights and JSON metadata.

The safetensors header carries a ``landlearn`` entry with the JSON described in DESIGN.md (format
version, task, model name and arguments, band names, per-band mean / std from the training split,
class names and colours, ignore index, chip size, test metrics, versions). Loading reads JSON and
tensors only: no code can run. A Lightning ``.ckpt`` is opened with ``weights_only=True``.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from landlearn.atomic import atomic_path
from landlearn.bundle_check import (
    build_skeleton,
    check_model_kwargs,
    check_state_shapes,
    type_name,
    validate_meta,
)
from landlearn.colors import default_colors
from landlearn.conventions import BUNDLE_FORMAT_VERSION, IGNORE_INDEX
from landlearn.d4 import d4_mean
from landlearn.errors import LandlearnError
from landlearn.finite import FiniteCounts, screen, void_nonfinite
from landlearn.version import __version__

log = logging.getLogger(__name__)

__all__ = [
    "BundleMeta",
    "MetaView",
    "Predictor",
    "classes_of",
    "load_bundle",
    "read_meta",
    "save_bundle",
]

_KEY = "landlearn"


@dataclass
class BundleMeta:
    """What a bundle says about its model. Mirrors the JSON in the safetensors header."""

    task: str  # "classification" | "segmentation"
    model_name: str
    model_kwargs: dict[str, Any]
    band_names: list[str]
    mean: list[float]
    std: list[float]
    class_names: list[str]
    class_colors: list[list[int]] = field(default_factory=list)
    mode: str = "multiclass"  # "multiclass" | "binary" | "multilabel"
    ignore_index: int = IGNORE_INDEX
    chip_size: int = 256
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = BUNDLE_FORMAT_VERSION

    @property
    def num_classes(self) -> int:
        """Number of output classes."""
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        """Number of input bands."""
        return len(self.band_names)

    def to_json(self) -> str:
        """Serialise to the JSON stored in the header."""
        return json.dumps(self.__dict__, sort_keys=True, default=_json_default)

    @classmethod
    def from_json(cls, text: str, path: str | os.PathLike[str] | None = None) -> BundleMeta:
        """Parse and check the header JSON (:func:`landlearn.bundle_check.validate_meta`).

        Raises:
            LandlearnError: not JSON, or a field of the wrong type, range or length.
        """
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LandlearnError(f"bundle metadata is not valid JSON ({exc.msg})", path) from None
        except RecursionError:
            raise LandlearnError("bundle metadata is nested too deeply to be read", path) from None
        return cls(**validate_meta(raw, path, palette=default_colors))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray | torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _versions() -> dict[str, str]:
    return {"landlearn": __version__, "torch": torch.__version__}


def save_bundle(path: str | os.PathLike[str], model: nn.Module, meta: BundleMeta) -> Path:
    """Write ``model``'s weights and ``meta`` to ``path`` atomically (temp name, then rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not meta.versions:
        meta.versions = _versions()
    if not meta.class_colors:
        meta.class_colors = default_colors(meta.num_classes)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    state = _dedupe_shared(state)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={_KEY: meta.to_json()})
    log.info("wrote bundle %s", path)
    return path


def _dedupe_shared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors sharing memory; give each its own copy."""
    seen: set[int] = set()
    out = {}
    for k, v in state.items():
        ptr = v.data_ptr() if v.numel() else -1
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return out


def read_meta(path: str | os.PathLike[str]) -> BundleMeta:
    """Read only the metadata of a bundle (no tensors)."""
    from safetensors import safe_open

    path = _check_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise LandlearnError(f"not a landlearn bundle ({type(exc).__name__})", path) from None
    if _KEY not in header:
        raise LandlearnError("safetensors file has no landlearn metadata; not a bundle", path)
    return BundleMeta.from_json(header[_KEY], path)


def _check_file(path: str | os.PathLike[str]) -> Path:
    from landlearn.inputs import check_input_file

    return check_input_file(path, "bundle (.safetensors or .ckpt)")


def load_bundle(
    path: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    *,
    max_params: int | float | None = None,
) -> Predictor:
    """Load a bundle (or a Lightning ``.ckpt``) for inference.

    The header is checked, the model is built on the ``meta`` device to count its parameters
    (refused above ``max_params``, default ``$LANDLEARN_MAX_PARAMS`` or 2e8) and the file's tensor
    names and shapes are compared with it, all before a tensor is read or a weight allocated.

    Raises:
        LandlearnError: missing, corrupt, pickled or foreign file; a bad header; a model over
            the parameter cap; weights that do not fit the model.
    """
    from safetensors.torch import load_file

    path = _check_file(path)
    if path.suffix == ".ckpt":
        return _load_checkpoint(path, device, max_params)
    meta = read_meta(path)
    skeleton = _skeleton(meta, path, max_params)
    check_state_shapes(meta.model_name, _file_shapes(path), _shapes(skeleton), path)
    try:
        state = load_file(str(path))
    except Exception as exc:
        raise LandlearnError(f"corrupt bundle tensors ({type(exc).__name__})", path) from None
    return Predictor(_with_weights(meta, state, path), meta, device=device)


def _file_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from the safetensors header (no tensor is read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise LandlearnError(f"corrupt bundle tensors ({type(exc).__name__})", path) from None


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _build_kwargs(meta: BundleMeta) -> dict[str, Any]:
    kwargs = dict(meta.model_kwargs)
    kwargs.setdefault("in_channels", meta.in_channels)
    kwargs.setdefault("num_classes", meta.num_classes)
    kwargs["pretrained"] = False
    return kwargs


def _skeleton(meta: BundleMeta, path: Path, max_params: int | float | None) -> nn.Module:
    """The bundle's model on the ``meta`` device, after its name, arguments and size are checked."""
    from landlearn.models import build_model, model_task
    from landlearn.models.registry import builder_signature

    name = meta.model_name
    try:
        signature = builder_signature(name)
        task = model_task(name)
    except LandlearnError as exc:  # unknown model: the registry names the nearest one
        raise LandlearnError(exc.message, path) from None
    if task != meta.task:
        raise LandlearnError(
            f"model {name!r} is a {task} model but the bundle's task is {meta.task!r}", path
        )
    check_model_kwargs(name, meta.model_kwargs, signature, path)
    kwargs = _build_kwargs(meta)
    return build_skeleton(lambda: build_model(name, **kwargs), name, kwargs, path, max_params)


def _with_weights(meta: BundleMeta, state: dict[str, torch.Tensor], path: Path) -> nn.Module:
    """Build the model for real and load ``state`` (names and shapes already checked)."""
    model = build_bundle_model(meta)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # e.g. a dtype that cannot be copied into the parameter
        lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
        raise LandlearnError(
            f"weights do not fit model {meta.model_name!r}: {' '.join(lines[1:3] or lines)[:300]}",
            path,
        ) from None
    return model


def build_bundle_model(meta: BundleMeta) -> nn.Module:
    """Rebuild the bundle's architecture (random weights) from its metadata."""
    from landlearn.models import build_model

    return build_model(meta.model_name, **_build_kwargs(meta))


def _load_checkpoint(
    path: Path, device: str | torch.device, max_params: int | float | None = None
) -> Predictor:
    """A Lightning checkpoint, opened without unpickling arbitrary objects."""
    ckpt = _open_checkpoint(path)
    if not isinstance(ckpt, dict):
        raise LandlearnError(
            f"checkpoint holds {type_name(ckpt)}, expected a Lightning checkpoint (a dict)", path
        )
    if "state_dict" not in ckpt:
        raise LandlearnError("checkpoint has no state_dict", path)
    raw_state = ckpt["state_dict"]
    if not isinstance(raw_state, dict):
        raise LandlearnError(
            f"checkpoint's state_dict is {type_name(raw_state)}, expected a mapping of names to "
            "tensors",
            path,
        )
    if "landlearn_bundle_meta" not in ckpt:
        raise LandlearnError(
            "checkpoint was not written by a landlearn task; export a bundle with `landlearn fit`",
            path,
        )
    raw_meta = ckpt["landlearn_bundle_meta"]
    if not isinstance(raw_meta, str):
        raise LandlearnError(
            f"checkpoint's landlearn_bundle_meta is {type_name(raw_meta)}, expected the JSON text "
            "a landlearn task writes",
            path,
        )
    meta = BundleMeta.from_json(raw_meta, path)
    state: dict[str, torch.Tensor] = {}
    for k, v in raw_state.items():
        if not (isinstance(k, str) and k.startswith("model.")):
            continue
        if not isinstance(v, torch.Tensor):
            raise LandlearnError(
                f"checkpoint's state_dict[{k!r}] is {type_name(v)}, not a tensor", path
            )
        state[k.removeprefix("model.")] = v
    skeleton = _skeleton(meta, path, max_params)
    have = {k: tuple(v.shape) for k, v in state.items()}
    check_state_shapes(meta.model_name, have, _shapes(skeleton), path)
    return Predictor(_with_weights(meta, state, path), meta, device=device)


def _open_checkpoint(path: Path) -> object:
    """``torch.load`` with ``weights_only=True``, memory-mapped (tensors are read on use).

    Memory-mapping keeps a checkpoint whose weights will be refused from being read into RAM;
    files torch cannot map (older writers) are read the usual way.
    """
    if not zipfile.is_zipfile(path):
        raise LandlearnError("not a PyTorch checkpoint (expected a zip archive)", path)
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except (RuntimeError, ValueError, OSError):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" (the Python global {found.group(1)})" if found else " (Python objects)"
        raise LandlearnError(
            f"checkpoint holds pickled objects besides weights{what}; landlearn loads weights "
            "only (torch.load weights_only=True) and refused it",
            path,
        ) from None
    except Exception as exc:
        raise LandlearnError(f"corrupt checkpoint ({type(exc).__name__})", path) from None


class MetaView:
    """What a loaded model says about itself, read from its ``meta`` (Predictor, Ensemble)."""

    meta: BundleMeta

    @property
    def task(self) -> str:
        """``classification`` or ``segmentation``."""
        return self.meta.task

    @property
    def class_names(self) -> list[str]:
        """Class names, index order."""
        return self.meta.class_names

    @property
    def band_names(self) -> list[str]:
        """Band names, the order the model expects."""
        return self.meta.band_names


class Predictor(MetaView):
    """A bundle loaded for inference: raw-unit images in, probabilities out.

    ``predict_proba`` normalises with the bundle's training statistics, so callers pass images in
    the units of the data the model was trained on, bands ordered as ``meta.band_names``.
    """

    def __init__(
        self, model: nn.Module, meta: BundleMeta, device: str | torch.device = "cpu"
    ) -> None:
        self.meta = meta
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        c = meta.in_channels
        self._mean = torch.tensor(meta.mean, dtype=torch.float32).view(1, c, 1, 1)
        self._std = torch.tensor(meta.std, dtype=torch.float32).view(1, c, 1, 1).clamp_min(1e-12)
        self._mean, self._std = self._mean.to(self.device), self._std.to(self.device)

    def to(self, device: str | torch.device) -> Predictor:
        """Move the model and statistics to ``device``."""
        self.device = torch.device(device)
        self.model.to(self.device)
        self._mean, self._std = self._mean.to(self.device), self._std.to(self.device)
        return self

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) raw units → normalised float32 on the predictor's device."""
        image = image.to(self.device, dtype=torch.float32, non_blocking=True)
        return (image - self._mean) / self._std

    def logits(self, image: torch.Tensor, normalized: bool = False) -> torch.Tensor:
        """Model output for a batch; (B, K, H, W) for segmentation, (B, K) for classification."""
        if image.ndim == 3:
            image = image.unsqueeze(0)
        if image.shape[1] != self.meta.in_channels:
            raise LandlearnError(
                f"expected {self.meta.in_channels} bands ({', '.join(self.band_names)}), "
                f"got {image.shape[1]}; check band_names"
            )
        x = image.to(self.device, dtype=torch.float32) if normalized else self.normalize(image)
        return self.model(x)

    def probs_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax, or sigmoid for multilabel / binary single-logit models."""
        if self.meta.mode == "multilabel" or logits.shape[1] == 1:
            p = torch.sigmoid(logits.float())
            if logits.shape[1] == 1:  # binary with one logit → two-class probabilities
                p = torch.cat([1 - p, p], dim=1)
            return p
        return torch.softmax(logits.float(), dim=1)

    @torch.inference_mode()
    def predict_proba(
        self,
        image: torch.Tensor | np.ndarray,
        tta: str | None = None,
        *,
        counts: FiniteCounts | None = None,
    ) -> torch.Tensor:
        """Class probabilities for a raw-unit batch (B, C, H, W) or one image (C, H, W).

        ``tta="d4"`` averages the probabilities over the 8 flips / quarter turns of the image
        (maps are turned back first; see :mod:`landlearn.d4`), at 8× the inference cost.

        Non-finite pixels are no-data (:mod:`landlearn.finite`): never fed to the model, NaN
        probabilities (a whole NaN row for a scene classifier); values beyond ±50 training std
        are clamped there. What was found is added to ``counts`` when given, else logged.
        """
        x = self._batch(image)
        spatial = self.task == "segmentation"
        z, nodata, seen = screen(x.to(self.device), self._mean, self._std, per_sample=not spatial)
        probs = d4_mean(
            lambda t: self.probs_from_logits(self.model(t)), z, spatial=spatial, tta=tta
        )
        probs, _, seen.nonfinite_outputs = void_nonfinite(probs, nodata, spatial)
        if counts is not None:
            counts.add(seen)
        else:
            seen.warn()
        return probs

    def _batch(self, image: torch.Tensor | np.ndarray) -> torch.Tensor:
        """A (B, C, H, W) tensor with the bundle's band count."""
        if isinstance(image, np.ndarray):
            image = torch.from_numpy(np.ascontiguousarray(image))
        if image.ndim == 3:
            image = image.unsqueeze(0)
        if image.shape[1] != self.meta.in_channels:
            raise LandlearnError(
                f"expected {self.meta.in_channels} bands ({', '.join(self.band_names)}), "
                f"got {image.shape[1]}; check band_names"
            )
        return image

    def predict(self, image: torch.Tensor | np.ndarray, tta: str | None = None) -> torch.Tensor:
        """Class indices: (B, H, W) for segmentation, (B,) for classification.

        No-data (non-finite input, see :meth:`predict_proba`) is ``IGNORE_INDEX`` (255).
        """
        return classes_of(self.predict_proba(image, tta=tta))


def classes_of(probs: torch.Tensor) -> torch.Tensor:
    """Argmax over the class dimension; ``IGNORE_INDEX`` where the probabilities are NaN."""
    void = torch.isnan(probs).any(dim=1)
    return torch.where(void, IGNORE_INDEX, torch.nan_to_num(probs, nan=-1.0).argmax(dim=1))
