"""``build_report``: the figures, HTML page and markdown tables of one run folder."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from landlearn.atomic import write_atomic
from landlearn.colors import default_colors, parse_colors
from landlearn.errors import LandlearnError
from landlearn.report._html import FigureItem, PageContent, render_page
from landlearn.report._runfiles import (
    RunFiles,
    find_run_files,
    key_hparams,
    load_hparams,
    read_metrics_csv,
    read_metrics_json,
)
from landlearn.report.figures import (
    plot_confusion_matrix,
    plot_examples,
    plot_per_class,
    plot_reliability,
    plot_reliability_pair,
    plot_training_curves,
)
from landlearn.report.markdown import format_value, metrics_markdown, per_class_rows, summary_rows
from landlearn.report.pseudo import (
    HEADER,
    plot_pseudo_labels,
    pseudo_label_rows,
    read_pseudo_labels,
)

__all__ = ["build_report"]

log = logging.getLogger(__name__)


def _class_info(
    metrics: dict[str, Any] | None, files: RunFiles, notes: list[str]
) -> tuple[list[str], list[tuple[int, int, int]]]:
    """Class names and colours: metrics.json, then class_colors.json, then tab10 / tab20."""
    metrics = metrics or {}
    if metrics.get("task") == "regression":  # values, not classes: no names, no colours
        return [], []
    names = [str(n) for n in metrics.get("class_names") or []]
    count = int(metrics.get("num_classes") or len(names))
    if len(names) < count:
        names += [f"class {i}" for i in range(len(names), count)]
    if files.class_colors is not None:
        try:
            raw = json.loads(files.class_colors.read_text(encoding="utf-8"))
            return names, parse_colors(raw, count, files.class_colors)
        except (json.JSONDecodeError, UnicodeDecodeError, LandlearnError) as err:
            notes.append(f"class_colors.json ignored: {err}")
    if metrics.get("class_colors") is not None:
        try:
            return names, parse_colors(metrics["class_colors"], count, files.metrics_json or "")
        except LandlearnError as err:
            notes.append(f"class_colors in metrics.json ignored: {err}")
    return names, [(r, g, b) for r, g, b in default_colors(count)] if count else []


def _training_rows(frame: pd.DataFrame) -> list[list[str]]:
    """Rows of the training-curve table.

    Last and best value of each training / validation metric per epoch (min for losses,
    errors and calibration error, max otherwise). Test metrics, logged once, are in the tables
    above.
    """
    rows = []
    for column in frame.columns:
        name = str(column)
        if name in ("epoch", "step") or name.endswith("_step") or name.lower().startswith("lr"):
            continue
        if name.startswith("test_"):
            continue
        values = frame[column].dropna()
        if values.empty:
            continue
        lowered = name.lower()
        lower_is_better = (
            "loss" in lowered
            or lowered.endswith(("ece", "_mae", "_rmse", "_nll"))
            or lowered in ("mae", "rmse", "nll")
        )
        best_at = values.idxmin() if lower_is_better else values.idxmax()
        epoch = frame.at[best_at, "epoch"] if "epoch" in frame.columns else None
        epoch_text = "—" if epoch is None or pd.isna(epoch) else str(int(epoch))
        rows.append(
            [name, format_value(values.iloc[-1]), format_value(values[best_at]), epoch_text]
        )
    return rows


def _add_figure(
    content: PageContent,
    title: str,
    caption: str,
    draw: Callable[[], Path | None],
) -> None:
    """Draw one figure; a LandlearnError (bad or partial input) becomes a note on the page."""
    try:
        path = draw()
    except LandlearnError as err:
        log.warning("skipped %s: %s", title.lower(), err)
        content.notes.append(f"{title} skipped: {err}")
        return
    if path is None:
        content.notes.append(f"{title} skipped: nothing to plot.")
    else:
        content.figures.append(FigureItem(title, path, caption))


def _metric_figures(
    content: PageContent, metrics: dict[str, Any], names: list[str], out: Path
) -> None:
    if metrics.get("task") == "regression":  # no classes: no confusion matrix, no calibration
        return
    if metrics.get("confusion_matrix") is not None:
        _add_figure(
            content,
            "Confusion matrix",
            "Rows: true class, columns: predicted; cell = share of the true class, count below.",
            lambda: plot_confusion_matrix(
                metrics["confusion_matrix"], names, out / "confusion_matrix.png"
            ),
        )
    else:
        content.notes.append("Confusion matrix skipped: metrics.json has no confusion_matrix.")
    if metrics.get("per_class"):
        _add_figure(
            content,
            "Per-class scores",
            "IoU and F1 per class on the test split; dashed lines are the means.",
            lambda: plot_per_class(metrics, out / "per_class.png"),
        )
    if metrics.get("reliability"):
        reliability = {"ece": metrics.get("ece"), **metrics["reliability"]}
        _add_figure(
            content,
            "Calibration",
            "Accuracy per confidence bin (top) and how confidences are spread (bottom).",
            lambda: plot_reliability(reliability, out / "reliability.png"),
        )
    else:
        content.notes.append("Reliability diagram skipped: metrics.json has no reliability bins.")


def _run_info(content: PageContent, files: RunFiles) -> None:
    if files.hparams is None:
        return
    try:
        content.hparams = key_hparams(load_hparams(files.hparams))
    except LandlearnError as err:
        content.notes.append(f"hparams.yaml not shown: {err}")


def _baseline_figure(
    content: PageContent, metrics: dict[str, Any] | None, baseline: str | Path, out: Path
) -> None:
    """Reliability of this run beside a baseline run's (e.g. a JEM beside the plain classifier)."""
    files = find_run_files(baseline)
    if files.metrics_json is None:
        raise LandlearnError("baseline run has no metrics.json", files.run_dir)
    other = read_metrics_json(files.metrics_json)
    if metrics is None or not metrics.get("reliability") or not other.get("reliability"):
        content.notes.append("Calibration beside the baseline skipped: no reliability bins.")
        return
    here = {"ece": metrics.get("ece"), **metrics["reliability"]}
    there = {"ece": other.get("ece"), **other["reliability"]}
    name = files.run_dir.resolve().name
    content.subtitle.append(f"baseline: {name}")
    _add_figure(
        content,
        "Calibration beside the baseline",
        f"Left: this run; right: {name}. Same bins and axes; ECE over 15 bins in each title.",
        lambda: plot_reliability_pair(
            [("this run", here), (f"baseline {name}", there)], out / "reliability_vs_baseline.png"
        ),
    )


def _pseudo_label_section(content: PageContent, folders: Sequence[str | Path], out: Path) -> None:
    """Per class and round: the teacher's thresholds, coverage and accuracy (self-training)."""
    rounds = [read_pseudo_labels(f) for f in folders]
    _add_figure(
        content,
        "Pseudo-labels",
        "Per class, one bar per round: the share of the teacher's predicted pixels kept as "
        "pseudo-labels, and how many of those were right where true masks were given.",
        lambda: plot_pseudo_labels(rounds, out / "pseudo_labels.png"),
    )
    content.tables.append(("Pseudo-labels per class and round", HEADER, pseudo_label_rows(rounds)))


def build_report(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    baseline: str | Path | None = None,
    pseudo_labels: Sequence[str | Path] = (),
) -> Path:
    """Write figures, ``index.html`` and ``metrics.md`` for a run folder; return the HTML path.

    ``run_dir`` holds ``metrics.csv`` (Lightning CSVLogger) and / or ``metrics.json`` (test
    metrics), directly or in its latest ``version_N`` subfolder; ``class_colors.json``,
    ``examples.npz`` and ``hparams.yaml`` are used when present. Missing pieces are skipped
    with a note on the page.

    Args:
        run_dir: the run folder.
        out_dir: where to write; ``run_dir/report`` by default.
        baseline: another run folder (e.g. the plain classifier beside a JEM): its
            reliability diagram is drawn beside this run's.
        pseudo_labels: ``landlearn pseudo-label`` folders, one per self-training round: a
            section with their per-class coverage and accuracy.

    Raises:
        LandlearnError: no metrics in ``run_dir``, or a metrics file is unreadable.
    """
    files = find_run_files(run_dir)
    out = Path(out_dir) if out_dir is not None else files.run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    metrics = read_metrics_json(files.metrics_json) if files.metrics_json else None
    frame = read_metrics_csv(files.metrics_csv) if files.metrics_csv else None
    content = PageContent(title=f"landlearn report — {files.run_dir.resolve().name}")
    names, colors = _class_info(metrics, files, content.notes)
    content.class_colors = colors

    if frame is not None:
        content.training = _training_rows(frame)
        _add_figure(
            content,
            "Training curves",
            "Thin lines: per-step values; markers: per-epoch values.",
            lambda: plot_training_curves(frame, out / "training_curves.png"),
        )
    else:
        content.notes.append("Training curves skipped: no metrics.csv.")

    if metrics is not None:
        task, samples = metrics.get("task"), metrics.get("pixels") or metrics.get("samples")
        content.subtitle.append(f"task: {task or 'unknown'}")
        if task == "regression":
            content.subtitle.append(f"targets: {', '.join(metrics.get('targets') or []) or '?'}")
        else:
            content.subtitle.append(f"{len(names)} classes")
        if samples:
            content.subtitle.append(
                f"{int(samples):,} test {'pixels' if 'pixels' in metrics else 'samples'}"
            )
        content.summary = summary_rows(metrics)
        content.per_class_header, content.per_class_rows = per_class_rows(metrics)
        _metric_figures(content, metrics, names, out)
        markdown = metrics_markdown(metrics, title=f"Test metrics — {files.run_dir.resolve().name}")
        write_atomic(out / "metrics.md", markdown + "\n<!-- written by landlearn -->\n")
    else:
        content.notes.append("Test metrics skipped: no metrics.json (run `landlearn test` first).")

    if baseline is not None:
        _baseline_figure(content, metrics, baseline, out)
    if pseudo_labels:
        _pseudo_label_section(content, pseudo_labels, out)
    if files.examples is not None:
        examples = files.examples
        _add_figure(
            content,
            "Examples",
            "Test samples with the model's prediction.",
            lambda: plot_examples(examples, names, colors, out / "examples.png"),
        )
    _run_info(content, files)
    if files.version_dir is not None:
        content.subtitle.append(f"Lightning version: {files.version_dir.name}")
    content.files = [  # relative to run_dir; the footer names run_dir itself
        (label, os.path.relpath(path, files.run_dir))
        for label, path in (
            ("metrics.csv", files.metrics_csv),
            ("metrics.json", files.metrics_json),
            ("class_colors.json", files.class_colors),
            ("examples.npz", files.examples),
            ("hparams.yaml", files.hparams),
        )
        if path is not None
    ]
    from landlearn.version import __version__

    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    content.footer = f"Generated by landlearn {__version__} on {stamp} from {files.run_dir}."
    index = write_atomic(out / "index.html", render_page(content))
    log.info("report written to %s", index)
    return index
