"""What every study shares: seeds summarised as mean ± std, tables, the machine, the outputs.

A study writes three files into its output folder, each written to a temporary name and renamed:
``<name>.json`` (every run's row, the options and the machine: the record), ``<name>.md`` (the
budget, the table and the machine, ready for ``benchmarks/RESULTS.md``) and ``<name>.png`` (the
plot).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import platform
import shlex
import statistics
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from landlearn.atomic import atomic_path, write_atomic, write_json
from landlearn.verbosity import is_debug, is_quiet, set_verbosity

__all__ = [
    "append_row",
    "machine",
    "machine_markdown",
    "markdown_table",
    "mean_std",
    "quiet_runs",
    "save_figure",
    "write_study",
]

_VERSIONED = ("torch", "lightning", "segmentation-models-pytorch", "timm", "landlearn")


def mean_std(values: Sequence[float | None], digits: int = 4) -> str:
    """``mean ± std`` (sample std; 0 for one value) of the values that are not None, or ``–``."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return "–"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.fmean(vals):.{digits}f} ± {sd:.{digits}f}"


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """Date, command line, CPU, cores, torch threads, GPU and package versions."""
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": shlex.join(["landlearn", *sys.argv[1:]]),
        "cpu": cpu,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "platform": platform.platform(),
        "versions": versions,
    }


def machine_markdown(info: dict[str, Any]) -> str:
    """One paragraph: machine, date and the command that made the record."""
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ", no GPU"
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    return (
        f"Machine: {info['cpu']}, {info['cpu_cores']} cores, {info['torch_threads']} torch "
        f"threads{gpu}; {info['platform']}; {versions}. Date {info['date']}. "
        f"Command: `{info['command']}`."
    )


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append one finished run as a JSON line, so an interrupted study keeps what it measured."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def write_study(out_dir: Path, name: str, record: dict[str, Any], markdown: str) -> list[Path]:
    """Write ``<name>.json`` and ``<name>.md`` in ``out_dir`` (atomically); their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        write_json(out_dir / f"{name}.json", record),
        write_atomic(out_dir / f"{name}.md", markdown + "\n"),
    ]


def save_figure(fig: Any, path: Path) -> Path:
    """Save a matplotlib figure as PNG through a temporary name; close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


@contextmanager
def quiet_runs() -> Iterator[None]:
    """Inside: each run's own log lines, Lightning's banners and test tables are off.

    A study prints one line per run instead; warnings and errors still show (``--debug``
    leaves everything on).
    """
    if is_debug():
        yield
        return
    names = ("landlearn", "lightning", "lightning.pytorch", "lightning.fabric")
    levels = {n: logging.getLogger(n).level for n in names}
    quiet = is_quiet()
    set_verbosity(quiet=True)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="lightning")
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            for n in names:
                logging.getLogger(n).setLevel(logging.WARNING)
            yield
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)
        set_verbosity(quiet=quiet, debug=False)


def fit_quietly(task: Any, datamodule: Any, name: str, root: Path, seed: int, epochs: int,
                **trainer: Any) -> Any:  # fmt: skip
    """``landlearn.train`` as a study runs it: on the CPU, no report or bars, its logs quiet."""
    import landlearn

    with quiet_runs():
        return landlearn.train(
            model=task, datamodule=datamodule, name=name, root=root, seed=seed, report=False,
            overwrite=True, accelerator="cpu", enable_progress_bar=False,
            enable_model_summary=False, max_epochs=epochs, **trainer,
        )  # fmt: skip
