"""Guards on a map's window layout and memory, checked before the first window is read.

- A tile / overlap pair that makes many more windows than needed (``--tile 33 --overlap 31``
  predicts every pixel of a scene hundreds of times) is warned about with the count and what a
  smaller overlap would take.
- A batch of windows whose activations would not fit in memory (``--tile 2048`` on a U-Net)
  is refused with the estimate, instead of an allocation traceback after the work began.

The activation estimate runs the bundle's model once on the ``meta`` device (shapes only, no
memory, no weights): the largest single activation of one window, times a factor for the
tensors alive at once (skip connections, the block and its input), times the batch.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from landlearn.bundle import Predictor, build_bundle_model
from landlearn.errors import LandlearnError
from landlearn.mapping.blend import TileGrid

log = logging.getLogger(__name__)

Where = str | os.PathLike[str] | None

__all__ = ["ALIVE_FACTOR", "activation_bytes", "available_bytes", "check_memory", "check_windows"]

ALIVE_FACTOR = 4
"""Activations alive at once during one forward pass, in units of the largest one."""
WASTE_FACTOR = 4
"""Warn when a grid has this many times the windows of the same tile with a quarter overlap."""


def check_windows(grid: TileGrid, multiple: int, where: Where = None) -> None:
    """Warn when the overlap makes many more windows than the tile needs."""
    lean = TileGrid.build(
        grid.height, grid.width, grid.tile_h, min(grid.overlap, grid.tile_h // 4), multiple
    )
    n = len(grid)
    if n <= 16 or n <= WASTE_FACTOR * len(lean):
        return
    per_pixel = n * grid.tile_h * grid.tile_w / max(grid.height * grid.width, 1)
    log.warning(
        "%s--tile %d --overlap %d makes %s windows for a %d×%d scene (each pixel predicted "
        "about %.0f times); --overlap %d would take %s",
        f"{where}: " if where is not None else "",
        grid.tile_h,
        grid.overlap,
        f"{n:,}",
        grid.height,
        grid.width,
        per_pixel,
        lean.overlap,
        f"{len(lean):,}",
    )


def activation_bytes(pred: Predictor, tile_h: int, tile_w: int) -> int | None:
    """Bytes of the largest activation of one window's forward pass; None if unknown."""
    try:
        with torch.device("meta"):
            model = build_bundle_model(pred.meta)
    except Exception:  # a Predictor built around a model the registry cannot rebuild
        log.debug("no meta-device copy of %s", pred.meta.model_name, exc_info=True)
        return None
    largest = 0

    def record(_module: nn.Module, _inputs: object, output: object) -> None:
        nonlocal largest
        for t in output if isinstance(output, list | tuple) else [output]:
            if isinstance(t, torch.Tensor):
                largest = max(largest, t.numel() * 4)  # float32 (bf16 on GPU halves it)

    hooks = [m.register_forward_hook(record) for m in model.modules()]
    try:
        x: Any = torch.empty(1, pred.meta.in_channels, tile_h, tile_w, device="meta")
        if pred.multi_input:  # a model that reads a dict of inputs
            x = {str(k): torch.empty(1, int(n), tile_h, tile_w, device="meta")
                 for k, n in pred.meta.in_channels_by_input.items()}  # fmt: skip
        with torch.inference_mode():
            model.eval()(x)
    except Exception:  # an op without a meta kernel: no estimate rather than a false refusal
        log.debug("meta-device forward of %s failed", pred.meta.model_name, exc_info=True)
        return None
    finally:
        for h in hooks:
            h.remove()
    return largest


def available_bytes(device: torch.device) -> int | None:
    """Free memory of ``device``: CUDA's free memory, else the system's MemAvailable."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(
    preds: Sequence[Predictor], grid: TileGrid, batch_size: int, where: Where = None
) -> int | None:
    """Refuse a batch of windows whose activations would not fit; returns the estimate.

    Raises:
        LandlearnError: the estimate exceeds the memory available on the predictors' device.
    """
    per_window = [activation_bytes(p, grid.tile_h, grid.tile_w) for p in preds]
    known = [b for b in per_window if b is not None]
    if not known:
        return None
    need = ALIVE_FACTOR * max(known) * batch_size
    free = available_bytes(preds[0].device)
    if free is not None and need > free:
        fits = max(0, math.floor(free / (ALIVE_FACTOR * max(known))))
        hint = f"--batch-size {fits} might fit" if fits >= 1 else "use a smaller --tile (e.g. 512)"
        raise LandlearnError(
            f"--tile {grid.tile_h} with --batch-size {batch_size} needs about "
            f"{_size(need)} for the model's activations, more than the "
            f"{_size(free)} free on {preds[0].device}; {hint}",
            where,
        )
    return need


def _size(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"
