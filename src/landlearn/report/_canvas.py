"""Figures on matplotlib's Agg canvas, saved atomically; no pyplot global state."""

from __future__ import annotations

import io
import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from landlearn.atomic import write_atomic

DPI = 120


def new_figure(width: float, height: float) -> Figure:
    """A figure on the Agg canvas, independent of pyplot's global state."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, out: str | os.PathLike[str]) -> Path:
    """Render ``fig`` to PNG and write it atomically to ``out``."""
    buffer = io.BytesIO()
    fig.savefig(
        buffer, format="png", dpi=DPI, facecolor="white", metadata={"Software": "landlearn"}
    )
    return write_atomic(Path(out), buffer.getvalue())
