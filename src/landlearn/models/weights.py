"""Start a model from the tensors of a landlearn bundle or encoder bundle (``weights: PATH``).

Every tensor of the model whose name and shape match one in the file is loaded; the rest keep
their fresh initialisation, and both lists are logged. Names match when they are equal, or when
one is the other with a leading prefix: a bundle v2 file names tensors ``model.<param>`` (or
``member0.<param>`` in a one-file ensemble), an early-fusion model names its U-Net's
``net.<param>``, an encoder bundle may hold ``encoder.*`` only. So a plain U-Net bundle starts
an early-fusion U-Net (every tensor but the first convolution, whose band count differs, and a
head with another class count), and a self-supervised encoder starts a segmenter's encoder.

An encoder bundle (``landlearn_encoder`` header, from self-supervised pre-training) holds one
encoder per input, ``<input>.<param>``. Each is placed where it fits best in the model: the
module (the model itself for a timm classifier, ``encoder`` of an smp U-Net, ``branches.<input>``
or ``encoders.<input>`` of a fusion model) under which most of its tensors exist with the same
name and shape, preferring a module named after its input; a single-input model takes the
encoder of its own input, or the only one. Only exact names below that module are loaded.

Only safetensors files are read: loading weights never runs code.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn

from landlearn.errors import LandlearnError

log = logging.getLogger(__name__)

__all__ = [
    "ENCODER_KEY",
    "WeightsReport",
    "encoder_modules",
    "load_matching_weights",
    "match_tensors",
]

ENCODER_KEY = "landlearn_encoder"
"""The safetensors header entry of an encoder bundle (``landlearn.bundle.encoder``)."""


class WeightsReport:
    """What :func:`load_matching_weights` did: model tensor → file tensor, and what was left."""

    def __init__(self, loaded: dict[str, str], left: dict[str, str], unused: list[str]) -> None:
        self.loaded, self.left, self.unused = loaded, left, unused

    def summary(self, path: str | os.PathLike[str]) -> str:
        """One line for the log."""
        total = len(self.loaded) + len(self.left)
        text = f"weights from {path}: loaded {len(self.loaded)} of {total} tensors"
        if self.left:
            shown = "; ".join(f"{k} ({why})" for k, why in list(self.left.items())[:6])
            more = f" and {len(self.left) - 6} more" if len(self.left) > 6 else ""
            text += f"; left as initialised: {shown}{more}"
        if self.unused:
            text += f"; {len(self.unused)} tensor(s) of the file unused"
        return text


def _read(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise LandlearnError("weights file not found", path)
    if path.suffix != ".safetensors":
        raise LandlearnError(
            "weights must be a landlearn bundle or encoder bundle (.safetensors); checkpoints "
            "and pickles are not loaded",
            path,
        )
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise LandlearnError(f"not a readable safetensors file ({exc})", path) from None


def match_tensors(
    model_state: dict[str, torch.Tensor], file_state: dict[str, torch.Tensor]
) -> WeightsReport:
    """Pair model tensors with file tensors by name (up to a leading prefix) and shape."""
    loaded: dict[str, str] = {}
    left: dict[str, str] = {}
    used: set[str] = set()
    bare = _without_model_prefix(list(file_state))  # bare name -> file name
    for key, tensor in model_state.items():
        names = [bare[key]] if key in bare else []
        names += [f for b, f in bare.items() if b.endswith("." + key)]  # file: x.<key>
        names += [f for b, f in bare.items() if key.endswith("." + b)]  # model: net.<key>
        names = sorted(dict.fromkeys(names), key=len)  # the least extra prefix first
        same = [s for s in names if tuple(file_state[s].shape) == tuple(tensor.shape)]
        if same:
            loaded[key] = same[0]
            used.add(same[0])
        elif names:
            shape = tuple(file_state[names[0]].shape)
            left[key] = f"{tuple(tensor.shape)} here, {shape} in the file"
        else:
            left[key] = "not in the file"
    unused = [s for s in file_state if s not in used]
    return WeightsReport(loaded, left, unused)


def _without_model_prefix(names: list[str]) -> dict[str, str]:
    """Strip a bundle's model prefix from tensor names.

    Bare tensor name → name in the file: the first member's ``<model>.`` prefix of a bundle
    v2 file (``model.``, ``member0.``: every name has one, all of one model kept) removed.
    """
    heads = [n.split(".", 1)[0] for n in names if "." in n]
    if len(heads) != len(names) or not heads:
        return {n: n for n in names}
    first = heads[0]
    single = first == "model" and all(h == first for h in heads)
    if single or first.startswith("member"):
        return {n.split(".", 1)[1]: n for n in names if n.startswith(first + ".")}
    return {n: n for n in names}


def _encoder_inputs(path: Path) -> list[str] | None:
    """The input names of an encoder bundle's encoders; None for any other file."""
    import json

    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        header = f.metadata() or {}
    if ENCODER_KEY not in header:
        return None
    try:
        return [str(k) for k in json.loads(header[ENCODER_KEY])["encoders"]]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LandlearnError(f"bad encoder-bundle header ({exc})", path) from None


def _place(
    state: dict[str, torch.Tensor], encoder: dict[str, torch.Tensor], name: str
) -> tuple[str, int]:
    """The module prefix of ``state`` where most of ``encoder`` fits, and how many fit."""
    prefixes = {""} | {k.rsplit(".", n)[0] + "." for k in state for n in range(1, k.count(".") + 1)}
    best, fits = "", -1
    for prefix in sorted(prefixes, key=lambda p: (not p.endswith(f".{name}."), len(p))):
        n = sum(
            1
            for k, v in encoder.items()
            if prefix + k in state and tuple(state[prefix + k].shape) == tuple(v.shape)
        )
        if n > fits:
            best, fits = prefix, n
    return best, fits


def _match_encoders(
    state: dict[str, torch.Tensor],
    file_state: dict[str, torch.Tensor],
    inputs: list[str],
    model_inputs: list[str] | None,
    path: Path,
) -> WeightsReport:
    """Place each encoder of an encoder bundle in the model (see the module docstring)."""
    chosen = inputs
    if model_inputs is not None and len(model_inputs) == 1 and len(inputs) > 1:
        if model_inputs[0] not in inputs:
            raise LandlearnError(
                f"the encoder bundle holds encoders for {inputs}; this model reads "
                f"{model_inputs[0]!r}: name the input like one of them",
                path,
            )
        chosen = [model_inputs[0]]
    pairs: dict[str, str] = {}
    for name in chosen:
        encoder = {k[len(name) + 1 :]: v for k, v in file_state.items() if k.startswith(name + ".")}
        prefix, fits = _place(state, encoder, name)
        if fits > 0:
            pairs.update({prefix + k: f"{name}.{k}" for k in encoder})
    loaded, left = {}, {}
    for key, tensor in state.items():
        source = pairs.get(key)
        if source is None:
            left[key] = "not in the file"
        elif tuple(file_state[source].shape) != tuple(tensor.shape):
            shape = tuple(file_state[source].shape)
            left[key] = f"{tuple(tensor.shape)} here, {shape} in the file"
        else:
            loaded[key] = source
    used = set(loaded.values())
    return WeightsReport(loaded, left, [k for k in file_state if k not in used])


def load_matching_weights(
    model: nn.Module, path: str | os.PathLike[str], inputs: list[str] | None = None
) -> WeightsReport:
    """Load every tensor of ``path`` that fits ``model``; log what was loaded and what was left.

    Args:
        inputs: the names of the model's inputs (picks an encoder bundle's encoder for a
            single-input model).

    Raises:
        LandlearnError: the file is missing, not safetensors, or has no tensor that fits.
    """
    path = Path(path)
    file_state = _read(path)
    state = model.state_dict()
    encoders = _encoder_inputs(path)
    if encoders is not None:
        report = _match_encoders(state, file_state, encoders, inputs, path)
    else:
        report = match_tensors(state, file_state)
    if not report.loaded:
        raise LandlearnError(
            f"no tensor of the file fits this model ({len(file_state)} tensors, none with a "
            "matching name and shape); is it a bundle of the same architecture?",
            path,
        )
    with torch.no_grad():
        for key, source in report.loaded.items():
            state[key].copy_(file_state[source].to(state[key].dtype))
    log.info(report.summary(path))
    return report


def encoder_modules(model: nn.Module) -> list[nn.Module]:
    """The modules an encoder bundle fills: what ``freeze_encoder`` freezes.

    ``encoder`` of an smp model; the raster branches (``branches`` / ``encoders``) of a fusion
    model (its wrapped ``net`` for early fusion); every child of a timm classifier but its
    classifier head.

    Raises:
        LandlearnError: a model where no encoder can be told from the head.
    """
    net = getattr(model, "net", None)
    if isinstance(net, nn.Module) and not isinstance(getattr(model, "encoder", None), nn.Module):
        return encoder_modules(net)
    encoder = getattr(model, "encoder", None)
    if isinstance(encoder, nn.Module):
        return [encoder]
    for attr in ("branches", "encoders"):
        group = getattr(model, attr, None)
        if isinstance(group, nn.ModuleDict):
            from landlearn.models.branches import TableMLP

            return [m for m in group.values() if not isinstance(m, TableMLP)]
    classifier = getattr(model, "get_classifier", None)
    if callable(classifier):
        head = classifier()
        return [m for m in model.children() if m is not head]
    raise LandlearnError(
        f"{type(model).__name__}: cannot tell its encoder from its head (freeze_encoder / "
        "encoder_lr need a timm classifier, an smp model or a fusion model)"
    )
