"""Write files so that an error or Ctrl-C never leaves a half-written file at the target."""

from __future__ import annotations

import json
import math
import os
import signal
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = [
    "atomic_path",
    "commit_renames",
    "deferred_signals",
    "dump_json",
    "write_atomic",
    "write_json",
]

_DEFERRED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename onto it only when the block succeeds.

    The file gets the usual permissions (0666 less the umask), not ``mkstemp``'s 0600.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp: Path | None = None
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        tmp = Path(name)
        os.close(fd)
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temporary name."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
    return Path(path)


@contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold Ctrl-C, ``kill`` and hang-up until the block ends, then act on them.

    For the few renames that commit a group of files: an interrupt in between would leave half
    the new files beside half the old ones. Python runs signal handlers in the main thread only,
    so the handlers are swapped there; elsewhere (a worker thread) the block runs as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        got.append(signum)

    previous: dict[int, object] = {int(s): signal.signal(s, hold) for s in _DEFERRED}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)  # type: ignore[arg-type]
        if got:
            signum = got[0]
            handler = previous[signum]
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)


def commit_renames(pairs: Sequence[tuple[Path, Path]]) -> None:
    """``os.replace`` each (temporary, target) pair in order, with interrupts held meanwhile.

    Put the file readers look at first (a map's GeoTIFF) last: if the process is killed with
    SIGKILL between two renames, the newer sidecars carry a run id the old main file lacks.
    """
    mask = _umask()
    with deferred_signals():
        for tmp, target in pairs:
            os.chmod(tmp, 0o666 & ~mask)
            os.replace(tmp, target)


def _key(key: Any) -> Any:
    return key.tolist() if hasattr(key, "tolist") else key  # a numpy scalar key


def _plain(value: Any) -> Any:
    """``value`` with arrays and tensors as lists, numpy scalars as Python ones, NaN/inf None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {_key(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy array / scalar, torch tensor
        return _plain(value.tolist())
    return value


def dump_json(data: Any) -> str:
    """The JSON text the package writes: indented, a final newline, NaN and ±inf as ``null``.

    Strict JSON has no NaN (``json.dumps`` would write ``NaN``, which most readers refuse).
    Numpy and torch values become numbers or lists; anything else unknown (a ``Path``, a date)
    is written as its ``str``.
    """
    return json.dumps(_plain(data), indent=2, default=str, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``dump_json(data)`` to ``path`` through a temporary name."""
    return write_atomic(path, dump_json(data))
