"""LightningModules: the base, the supervised tasks, JEM and the divergence guard."""

from __future__ import annotations

from landlearn.tasks.base import LandlearnTask, SupervisedTask
from landlearn.tasks.classification import ClassificationTask
from landlearn.tasks.guard import DivergenceGuard
from landlearn.tasks.jem import JEMTask, SegmentationJEMTask
from landlearn.tasks.regression import RegressionTask
from landlearn.tasks.segmentation import SegmentationTask

__all__ = [
    "ClassificationTask",
    "DivergenceGuard",
    "JEMTask",
    "LandlearnTask",
    "RegressionTask",
    "SegmentationJEMTask",
    "SegmentationTask",
    "SupervisedTask",
]
