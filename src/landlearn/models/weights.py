"""Start a model from the tensors of a landlearn bundle or encoder bundle (``weights: PATH``).

Every tensor of the model whose name and shape match one in the file is loaded; the rest keep
their fresh initialisation, and both lists are logged. Names match when they are equal, or when
one is the other with a leading prefix: a bundle v2 file names tensors ``model.<param>`` (or
``member0.<param>`` in a one-file ensemble), an early-fusion model names its U-Net's
``net.<param>``, an encoder bundle may hold ``encoder.*`` only. So a plain U-Net bundle starts
an early-fusion U-Net (every tensor but the first convolution, whose band count differs, and a
head with another class count), and a self-supervised encoder starts a segmenter's encoder.

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

__all__ = ["WeightsReport", "load_matching_weights", "match_tensors"]


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
        names = list(dict.fromkeys(names))
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


def load_matching_weights(model: nn.Module, path: str | os.PathLike[str]) -> WeightsReport:
    """Load every tensor of ``path`` that fits ``model``; log what was loaded and what was left.

    Raises:
        LandlearnError: the file is missing, not safetensors, or has no tensor that fits.
    """
    path = Path(path)
    file_state = _read(path)
    state = model.state_dict()
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
