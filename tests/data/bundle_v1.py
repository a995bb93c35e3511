"""Format-1 bundles written by the format-1 writer, kept here frozen (issue 15, item 6).

``V1Meta`` and ``save_v1`` are copies of ``landlearn.bundle``'s ``BundleMeta`` (fields and
``to_json``) and ``save_bundle`` as of format 1 (commit 4d88569): flat fields, one model, tensor
names without a prefix. Do not "fix" them: the point is that today's ``load_bundle`` reads what
yesterday's code wrote. ``main()`` writes two seeded bundles under ``tests/data/_generated/
bundle_v1/`` (gitignored; ``tests/data/make_all.py`` calls it): a ``small_cnn`` classifier and a
small U-Net segmenter. ``v1_of`` turns a single-model bundle back into a format-1 header and
tensors, for tests that edit format-1 fields.

Run: ``python tests/data/bundle_v1.py [OUT_DIR]``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

OUT = Path(__file__).resolve().parent / "_generated" / "bundle_v1"
SEG_KWARGS: dict[str, Any] = {"encoder": "tu-mobilenetv3_small_050", "encoder_depth": 3,
                              "decoder_channels": [16, 8, 4]}  # fmt: skip


@dataclass
class V1Meta:
    """Format-1 ``BundleMeta`` (frozen copy): mirrors the JSON in the safetensors header."""

    task: str  # "classification" | "segmentation"
    model_name: str
    model_kwargs: dict[str, Any]
    band_names: list[str]
    mean: list[float]
    std: list[float]
    class_names: list[str]
    class_colors: list[list[int]] = field(default_factory=list)
    mode: str = "multiclass"  # "multiclass" | "binary" | "multilabel"
    ignore_index: int = 255
    chip_size: int = 256
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = 1

    @property
    def num_classes(self) -> int:
        """Number of output classes."""
        return len(self.class_names)

    def to_json(self) -> str:
        """Serialise to the JSON stored in the header (format 1)."""
        return json.dumps(self.__dict__, sort_keys=True, default=_json_default)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray | torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _dedupe_shared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    seen: set[int] = set()
    out = {}
    for k, v in state.items():
        ptr = v.data_ptr() if v.numel() else -1
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return out


def save_v1(path: str | Path, model: nn.Module, meta: V1Meta) -> Path:
    """The format-1 ``save_bundle`` (frozen copy): tensors without a prefix, flat JSON."""
    from safetensors.torch import save_file

    from landlearn.atomic import atomic_path
    from landlearn.colors import default_colors
    from landlearn.version import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not meta.versions:
        meta.versions = {"landlearn": __version__, "torch": torch.__version__}
    if not meta.class_colors:
        meta.class_colors = default_colors(meta.num_classes)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    state = _dedupe_shared(state)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"landlearn": meta.to_json()})
    return path


def v1_of(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(format-1 header, unprefixed tensors) of a single-model bundle of any format."""
    from safetensors.torch import load_file

    from landlearn.bundle import read_meta

    meta = read_meta(path)
    v1 = V1Meta(
        task=meta.task, model_name=meta.model_name, model_kwargs=dict(meta.model_kwargs),
        band_names=meta.band_names, mean=meta.mean, std=meta.std,
        class_names=meta.class_names, class_colors=meta.class_colors, mode=meta.mode,
        ignore_index=meta.ignore_index, chip_size=meta.chip_size, metrics=meta.metrics,
        versions=meta.versions, extra=meta.extra,
    )  # fmt: skip
    prefix = f"{meta.models[0].name}."
    state = load_file(str(path))
    if meta.format_version >= 2:
        state = {k.removeprefix(prefix): v for k, v in state.items()}
    return json.loads(v1.to_json()), state


def write_cls(path: Path) -> Path:
    """A seeded 4-band, 3-class ``small_cnn`` classifier (chips of 32)."""
    from landlearn.models import build_model

    torch.manual_seed(0)
    model = build_model("small_cnn", in_channels=4, num_classes=3, width=8, depth=2)
    meta = V1Meta(
        task="classification", model_name="small_cnn", model_kwargs={"width": 8, "depth": 2},
        band_names=["blue", "green", "red", "nir"], mean=[100.0, 110.0, 120.0, 130.0],
        std=[50.0, 40.0, 30.0, 0.0], class_names=["water", "forest", "urban"],
        class_colors=[[0, 0, 255], [0, 128, 0], [200, 0, 0]], chip_size=32,
        metrics={"overall_accuracy": 0.5},
    )  # fmt: skip
    return save_v1(path, model, meta)


def write_seg(path: Path) -> Path:
    """A seeded 4-band, 3-class small U-Net (MobileNetV3-small encoder, depth 3; chips of 32)."""
    from landlearn.models import build_model

    torch.manual_seed(1)
    model = build_model("unet", in_channels=4, num_classes=3, **SEG_KWARGS)
    with torch.no_grad():  # BatchNorm running statistics that are not the defaults
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    meta = V1Meta(
        task="segmentation", model_name="unet", model_kwargs=dict(SEG_KWARGS),
        band_names=["blue", "green", "red", "nir"], mean=[100.0] * 4, std=[50.0] * 4,
        class_names=["water", "forest", "urban"], chip_size=32,
    )  # fmt: skip
    return save_v1(path, model, meta)


def main(out: Path = OUT) -> dict[str, Path]:
    """Write ``cls_v1.safetensors`` and ``seg_v1.safetensors`` under ``out`` (cleared first)."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.safetensors"):
        old.unlink()
    return {"cls": write_cls(out / "cls_v1.safetensors"),
            "seg": write_seg(out / "seg_v1.safetensors")}  # fmt: skip


if __name__ == "__main__":
    for name, p in main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT).items():
        sys.stdout.write(f"{name}: {p}\n")
