"""Semantic segmentation: a class per pixel, ``IGNORE_INDEX`` where unlabelled."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from landlearn.tasks.base import SupervisedTask

__all__ = ["SegmentationTask"]


class SegmentationTask(SupervisedTask):
    """Segment each image (batches with ``image`` and ``mask``).

    Use ``loss: partial_ce`` for sparsely labelled masks (points or scribbles).
    """

    task: ClassVar[str] = "segmentation"
    target_key: ClassVar[str] = "mask"
    default_monitor: ClassVar[str] = "val_miou"

    def _target(self, batch: dict[str, Any], head: str | None = None) -> torch.Tensor:
        mask = super()._target(batch, head)
        if mask.ndim == 4 and mask.shape[1] == 1:  # some TorchGeo datamodules keep (B, 1, H, W)
            mask = mask[:, 0]
        return mask.long()
