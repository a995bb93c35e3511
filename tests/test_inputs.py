"""Input paths checked before anything opens them; errors escaped to one line."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from landlearn.errors import LandlearnError, escape
from landlearn.inputs import check_input, check_input_dir, check_input_file, read_error

posix = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file types")


def deny(monkeypatch: pytest.MonkeyPatch, target: Path) -> None:
    """``os.access`` says no for ``target`` (tests run as root, where chmod does not deny)."""
    real: Callable[..., bool] = os.access

    def access(path: object, mode: int, *args: object, **kwargs: object) -> bool:
        if os.fspath(path) == os.fspath(target):  # type: ignore[arg-type]
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


def test_a_regular_file_passes(tmp_path: Path) -> None:
    f = tmp_path / "a.tif"
    f.write_bytes(b"x")
    assert check_input_file(f, "scene") == f
    assert check_input(f) == f
    assert check_input(tmp_path) == tmp_path


@posix
def test_fifo_is_refused_without_opening_it(tmp_path: Path) -> None:
    fifo = tmp_path / "scene.tif"
    os.mkfifo(fifo)
    # Opening a FIFO for reading would block this test forever; the check must only stat it.
    with pytest.raises(LandlearnError, match=r"is a FIFO \(named pipe\), not a regular file") as e:
        check_input_file(fifo, "scene")
    assert e.value.path == str(fifo)
    assert "expected a scene" in e.value.message


@posix
def test_socket_and_device_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.tif"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        with pytest.raises(LandlearnError, match="is a socket, not a regular file"):
            check_input_file(path)
    if Path("/dev/null").exists():  # stat only: the device is never opened or written
        with pytest.raises(LandlearnError, match="is a character device, not a regular file"):
            check_input_file("/dev/null")


def test_folder_missing_empty(tmp_path: Path) -> None:
    with pytest.raises(LandlearnError, match="is a folder, not a regular file; expected a bundle"):
        check_input_file(tmp_path, "bundle")
    with pytest.raises(LandlearnError, match=r"not found \(no such file or folder\)"):
        check_input_file(tmp_path / "nope.tif")
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(LandlearnError, match=r"empty file \(0 bytes\)"):
        check_input_file(tmp_path / "empty.tif")
    assert check_input_file(tmp_path / "empty.tif", allow_empty=True).name == "empty.tif"
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(LandlearnError, match="a parent in the path is a file"):
        check_input_file(f / "child.tif")
    with pytest.raises(LandlearnError, match="is a regular file, expected a class folder"):
        check_input_dir(f, "class folder")


@posix
def test_symlink_loop_and_broken_link(tmp_path: Path) -> None:
    loop = tmp_path / "loop.tif"
    loop.symlink_to(loop)
    with pytest.raises(LandlearnError, match="symlink loop") as e:
        check_input_file(loop)
    assert e.value.path == str(loop)
    with pytest.raises(LandlearnError, match="symlink loop"):
        check_input_dir(loop)
    broken = tmp_path / "broken.tif"
    broken.symlink_to(tmp_path / "gone.tif")
    with pytest.raises(LandlearnError, match="broken symlink"):
        check_input_file(broken)


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"x")
    deny(monkeypatch, f)
    with pytest.raises(LandlearnError, match=r"^.*model\.safetensors: permission denied$"):
        check_input_file(f, "bundle")
    deny(monkeypatch, tmp_path)
    with pytest.raises(LandlearnError, match="permission denied"):
        check_input_dir(tmp_path)


@posix
def test_undecodable_name(tmp_path: Path) -> None:
    name = tmp_path / os.fsdecode(b"scene\xff.tif")
    name.write_bytes(b"x")
    with pytest.raises(LandlearnError, match="not valid UTF-8") as e:
        check_input_file(name)
    assert e.value.one_line().endswith("scene\\xff.tif: " + e.value.message)
    assert check_input_file(name, utf8_name=False) == name  # PIL opens any name


def test_one_line_escapes_control_characters() -> None:
    err = LandlearnError("bad\nvalue \x1b[31m", "a\nerror: injected\r.tif")
    line = err.one_line()
    assert "\n" not in line
    assert "\r" not in line
    assert "\x1b" not in line
    assert line == "a\\nerror: injected\\r.tif: bad value \\x1b[31m"
    assert str(err) == line
    assert escape("x\u2028y\udcffz\ud800") == "x\\u2028y\\xffz\\ud800"
    assert escape("tab\there") == "tab\\there"
    assert escape("tab\there", keep_whitespace=True) == "tab\there"
    assert len(f"error: {line}".splitlines()) == 1


def test_read_error_names_the_window() -> None:
    from rasterio.windows import Window

    class Cause(Exception):
        pass

    try:
        try:
            raise Cause("scene.tif, band 1: IReadBlock failed at X offset 0, Y offset 12")
        except Cause as c:
            raise OSError("Read failed. See previous exception for details.") from c
    except OSError as err:
        got = read_error(err, "/data/scene.tif", Window(0, 96, 32, 32))
    assert got.path == "/data/scene.tif"
    assert got.message == (
        "corrupt or truncated raster: read failed at rows 96..127, cols 0..31 "
        "(band 1: IReadBlock failed at X offset 0, Y offset 12)"
    )
