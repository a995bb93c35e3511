"""Output safety, one place for every command: nothing a user owns is overwritten by accident.

Before any work starts, a command lists every file it will write (main file and sidecars) with
the kind of each, and every file it reads. :func:`check_outputs` then refuses, with one
``LandlearnError`` line, an output that

- is one of the command's inputs (after resolving symlinks and hard links, and including the
  files GDAL reads for a raster input: a VRT's sources, ``.aux.xml``, ``.ovr``, world files);
- exists and is not a regular file (a folder, FIFO, device or socket: renaming a map onto
  ``/dev/null`` would replace the device node);
- exists and is not a file of the same kind that landlearn wrote (a landlearn map may be
  replaced by a new map; a bundle, a label raster or a source image may not), unless the user
  gave ``--overwrite``;
- cannot be written: its folder is a file, read-only, or a pseudo file system (probed by
  creating and removing a temporary file there, so the error comes in the first second, not
  after the computation).

Each kind has a recogniser (``_KINDS``): landlearn marks what it writes (a ``LANDLEARN_RUN_ID``
tag in maps, ``"written_by": "landlearn"`` in JSON, ``Software: landlearn`` in PNGs, a comment
in QGIS styles), and recognises older outputs by their shape.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from landlearn.errors import LandlearnError

__all__ = [
    "MARK",
    "PSEUDO_TAG",
    "Output",
    "check_outputs",
    "input_files",
    "is_landlearn_map",
    "map_run_id",
    "probe_writable",
]

MARK = "landlearn"
"""The value of ``written_by`` in JSON and of ``Software`` in PNGs that landlearn writes."""
PSEUDO_TAG = "LANDLEARN_PSEUDO_LABEL"
"""GeoTIFF tag (and PNG text key) marking a pseudo-label or confidence raster landlearn wrote."""

_RASTER_SUFFIXES = {".tif", ".tiff", ".vrt", ".img", ".jp2", ".nc", ".hdf", ".h5", ".ecw"}


@dataclass(frozen=True)
class Output:
    """A file a command is about to write.

    Args:
        kind: what it is, which decides what an existing file there may be: ``map``,
            ``map_aux`` (``OUT.tif.aux.xml``), ``map_style`` (``.qml``), ``map_areas``
            (``.areas.json``), ``map_preview`` (``.preview.png``), ``metrics`` (JSON),
            ``plot`` (PNG), ``bundle`` (never replaced without ``--overwrite``), ``text``,
            ``pseudo_label`` (a pseudo-label mask or confidence raster).
        owner: the main output a sidecar belongs to (a sidecar of a landlearn map is the map's).
    """

    path: Path
    kind: str
    owner: Path | None = None


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _real(path: str | os.PathLike[str]) -> Path:
    try:
        return Path(os.path.realpath(path))
    except (OSError, ValueError):  # symlink loop (strict platforms), NUL byte
        return Path(os.path.abspath(path))


def input_files(paths: Iterable[str | os.PathLike[str] | None]) -> set[Path]:
    """Every file the inputs ``paths`` stand for, resolved.

    A raster adds the files GDAL reads with it (``dataset.files``: a VRT's sources, sidecars);
    a folder stands for every file under it (checked lazily by :func:`check_outputs`).
    """
    out: set[Path] = set()
    for p in paths:
        if p is None:
            continue
        path = Path(os.fspath(p))
        out.add(_real(path))
        if path.suffix.lower() in _RASTER_SUFFIXES and _is_regular(path):
            out |= _gdal_files(path)
    return out


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def _gdal_files(path: Path) -> set[Path]:
    try:
        import rasterio

        with rasterio.Env(CPL_LOG="/dev/null"), rasterio.open(path) as src:
            return {_real(f) for f in src.files}
    except Exception:  # not readable as a raster: the command's own checks say so
        return set()


def _describe(mode: int) -> str | None:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    return None


def check_outputs(
    outputs: Sequence[Output],
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    *,
    overwrite: bool = False,
) -> None:
    """Refuse unsafe outputs before any work; see the module docstring for the rules.

    Raises:
        LandlearnError: naming the output and why it is refused (and ``--overwrite`` when
            that would allow it).
    """
    resolved = input_files(inputs)
    ids = {i for i in (_identity(p) for p in resolved) if i is not None}
    folders = [p for p in resolved if p.is_dir()]
    seen: dict[Path, Path] = {}
    for out in outputs:
        real = _real(out.path)
        if real in seen:
            raise LandlearnError(
                f"two outputs of this command would be the same file ({seen[real].name} and "
                f"{out.path.name}); choose another output name",
                out.path,
            )
        seen[real] = out.path
        try:
            st = os.stat(out.path)
        except FileNotFoundError:
            st = None
        except OSError as exc:  # symlink loop, name too long, not a folder on the way
            raise LandlearnError(f"cannot use as output ({_reason(exc)})", out.path) from None
        if real in resolved or (st is not None and (st.st_dev, st.st_ino) in ids):
            raise LandlearnError(
                "is an input of this command; refusing to overwrite it (choose another output)",
                out.path,
            )
        if st is not None:
            inside = next((f for f in folders if real.is_relative_to(f)), None)
            if inside is not None:
                raise LandlearnError(
                    f"is an input of this command (a file in the input folder {inside}); "
                    "refusing to overwrite it",
                    out.path,
                )
            what = _describe(st.st_mode)
            if what is not None:
                raise LandlearnError(f"is {what}; give the path of a regular file", out.path)
            if not overwrite and not _replaceable(out):
                what = (
                    "exists"
                    if out.kind == "bundle"
                    else f"exists and is not a {_NAMES[out.kind]} that landlearn wrote"
                )
                raise LandlearnError(
                    f"{what}; refusing to overwrite it (pass --overwrite to replace it)",
                    out.path,
                )
    for folder in {o.path.parent for o in outputs}:
        probe_writable(folder)


def _reason(exc: OSError) -> str:
    import errno

    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if exc.errno == errno.ENOTDIR:
        return "a part of the path is a file, not a folder"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    return exc.strerror or type(exc).__name__


def probe_writable(folder: Path) -> None:
    """Create and remove a temporary file in ``folder`` (or its nearest existing ancestor)."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        if probe.is_symlink():  # a dangling link on the way
            raise LandlearnError("output folder is a broken symlink", probe)
        probe = probe.parent
    if not probe.is_dir():
        raise LandlearnError("is a file, not a folder; cannot write the output under it", probe)
    try:
        fd, name = tempfile.mkstemp(prefix=".landlearn-probe.", dir=probe)
    except OSError as exc:
        raise LandlearnError(f"cannot write to this folder ({_reason(exc)})", probe) from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)


# ---- what an existing file of each kind may be -------------------------------------------------


def map_run_id(path: str | os.PathLike[str]) -> str | None:
    """The ``LANDLEARN_RUN_ID`` tag of a map's own GeoTIFF (not its ``.aux.xml``), if any.

    Maps written before run ids have ``LANDLEARN_TASK`` only; they give ``""``.
    """
    try:
        import rasterio

        with (
            rasterio.Env(GDAL_PAM_ENABLED="NO", CPL_LOG="/dev/null"),
            rasterio.open(path) as src,
        ):
            tags = src.tags()
    except Exception:
        return None
    if "LANDLEARN_TASK" not in tags:
        return None
    return tags.get("LANDLEARN_RUN_ID", "")


def is_landlearn_map(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a GeoTIFF that ``landlearn map`` wrote."""
    return map_run_id(path) is not None


def _json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _head(path: Path, n: int = 4096) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError:
        return b""


def _is_png(path: Path) -> bool:
    return _head(path, 8) == b"\x89PNG\r\n\x1a\n"


def _png_is_ours(path: Path) -> bool:
    head = _head(path, 1 << 16)
    return head.startswith(b"\x89PNG") and b"Software\x00" + MARK.encode() in head


def _owner_is_map(out: Output) -> bool:
    return out.owner is not None and is_landlearn_map(out.owner)


def _pseudo(out: Output) -> bool:
    if _is_png(out.path):
        return _png_is_ours(out.path) and PSEUDO_TAG.encode() in _head(out.path, 1 << 16)
    try:
        import rasterio

        with (
            rasterio.Env(GDAL_PAM_ENABLED="NO", CPL_LOG="/dev/null"),
            rasterio.open(out.path) as src,
        ):
            return PSEUDO_TAG in src.tags()
    except Exception:
        return False


def _metrics(out: Output) -> bool:
    data = _json(out.path)
    return isinstance(data, dict) and (
        data.get("written_by") == MARK or "overall_accuracy" in data or "confusion_matrix" in data
    )


def _areas(out: Output) -> bool:
    data = _json(out.path)
    if not isinstance(data, dict):
        return False
    return data.get("written_by") == MARK or {"classes", "valid_pixels"} <= data.keys()


def _style(out: Output) -> bool:
    head = _head(out.path)
    return b"<qgis" in head and (b"landlearn" in head or _owner_is_map(out))


def _aux(out: Output) -> bool:
    head = _head(out.path, 1 << 16)
    return b"<PAMDataset" in head and (b"LANDLEARN" in head or _owner_is_map(out))


_KINDS: dict[str, Callable[[Output], bool]] = {
    "map": lambda o: is_landlearn_map(o.path),
    "map_aux": _aux,
    "map_style": _style,
    "map_areas": _areas,
    "map_preview": lambda o: _png_is_ours(o.path) or (_is_png(o.path) and _owner_is_map(o)),
    "metrics": _metrics,
    "plot": lambda o: _png_is_ours(o.path),
    "bundle": lambda o: False,  # a trained model is never replaced without --overwrite
    "text": lambda o: MARK.encode() in _head(o.path),
    "pseudo_label": _pseudo,
}

_NAMES = {
    "map": "map",
    "map_aux": "map colour table (.aux.xml)",
    "map_style": "map style (.qml)",
    "map_areas": "map area table (.areas.json)",
    "map_preview": "map preview (.png)",
    "metrics": "metrics file",
    "plot": "plot",
    "bundle": "model bundle",
    "text": "file",
    "pseudo_label": "pseudo-label raster",
}


def _replaceable(out: Output) -> bool:
    if out.kind not in _KINDS:  # our bug: every kind needs a recogniser
        raise RuntimeError(f"unknown output kind {out.kind!r}")
    return _KINDS[out.kind](out)
