"""LightningModules: supervised, JEM, semi-supervised and contrastive tasks, and the guard."""

from __future__ import annotations

from landlearn.tasks.base import LandlearnTask, SupervisedTask
from landlearn.tasks.classification import ClassificationTask
from landlearn.tasks.contrastive import ContrastiveTask
from landlearn.tasks.guard import DivergenceGuard
from landlearn.tasks.jem import JEMTask, SegmentationJEMTask
from landlearn.tasks.regression import RegressionTask
from landlearn.tasks.segmentation import SegmentationTask
from landlearn.tasks.semisup import SemiSupervisedSegmentationTask

__all__ = [
    "ClassificationTask",
    "ContrastiveTask",
    "DivergenceGuard",
    "JEMTask",
    "LandlearnTask",
    "RegressionTask",
    "SegmentationJEMTask",
    "SegmentationTask",
    "SemiSupervisedSegmentationTask",
    "SupervisedTask",
]
