"""Find and read the files of a run folder (Lightning CSVLogger + our test metrics)."""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from landlearn.errors import LandlearnError

log = logging.getLogger(__name__)

_VERSION_DIR = re.compile(r"^version_(\d+)$")
_METRIC_FILES = ("metrics.csv", "metrics.json")
_OPTIONAL_FILES = ("class_colors.json", "examples.npz", "hparams.yaml")
_ATTRIBUTE = {
    "metrics.csv": "metrics_csv",
    "metrics.json": "metrics_json",
    "class_colors.json": "class_colors",
    "examples.npz": "examples",
    "hparams.yaml": "hparams",
}
_KEY_HPARAMS = (
    "model",
    "model_name",
    "arch",
    "backbone",
    "encoder",
    "encoder_name",
    "loss",
    "optimizer",
    "lr",
    "learning_rate",
    "weight_decay",
    "batch_size",
    "max_epochs",
    "epochs",
    "num_classes",
    "seed",
)


@dataclass
class RunFiles:
    """Paths of the files a report reads; ``None`` where a file is absent."""

    run_dir: Path
    metrics_csv: Path | None = None
    metrics_json: Path | None = None
    class_colors: Path | None = None
    examples: Path | None = None
    hparams: Path | None = None
    version_dir: Path | None = None


def _version_dirs(run_dir: Path) -> list[Path]:
    """``version_N`` subfolders, newest (highest N) first."""
    found = []
    for child in run_dir.iterdir():
        match = _VERSION_DIR.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found, reverse=True)]


def find_run_files(run_dir: str | os.PathLike[str]) -> RunFiles:
    """Locate metrics and extras in ``run_dir``, or in its latest ``version_N`` with metrics.

    Raises:
        LandlearnError: the folder does not exist or holds no metrics.csv / metrics.json.
    """
    root = Path(run_dir).expanduser()
    missing = "no metrics.csv or metrics.json found; is this a landlearn run folder?"
    if not root.is_dir():
        raise LandlearnError(missing, root)
    folders = [root]
    if not any((root / name).is_file() for name in _METRIC_FILES):
        with_metrics = [
            d for d in _version_dirs(root) if any((d / n).is_file() for n in _METRIC_FILES)
        ]
        if not with_metrics:
            raise LandlearnError(missing, root)
        folders = [with_metrics[0]]
    else:
        # Our metrics.json may sit at the top while Lightning's CSV is in version_N: look in both.
        folders += _version_dirs(root)[:1]
    files = RunFiles(run_dir=root)
    if folders[-1] is not root:
        files.version_dir = folders[-1]
    for name in (*_METRIC_FILES, *_OPTIONAL_FILES):
        path = next((d / name for d in folders if (d / name).is_file()), None)
        setattr(files, _ATTRIBUTE[name], path)
    return files


def read_metrics_csv(path: Path) -> pd.DataFrame:
    """Read Lightning's ``metrics.csv``; rows hold only what was logged at that step.

    Raises:
        LandlearnError: the file is not a readable CSV.
    """
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise LandlearnError(f"cannot read metrics CSV: {err}", path) from err
    return frame.apply(pd.to_numeric, errors="coerce")


def read_metrics_json(path: Path) -> dict[str, Any]:
    """Read the test metrics ``metrics.json``.

    Raises:
        LandlearnError: the file is not JSON holding an object.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise LandlearnError(f"cannot read metrics JSON: {err}", path) from err
    if not isinstance(data, dict):
        raise LandlearnError("expected a JSON object of metrics", path)
    return data


def load_hparams(path: Path) -> dict[str, Any]:
    """Read ``hparams.yaml`` (Lightning); python-object tags are refused by ``safe_load``.

    Raises:
        LandlearnError: not readable YAML mapping.
    """
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise LandlearnError(f"cannot read hparams YAML: {first}", path) from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LandlearnError("expected a YAML mapping of hyperparameters", path)
    return data


def key_hparams(hparams: dict[str, Any], limit: int = 12) -> list[tuple[str, str]]:
    """The few settings worth showing (model, loss, lr, batch size, epochs …), dotted keys."""
    flat: list[tuple[str, Any]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), sub)
        else:
            flat.append((prefix, value))

    walk("", hparams)
    picked = []
    for key, value in flat:
        leaf = key.rsplit(".", 1)[-1].lower()
        if leaf in _KEY_HPARAMS or (key.lower().endswith("class_path") and "model" in key.lower()):
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            picked.append((key, text if len(text) <= 80 else text[:77] + "…"))
    return picked[:limit]


def finite(value: Any) -> float | None:
    """``value`` as a float, or ``None`` for null / NaN / non-numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None
