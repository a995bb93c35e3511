"""Figures and the HTML / markdown page of a run."""

from __future__ import annotations

from landlearn.report.figures import (
    plot_confusion_matrix,
    plot_examples,
    plot_per_class,
    plot_reliability,
    plot_reliability_pair,
    plot_training_curves,
)
from landlearn.report.markdown import metrics_markdown
from landlearn.report.page import build_report

__all__ = [
    "build_report",
    "metrics_markdown",
    "plot_confusion_matrix",
    "plot_examples",
    "plot_per_class",
    "plot_reliability",
    "plot_reliability_pair",
    "plot_training_curves",
]
