"""Encoder bundles: the encoder(s) of self-supervised pre-training, for ``weights:`` of a task.

One ``.safetensors`` file, like a model bundle, but its header entry is ``landlearn_encoder`` (so
``load_bundle`` refuses it with a clear line instead of predicting with a model that has no
head): the JSON of :class:`EncoderMeta` — the method (``simclr``, ``dual_simclr``), each
encoder's input name, timm model name and band count, the inputs' training statistics, the
pre-training options, the versions. Tensors are ``"<input name>.<param>"``: one encoder per
input (``image.conv1.weight``; ``s2.*`` and ``s1.*`` after Dual-SimCLR), named as timm names
them, which are also smp's names for ResNets, so a file starts a timm classifier, an smp U-Net
encoder and the branch of that input in a fusion model
(:func:`landlearn.models.weights.load_matching_weights`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from landlearn.atomic import atomic_path
from landlearn.errors import LandlearnError
from landlearn.models.weights import ENCODER_KEY
from landlearn.schema import InputSpec

__all__ = ["ENCODER_KEY", "EncoderMeta", "read_encoder_meta", "save_encoder_bundle"]

ENCODER_FORMAT = 1


@dataclass
class EncoderMeta:
    """What an encoder bundle says about its encoders.

    Args:
        method: how they were trained (``simclr``, ``dual_simclr``).
        encoders: input name → timm model name, in the order of ``inputs``.
        inputs: the inputs' specs (bands, training mean / std): the normalisation a task
            fine-tuned from the encoder should keep.
        options: the pre-training options (temperature, views, memory bank, epochs …).
        metrics: e.g. the last training loss.
        versions: library versions that wrote the file.
    """

    method: str
    encoders: dict[str, str]
    inputs: list[InputSpec] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    format_version: int = ENCODER_FORMAT

    def to_json(self) -> str:
        """The header JSON."""
        data = {
            "format_version": self.format_version,
            "method": self.method,
            "encoders": self.encoders,
            "inputs": [s.to_dict() for s in self.inputs],
            "options": self.options,
            "metrics": self.metrics,
            "versions": self.versions,
        }
        return json.dumps(data, default=float)

    @classmethod
    def from_json(cls, text: str, path: str | os.PathLike[str] | None = None) -> EncoderMeta:
        """Parse the header JSON.

        Raises:
            LandlearnError: not JSON, or without ``method`` / ``encoders``.
        """
        try:
            data = json.loads(text)
            return cls(
                method=str(data["method"]),
                encoders={str(k): str(v) for k, v in data["encoders"].items()},
                inputs=[InputSpec.from_dict(s) for s in data.get("inputs", [])],
                options=dict(data.get("options", {})),
                metrics=dict(data.get("metrics", {})),
                versions=dict(data.get("versions", {})),
                format_version=int(data.get("format_version", ENCODER_FORMAT)),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LandlearnError(f"bad encoder-bundle header ({exc})", path) from None


def save_encoder_bundle(
    path: str | os.PathLike[str], encoders: Mapping[str, nn.Module], meta: EncoderMeta
) -> Path:
    """Write ``{input name: encoder}`` and ``meta`` atomically; tensors ``<input>.<param>``.

    Raises:
        LandlearnError: the modules and ``meta.encoders`` name different inputs.
    """
    from safetensors.torch import save_file

    from landlearn.version import __version__

    if list(encoders) != list(meta.encoders):
        raise LandlearnError(
            f"encoder bundle: modules for {list(encoders)} but metadata for {list(meta.encoders)}"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not meta.versions:
        meta.versions = {"landlearn": __version__, "torch": torch.__version__}
    state = {
        f"{name}.{k}": v.detach().cpu().contiguous().clone()
        for name, module in encoders.items()
        for k, v in module.state_dict().items()
    }
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={ENCODER_KEY: meta.to_json()})
    return path


def read_encoder_meta(path: str | os.PathLike[str]) -> EncoderMeta | None:
    """The metadata of an encoder bundle; None for any other safetensors file.

    Raises:
        LandlearnError: not a readable safetensors file, or a bad encoder header.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise LandlearnError(
            f"not a readable safetensors file ({type(exc).__name__})", path
        ) from None
    if ENCODER_KEY not in header:
        return None
    return EncoderMeta.from_json(header[ENCODER_KEY], path)
