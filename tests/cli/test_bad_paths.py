"""Odd input paths and options of `map` and `evaluate`: one line naming the path, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.cli.conftest import run_cli, write_mask_pair, write_png, write_tif
from tests.cli.test_bad_input import _assert_one_line_error, _class_folder
from tests.test_inputs import deny

posix = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file types")
ROOT = Path(__file__).resolve().parents[2]


def _scene(path: Path, size: int = 128) -> Path:
    value = np.random.default_rng(0).integers(0, 255, (3, size, size)).astype(np.uint8)
    return write_tif(path, value=value)


def _truncated(path: Path, size: int = 128) -> Path:
    """A GeoTIFF cut in half: its header opens, its last strips fail to read."""
    full = _scene(path.with_name("full_" + path.name), size)
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _map(bundle: Path, scene: Path | str, tmp_path: Path) -> list[str]:
    return ["map", str(bundle), str(scene), "-o", str(tmp_path / "out.tif"), "--no-preview"]


@posix
def test_fifo_scene_and_bundle_do_not_block(cls_bundle: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "scene.tif"
    os.mkfifo(fifo)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    for args in (_map(cls_bundle, fifo, tmp_path), ["evaluate", str(fifo), str(tmp_path)]):
        # A subprocess with a timeout: opening the FIFO would block (and ignore SIGTERM).
        proc = subprocess.run(
            [sys.executable, "-m", "landlearn.cli.main", "-q", *args],
            capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip
        _assert_one_line_error(proc.returncode, proc.stderr, "scene.tif", "is a FIFO")
    assert not (tmp_path / "out.tif").exists()


@posix
def test_symlink_loop_scene(
    cls_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loop = tmp_path / "loop.tif"
    loop.symlink_to(loop)
    code, _, err = run_cli(_map(cls_bundle, loop, tmp_path), capsys)
    _assert_one_line_error(code, err, "loop.tif", "symlink loop")
    code, _, err = run_cli(["evaluate", str(cls_bundle), str(loop), str(loop)], capsys)
    _assert_one_line_error(code, err, "loop.tif", "symlink loop")


@posix
def test_undecodable_scene_name(
    cls_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scene = tmp_path / os.fsdecode(b"sc\xffne.tif")
    _scene(tmp_path / "plain.tif").rename(scene)  # GDAL cannot create such a name either
    code, _, err = run_cli(_map(cls_bundle, scene, tmp_path), capsys)
    _assert_one_line_error(code, err, "sc\\xffne.tif", "not valid UTF-8")


def test_newline_in_a_path_cannot_split_the_error(
    cls_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "a\nerror: injected.tif"
    code, _, err = run_cli(_map(cls_bundle, bad, tmp_path), capsys)
    _assert_one_line_error(code, err, "a\\nerror: injected.tif", "not found")
    assert err.count("error:") == 2  # the real prefix, and the escaped text of the name
    code, _, err = run_cli(["evaluate", str(tmp_path / "m\r\x1b.safetensors"), "x"], capsys)
    _assert_one_line_error(code, err, "m\\r\\x1b.safetensors", "not found")


def test_permission_denied_scene_and_bundle(
    cls_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    scene = _scene(tmp_path / "scene.tif")
    deny(monkeypatch, scene)
    code, _, err = run_cli(_map(cls_bundle, scene, tmp_path), capsys)
    _assert_one_line_error(code, err, "scene.tif: permission denied")
    deny(monkeypatch, cls_bundle)
    code, _, err = run_cli(_map(cls_bundle, _scene(tmp_path / "s2.tif"), tmp_path), capsys)
    _assert_one_line_error(code, err, "cls.safetensors: permission denied")
    code, _, err = run_cli(["evaluate", str(cls_bundle), str(tmp_path)], capsys)
    _assert_one_line_error(code, err, "cls.safetensors: permission denied")


def test_truncated_geotiff_in_map(
    cls_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scene = _truncated(tmp_path / "cut.tif")
    code, _, err = run_cli(["-q", *_map(cls_bundle, scene, tmp_path)], capsys)
    _assert_one_line_error(
        code, err, "cut.tif: corrupt or truncated raster: read failed at rows", "IReadBlock"
    )
    assert not (tmp_path / "out.tif").exists()


def test_truncated_geotiff_in_evaluate(
    seg_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = _truncated(tmp_path / "cut.tif")
    label = write_tif(tmp_path / "lab.tif", bands=1, size=128)
    code, _, err = run_cli(["-q", "evaluate", str(seg_bundle), str(image), str(label)], capsys)
    _assert_one_line_error(code, err, "cut.tif: corrupt or truncated raster: read failed at rows")


def test_truncated_geotiff_in_a_class_folder(
    cls_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "data"
    for name in ("water", "forest"):
        (root / name).mkdir(parents=True)
        _scene(root / name / "a.tif", size=32)
    _truncated(root / "forest" / "cut.tif", size=32)
    (root / "forest" / "full_cut.tif").unlink()
    code, _, err = run_cli(["-q", "evaluate", str(cls_bundle), str(root)], capsys)
    _assert_one_line_error(code, err, "cut.tif: corrupt or truncated raster")


@pytest.mark.parametrize(
    ("option", "needle"),
    [(["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
     (["--batch-size", "-1"], "--batch-size must be >= 1, got -1"),
     (["--chip-size", "0"], "--chip-size must be >= 1, got 0"),
     (["--device", "quantum"], "--device: unknown device 'quantum'"),
     (["--device", "cuda:x"], "--device: unknown device 'cuda:x'")],
)  # fmt: skip
def test_evaluate_options_checked_before_loading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: list[str], needle: str
) -> None:
    # The bundle does not exist: the option is refused before anything is read.
    code, _, err = run_cli(["evaluate", str(tmp_path / "none.safetensors"), "x", *option], capsys)
    _assert_one_line_error(code, err, needle)


def test_evaluate_cuda_without_a_gpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, _, err = run_cli(["evaluate", str(tmp_path / "b"), "x", "--device", "cuda"], capsys)
    _assert_one_line_error(code, err, "device 'cuda' asked for, but this machine has no CUDA GPU")


def test_evaluate_mixed_image_sizes(
    cls_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _class_folder(tmp_path / "data")
    write_png(root / "forest" / "9.png", size=40)
    code, _, err = run_cli(["-q", "evaluate", str(cls_bundle), str(root)], capsys)
    _assert_one_line_error(code, err, "forest/9.png: image is 40×40 px but", "is 32×32", "one size")


def test_mask_folder_of_mixed_sizes(tmp_path: Path) -> None:
    from landlearn.data.folders import MaskFolderDataset
    from landlearn.errors import LandlearnError

    root = write_mask_pair(tmp_path / "d", np.zeros((32, 32), np.uint8))
    write_png(root / "images" / "b.png", size=40)
    from PIL import Image

    Image.fromarray(np.zeros((40, 40), np.uint8)).save(root / "masks" / "b.png")
    with pytest.raises(LandlearnError, match=r"image is 40×40 px but images/a.png is 32×32"):
        MaskFolderDataset(root / "images", root / "masks", remap={0: 0})
    chips = MaskFolderDataset(root / "images", root / "masks", remap={0: 0}, chip_size=32)
    assert len(chips) == 1 + 4  # with chips, sizes may differ (edge chips are padded)


def test_evaluate_unreadable_class_folder(
    cls_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    root = _class_folder(tmp_path / "data")
    deny(monkeypatch, root / "forest")
    code, _, err = run_cli(["-q", "evaluate", str(cls_bundle), str(root)], capsys)
    _assert_one_line_error(code, err, "forest: permission denied")


def test_evaluate_classification_bundle_on_a_raster_pair(
    cls_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image, label = _scene(tmp_path / "img.tif"), write_tif(tmp_path / "lab.tif", bands=1, size=128)
    code, _, err = run_cli(["evaluate", str(cls_bundle), str(image), str(label)], capsys)
    _assert_one_line_error(code, err, "img.tif", "classification bundle scores a folder")


def test_missing_crs_is_warned_once(
    cls_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scene = write_tif(tmp_path / "nocrs.tif", size=64, crs=None)
    code, _, err = run_cli(_map(cls_bundle, scene, tmp_path), capsys)
    assert code == 0, err
    lines = [ln for ln in err.splitlines() if "no CRS" in ln]
    assert len(lines) == 1, err
    assert "UserWarning" not in err
    assert "map_scene(" not in err
    assert ".py:" not in err
