"""What every command shares: logging through rich, progress bars, atomic writes."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from landlearn.atomic import atomic_path, write_json
from landlearn.errors import LandlearnError
from landlearn.verbosity import is_debug, is_quiet, set_verbosity

__all__ = [
    "atomic_path",
    "check_device",
    "is_debug",
    "is_quiet",
    "progress_bar",
    "setup_logging",
    "stderr_console",
    "write_json",
]


def stderr_console() -> Any:
    """A rich console on stderr (errors and logs), without colour codes when not a terminal."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def setup_logging(quiet: bool = False, debug: bool = False) -> None:
    """Install a rich log handler; ``-q`` shows warnings only, ``--debug`` everything."""
    from rich.logging import RichHandler

    set_verbosity(quiet, debug)
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    handler = RichHandler(console=stderr_console(), show_path=debug, show_time=False)
    handler.addFilter(_drop_ads)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("landlearn").setLevel(level)
    for noisy in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(noisy).setLevel(logging.WARNING if quiet else logging.INFO)
    # GDAL's own warnings (e.g. a truncated file's "Bogus StripByteCounts", twice) come before
    # landlearn's one-line error about the same file; --debug shows them.
    logging.getLogger("rasterio._env").setLevel(logging.WARNING if debug else logging.ERROR)
    if not debug:
        import warnings

        warnings.filterwarnings("ignore", category=UserWarning, module=r"lightning\..*")
        warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=r".*LeafSpec.*")  # inside Lightning
        warnings.showwarning = _log_warning


def _log_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """A warning as one log line: no Python file name and source line (``--debug`` has them)."""
    logging.getLogger("landlearn").warning("%s", " ".join(str(message).split()))


def _drop_ads(record: logging.LogRecord) -> bool:
    """Lightning advertises cloud loggers at every run; not useful here."""
    return "litlogger" not in str(record.msg)


@contextmanager
def progress_bar(description: str = "working") -> Iterator[Any]:
    """A rich progress bar with rate and ETA (disabled with ``-q``).

    On an error the bar is erased, so the one-line error stands alone.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=stderr_console(),
        disable=is_quiet(),
        transient=False,
    )
    with progress:
        try:
            yield progress
        except BaseException:
            progress.live.transient = True
            raise


def eprint(message: str) -> None:
    """One line on stderr."""
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.stderr.flush()


def check_device(device: str, option: str = "--device") -> str:
    """``device`` if this machine has it (``auto`` → cuda when there is a GPU, else cpu).

    Raises:
        LandlearnError: an unknown device name, or a GPU that is not there.
    """
    import torch

    name = device.strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and not index.isdigit()):
        raise LandlearnError(f"{option}: unknown device {device!r}; use cpu, cuda, cuda:N or auto")
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise LandlearnError(
                f"{option}: device {device!r} asked for, but this machine has no CUDA GPU; use cpu"
            )
        if index and int(index) >= count:
            raise LandlearnError(
                f"{option}: device {device!r} asked for, but this machine has {count} GPU(s) "
                f"(cuda:0..cuda:{count - 1})"
            )
    if kind == "mps" and not torch.backends.mps.is_available():
        raise LandlearnError(f"{option}: device {device!r} asked for, but MPS is not available")
    if kind == "cpu" and index:
        raise LandlearnError(f"{option}: unknown device {device!r}; use cpu, cuda, cuda:N or auto")
    return name
