"""LightningModules: the slim base, the supervised task, and its class and regression tasks."""

from __future__ import annotations

from landlearn.tasks.base import LandlearnTask, SupervisedTask
from landlearn.tasks.classification import ClassificationTask
from landlearn.tasks.regression import RegressionTask
from landlearn.tasks.segmentation import SegmentationTask

__all__ = [
    "ClassificationTask",
    "LandlearnTask",
    "RegressionTask",
    "SegmentationTask",
    "SupervisedTask",
]
