"""Markdown tables of a run's test metrics (for READMEs, PR comments, papers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from landlearn.report._runfiles import finite

__all__ = ["SUMMARY_METRICS", "format_value", "metrics_markdown", "per_class_rows", "summary_rows"]

SUMMARY_METRICS: tuple[tuple[str, str], ...] = (
    ("overall_accuracy", "Overall accuracy (OA)"),
    ("average_accuracy", "Average accuracy (AA)"),
    ("miou", "Mean IoU"),
    ("dice", "Dice"),
    ("macro_f1", "Macro F1"),
    ("kappa", "Cohen's kappa"),
    ("auroc", "AUROC"),
    ("ece", "ECE"),
)
"""Keys of ``metrics.json`` shown in the summary table, with their labels."""

REGRESSION_METRICS: tuple[tuple[str, str], ...] = (
    ("r2", "R²"),
    ("mae", "MAE"),
    ("rmse", "RMSE"),
    ("nll", "Gaussian NLL"),
)
"""The summary of a regression head's ``metrics.json`` (errors in the target's units)."""

_PER_CLASS = ("precision", "recall", "f1", "iou")
ABSENT = "—"
#: what an ``ABSENT`` cell means, under the per-class tables
ABSENT_NOTE = (
    "undefined: the class is absent from the test split, or (precision) it was never predicted."
)


def format_value(value: Any, digits: int = 4) -> str:
    """A metric for a table: fixed digits, ``—`` for null / NaN."""
    number = finite(value)
    return ABSENT if number is None else f"{number:.{digits}f}"


def summary_rows(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) for each summary metric present in ``metrics``, plus the sample count."""
    # AUROC is computed for classification only; a segmentation run's null is "not applicable"
    if metrics.get("task") == "regression":
        units = metrics.get("units") or []
        unit = f" ({units[0]})" if len(units) == 1 and units[0] else ""
        rows = [
            (label + (unit if key in ("mae", "rmse") else ""), format_value(metrics[key]))
            for key, label in REGRESSION_METRICS
            if finite(metrics.get(key)) is not None
        ]
        if finite(metrics.get("samples")) is not None:
            rows.append(("Test samples", f"{int(metrics['samples']):,}"))
        return rows
    skip = (
        {"auroc"}
        if metrics.get("auroc") is None and metrics.get("task") != "classification"
        else set()
    )
    rows = [
        (label, format_value(metrics[key]))
        for key, label in SUMMARY_METRICS
        if key in metrics and key not in skip
    ]
    for key in ("pixels", "samples"):
        if finite(metrics.get(key)) is not None:
            rows.append((f"Test {key}", f"{int(metrics[key]):,}"))
    return rows


def per_class_rows(metrics: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-class table; an empty header when there is none."""
    per_class = metrics.get("per_class") or {}
    keys = [key for key in _PER_CLASS if per_class.get(key) is not None]
    has_support = per_class.get("support") is not None
    if not keys and not has_support:
        return [], []
    length = max(len(per_class[key]) for key in [*keys, *(["support"] if has_support else [])])
    names: Sequence[str] = metrics.get("class_names") or []
    header = ["class", *(("IoU" if k == "iou" else "F1" if k == "f1" else k) for k in keys)]
    if has_support:
        header.append("support")
    rows = []
    for index in range(length):
        row = [str(names[index]) if index < len(names) else f"class {index}"]
        for key in keys:
            values = per_class[key]
            row.append(format_value(values[index]) if index < len(values) else ABSENT)
        if has_support:
            support = per_class["support"]
            count = finite(support[index]) if index < len(support) else None
            row.append(ABSENT if count is None else f"{int(count):,}")
        rows.append(row)
    return header, rows


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    align = ["---"] + ["---:"] * (len(header) - 1)
    return [line(header), "| " + " | ".join(align) + " |", *(line(row) for row in rows)]


def metrics_markdown(metrics: Mapping[str, Any], title: str | None = None) -> str:
    """Summary and per-class tables of ``metrics.json`` as GitHub-flavoured markdown."""
    lines = [f"# {title}", ""] if title else []
    task = metrics.get("task")
    classes = metrics.get("num_classes")
    if task == "regression":
        targets = ", ".join(metrics.get("targets") or []) or "?"
        lines += [f"Task: regression of {targets}.", ""]
    elif task or classes:
        lines += [f"Task: {task or 'unknown'}, {classes or '?'} classes.", ""]
    if metrics.get("tta"):
        lines += [
            f"Test-time augmentation: {metrics['tta']} (mean over 8 flips / quarter turns).",
            "",
        ]
    if metrics.get("ensemble"):
        members = metrics["ensemble"]
        lines += [
            f"Ensemble: mean probabilities of {len(members)} bundles ({', '.join(members)}).",
            "",
        ]
    summary = summary_rows(metrics)
    if summary:
        lines += ["## Test metrics", "", *_table(["metric", "value"], summary), ""]
    header, rows = per_class_rows(metrics)
    if header:
        lines += ["## Per class", "", *_table(header, rows), ""]
        if any(ABSENT in row[1:] for row in rows):
            lines += [f"{ABSENT}: {ABSENT_NOTE}", ""]
    return "\n".join(lines)
