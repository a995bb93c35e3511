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
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from landlearn.atomic import atomic_path
from landlearn.conventions import BUNDLE_FORMAT_VERSION, IGNORE_INDEX
from landlearn.d4 import d4_mean
from landlearn.errors import LandlearnError

log = logging.getLogger(__name__)

__all__ = ["BundleMeta", "MetaView", "Predictor", "load_bundle", "read_meta", "save_bundle"]

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
        """Parse the header JSON; raises ``LandlearnError`` when fields are missing."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LandlearnError(f"bundle metadata is not valid JSON ({exc.msg})", path) from None
        version = raw.get("format_version", 0)
        if version > BUNDLE_FORMAT_VERSION:
            raise LandlearnError(
                f"bundle format {version} is newer than this landlearn understands "
                f"({BUNDLE_FORMAT_VERSION}); upgrade landlearn",
                path,
            )
        known = set(cls.__dataclass_fields__)
        missing = [k for k in ("task", "model_name", "band_names", "class_names") if k not in raw]
        if missing:
            raise LandlearnError(f"bundle metadata lacks {', '.join(missing)}", path)
        return cls(**{k: v for k, v in raw.items() if k in known})


def default_colors(n: int) -> list[list[int]]:
    """A distinct colour per class (tab10, tab20 past 10 classes) when a data set names none.

    One palette for bundles, maps and reports, so a class keeps its colour everywhere.
    """
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [[round(255 * c) for c in cmap(i % cmap.N)[:3]] for i in range(n)]


def hex_color(rgb: Sequence[int]) -> str:
    """``#rrggbb`` from the first three values of an RGB(A) colour (matplotlib, QGIS)."""
    r, g, b = (int(v) for v in rgb[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray | torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _versions() -> dict[str, str]:
    from landlearn import __version__

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


def load_bundle(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Predictor:
    """Load a bundle (or a Lightning ``.ckpt``) for inference.

    Raises:
        LandlearnError: missing, corrupt, pickled or foreign file.
    """
    from safetensors.torch import load_file

    path = _check_file(path)
    if path.suffix == ".ckpt":
        return _load_checkpoint(path, device)
    meta = read_meta(path)
    try:
        state = load_file(str(path))
    except Exception as exc:
        raise LandlearnError(f"corrupt bundle tensors ({type(exc).__name__})", path) from None
    model = build_bundle_model(meta)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise LandlearnError(
            f"weights do not fit model {meta.model_name!r}: {first}", path
        ) from None
    return Predictor(model, meta, device=device)


def build_bundle_model(meta: BundleMeta) -> nn.Module:
    """Rebuild the bundle's architecture (random weights) from its metadata."""
    from landlearn.models import build_model

    kwargs = dict(meta.model_kwargs)
    kwargs.setdefault("in_channels", meta.in_channels)
    kwargs.setdefault("num_classes", meta.num_classes)
    kwargs["pretrained"] = False
    return build_model(meta.model_name, **kwargs)


def _load_checkpoint(path: Path, device: str | torch.device) -> Predictor:
    """A Lightning checkpoint, opened without unpickling arbitrary objects."""
    if not zipfile.is_zipfile(path):
        raise LandlearnError("not a PyTorch checkpoint (expected a zip archive)", path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0][:160]
        raise LandlearnError(
            f"checkpoint holds pickled objects and was refused (weights_only=True): {first}", path
        ) from None
    except Exception as exc:
        raise LandlearnError(f"corrupt checkpoint ({type(exc).__name__})", path) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise LandlearnError("checkpoint has no state_dict", path)
    raw_meta = ckpt.get("landlearn_bundle_meta")
    if not isinstance(raw_meta, str):
        raise LandlearnError(
            "checkpoint was not written by a landlearn task; export a bundle with `landlearn fit`",
            path,
        )
    meta = BundleMeta.from_json(raw_meta, path)
    state = {
        k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")
    }
    model = build_bundle_model(meta)
    model.load_state_dict(state)
    return Predictor(model, meta, device=device)


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
        self, image: torch.Tensor | np.ndarray, tta: str | None = None
    ) -> torch.Tensor:
        """Class probabilities for a raw-unit batch (B, C, H, W) or one image (C, H, W).

        ``tta="d4"`` averages the probabilities over the 8 flips / quarter turns of the image
        (maps are turned back first; see :mod:`landlearn.d4`), at 8× the inference cost.
        """
        if isinstance(image, np.ndarray):
            image = torch.from_numpy(np.ascontiguousarray(image))
        return d4_mean(
            lambda x: self.probs_from_logits(self.logits(x)),
            image,
            spatial=self.task == "segmentation",
            tta=tta,
        )

    def predict(self, image: torch.Tensor | np.ndarray, tta: str | None = None) -> torch.Tensor:
        """Class indices: (B, H, W) for segmentation, (B,) for classification."""
        return self.predict_proba(image, tta=tta).argmax(dim=1)
