"""Check a user's input path before anything opens it: one clear error per odd file.

Every reader of a user file (scenes, bundles, images, masks, label rasters, class folders) goes
through :func:`check_input_file` or :func:`check_input_dir` first. Only ``os.stat`` is called on
the path, never ``open``: a FIFO opened for reading blocks until a writer comes (and a blocked
``open`` cannot be interrupted by SIGTERM's Python handler), and a device may never end.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

from landlearn.errors import LandlearnError

__all__ = [
    "check_input",
    "check_input_dir",
    "check_input_file",
    "check_readable",
    "file_kind",
    "read_error",
]

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def file_kind(mode: int) -> str:
    """What ``st_mode`` describes, in words: "a folder", "a FIFO (named pipe)", ..."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _stat(p: Path) -> os.stat_result:
    """``os.stat`` (following symlinks) with its failures as one-line errors."""
    try:
        return os.stat(p)
    except FileNotFoundError:
        if os.path.islink(p):
            raise LandlearnError(
                f"broken symlink (points to {os.readlink(p)!r}, which does not exist)", p
            ) from None
        raise LandlearnError("not found (no such file or folder)", p) from None
    except PermissionError:
        raise LandlearnError("permission denied (cannot look inside its folder)", p) from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise LandlearnError("symlink loop (the link points back to itself)", p) from None
        if err.errno == errno.ENOTDIR:
            raise LandlearnError(
                "not found (no such file: a parent in the path is a file)", p
            ) from None
        if err.errno == errno.ENAMETOOLONG:
            raise LandlearnError("file name too long", p) from None
        raise LandlearnError(f"cannot read ({os.strerror(err.errno or 0)})", p) from None


def _check_name(p: Path) -> None:
    try:
        os.fspath(p).encode("utf-8")
    except UnicodeEncodeError:
        raise LandlearnError(
            "file name is not valid UTF-8, which GDAL and safetensors need; rename the file", p
        ) from None


def check_readable(p: Path, folder: bool = False) -> None:
    """``permission denied`` unless the process may read ``p`` (and list it, for a folder)."""
    need = os.R_OK | (os.X_OK if folder else 0)
    if not os.access(p, need):
        raise LandlearnError("permission denied", p)


def check_input_file(
    path: str | os.PathLike[str],
    what: str = "file",
    *,
    allow_empty: bool = False,
    utf8_name: bool = True,
) -> Path:
    """``path`` as a ``Path``, if it is a regular, readable, non-empty file.

    Args:
        path: the user's path (symlinks are followed).
        what: what the file should be, for the messages ("scene", "bundle", "image", ...).
        allow_empty: accept a 0-byte file.
        utf8_name: refuse names that are not valid UTF-8 (GDAL and safetensors cannot open them).

    Raises:
        LandlearnError: missing, a broken link or symlink loop, a folder, FIFO, device or socket,
            permission denied, empty, or an undecodable name.
    """
    p = Path(path)
    st = _stat(p)
    if not stat.S_ISREG(st.st_mode):
        kind = file_kind(st.st_mode)
        tip = "; give the file inside it" if stat.S_ISDIR(st.st_mode) else ""
        raise LandlearnError(f"is {kind}, not a regular file; expected a {what}{tip}", p)
    if utf8_name:
        _check_name(p)
    check_readable(p)
    if st.st_size == 0 and not allow_empty:
        raise LandlearnError(f"empty file (0 bytes); expected a {what}", p)
    return p


def check_input_dir(path: str | os.PathLike[str], what: str = "folder") -> Path:
    """``path`` as a ``Path``, if it is a folder the process may list and enter.

    Raises:
        LandlearnError: missing, a broken link or symlink loop, not a folder, permission denied.
    """
    p = Path(path)
    st = _stat(p)
    if not stat.S_ISDIR(st.st_mode):
        raise LandlearnError(f"is {file_kind(st.st_mode)}, expected a {what}", p)
    check_readable(p, folder=True)
    return p


def check_input(path: str | os.PathLike[str], what: str = "file or folder") -> Path:
    """``path`` as a ``Path``, if it is a readable folder or a regular, readable file.

    Raises:
        LandlearnError: as :func:`check_input_file` and :func:`check_input_dir`.
    """
    p = Path(path)
    if stat.S_ISDIR(_stat(p).st_mode):
        return check_input_dir(p, what)
    return check_input_file(p, what)


def read_error(
    err: BaseException, path: str | os.PathLike[str], window: Any = None
) -> LandlearnError:
    """A one-line error for a failed pixel read of ``path`` (a truncated or corrupt raster).

    GDAL opens a truncated GeoTIFF (its header is intact) and fails only when a block past the
    end is read; rasterio's own message then says "See previous exception", so the GDAL
    message behind it is quoted, and the window that failed is named.

    Args:
        err: what rasterio raised.
        path: the raster.
        window: the rasterio ``Window`` being read, or None for the whole raster.
    """
    cause = err.__cause__ or err.__context__ or err
    detail = " ".join(str(cause).split())
    name = os.fspath(path)
    for prefix in (name, os.path.basename(name)):
        if prefix and detail.startswith(prefix + ", "):
            detail = detail[len(prefix) + 2 :]
            break
    where = ""
    if window is not None:
        r0, c0 = int(window.row_off), int(window.col_off)
        r1, c1 = r0 + int(window.height) - 1, c0 + int(window.width) - 1
        where = f" at rows {r0}..{r1}, cols {c0}..{c1}"
    return LandlearnError(
        f"corrupt or truncated raster: read failed{where} ({detail or type(err).__name__})", path
    )
