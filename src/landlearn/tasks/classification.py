"""Scene / patch classification: multiclass, binary or multi-label."""

from __future__ import annotations

from typing import ClassVar

from landlearn.tasks.base import SupervisedTask

__all__ = ["ClassificationTask"]


class ClassificationTask(SupervisedTask):
    """Classify each image (batches with ``image`` and ``label``).

    ``mode``: ``multiclass`` (softmax over ``num_classes``), ``binary`` (one logit) or
    ``multilabel`` (a sigmoid per class, float targets of length ``num_classes``).
    """

    task: ClassVar[str] = "classification"
    target_key: ClassVar[str] = "label"
    default_monitor: ClassVar[str] = "val_oa"
