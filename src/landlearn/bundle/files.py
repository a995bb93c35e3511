"""Bundle files: write one atomically, read its header, load it for inference.

A bundle is one ``.safetensors`` file: the tensors of its named models (``"<name>.<param>"``;
format 1 stored one model's tensors without a prefix) and a ``landlearn`` header entry holding
:class:`~landlearn.bundle.meta.BundleMeta` as JSON. Loading reads JSON and tensors only: no code
can run. Every model is checked (name, arguments, size, tensor names and shapes) before a tensor
is read. A Lightning ``.ckpt`` is opened with ``weights_only=True``.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from landlearn.atomic import atomic_path
from landlearn.bundle.members import Ensemble
from landlearn.bundle.meta import BundleMeta, ModelEntry
from landlearn.bundle.predictor import Predictor
from landlearn.bundle_check import build_skeleton, check_model_kwargs, check_state_shapes, type_name
from landlearn.errors import LandlearnError
from landlearn.models.weights import ENCODER_KEY
from landlearn.version import __version__

log = logging.getLogger(__name__)

__all__ = ["build_bundle_model", "load_bundle", "read_meta", "save_bundle"]

_KEY = "landlearn"

Loaded = Predictor | Ensemble
"""What :func:`load_bundle` returns: one model, or the mean of several (``combine: "mean"``).

``combine: "first"`` keeps several models in the file and predicts with the first (a mean
teacher's teacher, its student beside it)."""


def _versions() -> dict[str, str]:
    return {"landlearn": __version__, "torch": torch.__version__}


def save_bundle(
    path: str | os.PathLike[str], model: nn.Module | Mapping[str, nn.Module], meta: BundleMeta
) -> Path:
    """Write the weights and ``meta`` to ``path`` atomically (temp name, then rename).

    ``model`` is the bundle's one model, or ``{model name: module}`` for every entry of
    ``meta.models``; tensors are stored as ``"<model name>.<param>"``.

    Raises:
        LandlearnError: modules that do not match ``meta.models``.
    """
    from safetensors.torch import save_file

    path = Path(path)
    modules = _modules(model, meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not meta.versions:
        meta.versions = _versions()
    state = {
        f"{name}.{k}": v.detach().cpu().contiguous()
        for name, module in modules.items()
        for k, v in module.state_dict().items()
    }
    state = _dedupe_shared(state)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={_KEY: meta.to_json()})
    log.info("wrote bundle %s", path)
    return path


def _modules(model: nn.Module | Mapping[str, nn.Module], meta: BundleMeta) -> dict[str, nn.Module]:
    names = [m.name for m in meta.models]
    if isinstance(model, nn.Module):
        if len(names) != 1:
            raise LandlearnError(
                f"the bundle's metadata names {len(names)} models ({', '.join(names)}); pass "
                "{name: module} for each"
            )
        return {names[0]: model}
    if sorted(model) != sorted(names):
        raise LandlearnError(
            f"modules {sorted(model)} do not match the bundle's models {names}; pass one per model"
        )
    return {name: model[name] for name in names}


def _dedupe_shared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Safetensors refuses tensors sharing memory; give each its own copy."""
    seen: set[int] = set()
    out = {}
    for k, v in state.items():
        ptr = v.data_ptr() if v.numel() else -1
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return out


def read_meta(path: str | os.PathLike[str]) -> BundleMeta:
    """Read only the metadata of a bundle (no tensors); format 1 is upgraded.

    Raises:
        LandlearnError: missing, corrupt or foreign file, or a bad header.
    """
    from safetensors import safe_open

    path = _check_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise LandlearnError(f"not a landlearn bundle ({type(exc).__name__})", path) from None
    if _KEY not in header:
        if ENCODER_KEY in header:
            raise LandlearnError(
                "an encoder bundle (self-supervised pre-training): it has no head to predict "
                "with; start a classifier, U-Net or fusion model from it with weights: PATH",
                path,
            )
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
) -> Loaded:
    """Load a bundle (or a Lightning ``.ckpt``) for inference.

    Returns a :class:`~landlearn.bundle.Predictor`, or for a bundle of several models that
    combine by their mean (a one-file ensemble) an :class:`~landlearn.bundle.Ensemble`, which
    ``landlearn map`` and ``landlearn evaluate`` use like ``load_ensemble`` of the members.

    Each model is checked before a tensor is read or a weight allocated: it is built on the
    ``meta`` device to count its parameters (refused above ``max_params``, default
    ``$LANDLEARN_MAX_PARAMS`` or 2e8) and the file's tensor names and shapes are compared with it.

    Raises:
        LandlearnError: missing, corrupt, pickled or foreign file; a bad header; a model over
            the parameter cap; weights that do not fit the model.
    """
    from safetensors.torch import load_file

    path = _check_file(path)
    if path.suffix == ".ckpt":
        return _load_checkpoint(path, device, max_params)
    meta = read_meta(path)
    wanted = {e.name: _shapes(_skeleton(meta, e, path, max_params)) for e in meta.models}
    have = _by_model(meta, _file_shapes(path))
    strays = have.pop("", {})  # tensors outside every model's prefix: unexpected in the first
    for i, entry in enumerate(meta.models):
        found = have.get(entry.name, {}) | (strays if i == 0 else {})
        check_state_shapes(_label(meta, entry), found, wanted[entry.name], path)
    try:
        state = load_file(str(path))
    except Exception as exc:
        raise LandlearnError(f"corrupt bundle tensors ({type(exc).__name__})", path) from None
    return _predictor(meta, _by_model(meta, state), path, device)


def _label(meta: BundleMeta, entry: ModelEntry) -> str:
    """How a message names a model: its registry name (and its entry's name in an ensemble)."""
    return entry.registry if len(meta.models) == 1 else f"{entry.registry} ({entry.name})"


def _by_model(meta: BundleMeta, items: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Split tensors (or their shapes) by model: ``"<name>.<param>"`` → ``{name: {param: x}}``.

    Format 1 stored one model without a prefix. Names that match no model are kept under
    their own full name, in the entry ``""``.
    """
    if meta.format_version < 2:
        return {meta.models[0].name: dict(items)}
    names = sorted((m.name for m in meta.models), key=len, reverse=True)
    out: dict[str, dict[str, Any]] = {}
    for key, value in items.items():
        owner = next((n for n in names if key.startswith(n + ".")), None)
        if owner is None:
            out.setdefault("", {})[key] = value
        else:
            out.setdefault(owner, {})[key.removeprefix(owner + ".")] = value
    return out


def _predictor(
    meta: BundleMeta,
    state: Mapping[str, Mapping[str, torch.Tensor]],
    path: Path,
    device: str | torch.device,
) -> Loaded:
    """One :class:`Predictor` per model, combined as ``meta.combine`` says."""
    preds = []
    entries = meta.models[:1] if meta.combine == "first" else meta.models
    for entry in entries:
        member = meta if meta.combine == "single" else meta.member(entry)
        model = _with_weights(member, entry, state.get(entry.name, {}), path)
        preds.append(Predictor(model, member, device=device))
    if meta.combine in ("single", "first"):
        return preds[0]
    return Ensemble(preds, [path] * len(preds))


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


def _build_kwargs(meta: BundleMeta, entry: ModelEntry | None = None) -> dict[str, Any]:
    from landlearn.models.registry import is_multi_input

    entry = entry or meta.models[0]
    kwargs = dict(entry.kwargs)
    if is_multi_input(entry.registry):  # stacking order: the inputs' (the JSON object is sorted)
        kwargs["in_channels"] = dict(meta.in_channels_by_input)
    kwargs.setdefault("in_channels", meta.in_channels)
    kwargs.setdefault("num_classes", sum(h.out_channels for h in meta.heads))
    kwargs["pretrained"] = False
    return kwargs


def _skeleton(
    meta: BundleMeta, entry: ModelEntry, path: Path, max_params: int | float | None
) -> nn.Module:
    """The entry's model on the ``meta`` device, after its name, arguments and size are checked."""
    from landlearn.models import build_model, model_task
    from landlearn.models.registry import builder_signature

    name = entry.registry
    try:
        signature = builder_signature(name)
        task = model_task(name)
    except LandlearnError as exc:  # unknown model: the registry names the nearest one
        raise LandlearnError(exc.message, path) from None
    if task != meta.task:
        raise LandlearnError(
            f"model {name!r} is a {task} model but the bundle's task is {meta.task!r}", path
        )
    check_model_kwargs(name, entry.kwargs, signature, path)
    kwargs = _build_kwargs(meta, entry)
    return build_skeleton(lambda: build_model(name, **kwargs), name, kwargs, path, max_params)


def _with_weights(
    meta: BundleMeta, entry: ModelEntry, state: Mapping[str, torch.Tensor], path: Path
) -> nn.Module:
    """Build the entry's model for real and load ``state`` (names and shapes already checked)."""
    from landlearn.models import build_model

    model = (
        build_bundle_model(meta)
        if len(meta.models) == 1
        else build_model(entry.registry, **_build_kwargs(meta, entry))
    )
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # e.g. a dtype that cannot be copied into the parameter
        lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
        raise LandlearnError(
            f"weights do not fit model {entry.registry!r}: {' '.join(lines[1:3] or lines)[:300]}",
            path,
        ) from None
    return model


def build_bundle_model(meta: BundleMeta) -> nn.Module:
    """Rebuild the bundle's (first) model with random weights from its metadata."""
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
    if len(meta.models) != 1:
        raise LandlearnError(
            f"checkpoint's metadata names {len(meta.models)} models; a task checkpoint has one",
            path,
        )
    state: dict[str, torch.Tensor] = {}
    for k, v in raw_state.items():
        if not (isinstance(k, str) and k.startswith("model.")):
            continue
        if not isinstance(v, torch.Tensor):
            raise LandlearnError(
                f"checkpoint's state_dict[{k!r}] is {type_name(v)}, not a tensor", path
            )
        state[k.removeprefix("model.")] = v
    entry = meta.models[0]
    skeleton = _skeleton(meta, entry, path, max_params)
    have = {k: tuple(v.shape) for k, v in state.items()}
    check_state_shapes(entry.registry, have, _shapes(skeleton), path)
    return Predictor(_with_weights(meta, entry, state, path), meta, device=device)


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
