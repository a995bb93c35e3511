"""LightningModules: classification and segmentation."""

from __future__ import annotations

from landlearn.tasks.base import LandlearnTask
from landlearn.tasks.classification import ClassificationTask
from landlearn.tasks.segmentation import SegmentationTask

__all__ = ["ClassificationTask", "LandlearnTask", "SegmentationTask"]
