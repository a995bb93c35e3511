"""The bad-input table: one line naming the file and the problem, exit 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.cli.conftest import run_cli, write_mask_pair, write_png, write_tif


def _assert_one_line_error(code: int, err: str, *needles: str, logs: bool = False) -> None:
    assert code == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    if logs:  # training logs its progress before the error; the error is the last line
        lines = lines[-1:]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]


def _class_folder(root: Path, n: int = 2) -> Path:
    for name in ("water", "forest"):
        for i in range(n):
            write_png(root / name / f"{i}.png", seed=i)
    return root


def test_missing_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["evaluate", str(tmp_path / "nope.safetensors"), "x"], capsys)
    _assert_one_line_error(code, err, "nope.safetensors", "no such file")


def test_missing_data(cls_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["evaluate", str(cls_bundle), str(tmp_path / "absent")], capsys)
    _assert_one_line_error(code, err, "absent")


def test_empty_folder(cls_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(["evaluate", str(cls_bundle), str(tmp_path / "empty")], capsys)
    _assert_one_line_error(code, err, "empty")


@pytest.mark.parametrize(
    ("name", "content"),
    [("zero.png", b""), ("corrupt.png", b"\x89PNG\r\n\x1a\n garbage"), ("text.tif", b"hello")],
)
def test_bad_image_files(
    cls_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: bytes
) -> None:
    root = _class_folder(tmp_path / "data")
    (root / "water" / name).write_bytes(content)
    code, _, err = run_cli(["evaluate", str(cls_bundle), str(root)], capsys)
    _assert_one_line_error(code, err, name)


def test_band_count_differs_from_bundle(
    seg_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img = write_tif(tmp_path / "img.tif", bands=4)
    lab = write_tif(tmp_path / "lab.tif", bands=1)
    code, _, err = run_cli(["evaluate", str(seg_bundle), str(img), str(lab)], capsys)
    _assert_one_line_error(code, err, "expected 3 bands", "got 4")


def test_crs_mismatch(seg_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = write_tif(tmp_path / "img.tif", bands=3)
    lab = write_tif(tmp_path / "lab.tif", bands=1, crs="EPSG:4326")
    code, _, err = run_cli(["evaluate", str(seg_bundle), str(img), str(lab)], capsys)
    _assert_one_line_error(code, err, "CRS")


def test_size_mismatch(
    seg_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mask = np.zeros((40, 40, 3), np.uint8)
    write_mask_pair(tmp_path / "d", mask)
    code, _, err = run_cli(["evaluate", str(seg_bundle), str(tmp_path / "d")], capsys)
    _assert_one_line_error(code, err, "a.png")


def test_mask_colour_not_in_table(
    seg_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mask = np.zeros((32, 32, 3), np.uint8)
    mask[:] = (0, 0, 255)
    mask[5, 7] = (12, 200, 7)
    write_mask_pair(tmp_path / "d", mask)
    code, _, err = run_cli(["evaluate", str(seg_bundle), str(tmp_path / "d")], capsys)
    _assert_one_line_error(code, err, "a.png", "(12, 200, 7)")


def test_nan_not_allowed(
    cls_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "data"
    for name in ("water", "forest"):
        (root / name).mkdir(parents=True)
        data = np.ones((3, 32, 32), np.float32)
        if name == "forest":
            data[1, 4, 5] = np.nan
        write_tif(root / name / "x.tif", value=data)
    code, _, err = run_cli(["evaluate", str(cls_bundle), str(root)], capsys)
    _assert_one_line_error(code, err, "x.tif", "NaN")


def test_not_a_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "model.safetensors"
    p.write_text("not a bundle")
    code, _, err = run_cli(["evaluate", str(p), str(tmp_path)], capsys)
    _assert_one_line_error(code, err, "model.safetensors")


def test_debug_shows_traceback(tmp_path: Path) -> None:
    from landlearn.cli.main import main
    from landlearn.errors import LandlearnError

    with pytest.raises(LandlearnError):
        main(["--debug", "evaluate", str(tmp_path / "nope.safetensors"), "x"])


def _yaml(tmp_path: Path, model: str, loss: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(
        f"""
trainer: {{fast_dev_run: 1, accelerator: cpu, default_root_dir: {tmp_path}}}
model:
  class_path: landlearn.tasks.ClassificationTask
  init_args: {{model: {model}, loss: {loss}}}
data:
  class_path: landlearn.data.datamodules.ImageFolderDataModule
  init_args: {{root: {tmp_path / "data"}, batch_size: 2, val_fraction: 0.25, test_fraction: 0.25}}
"""
    )
    _class_folder(tmp_path / "data", n=4)
    return p


@pytest.mark.parametrize(
    ("model", "loss", "needle"),
    [("resnet81", "ce", "did you mean 'resnet18'"), ("small_cnn", "foca", "did you mean 'focal'")],
)
def test_unknown_model_or_loss_in_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], model: str, loss: str, needle: str
) -> None:
    cfg = _yaml(tmp_path, model, loss)
    code, _, err = run_cli(["fit", "--config", str(cfg)], capsys)
    _assert_one_line_error(code, err, needle, logs=True)
    assert not list(tmp_path.rglob("*.safetensors"))


@pytest.mark.parametrize("command", ["fit", "validate", "test", "predict", "lr-find"])
@pytest.mark.parametrize(
    ("content", "needle"),
    [(None, "no such config file"), ("model: [unclosed\n", "not valid YAML (line 2)"),
     ("- a\n- b\n", "YAML mapping")],
)  # fmt: skip
def test_missing_or_broken_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, content: str | None,
    needle: str,
) -> None:  # fmt: skip
    cfg = tmp_path / "run.yaml"
    if content is not None:
        cfg.write_text(content)
    code, _, err = run_cli([command, "--config", str(cfg)], capsys)
    _assert_one_line_error(code, err, "run.yaml", needle)


def test_report_of_a_folder_without_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(["report", str(tmp_path / "empty")], capsys)
    _assert_one_line_error(code, err, "empty", "landlearn run folder")
    assert not (tmp_path / "empty" / "report").exists()


def test_bad_remap(cls_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _class_folder(tmp_path / "data")
    code, _, err = run_cli(["evaluate", str(cls_bundle), str(root), "--remap", "1-0"], capsys)
    _assert_one_line_error(code, err, "--remap must look like 1:0,2:1,0:255", "'1-0'")


def test_remap_on_class_folders_is_refused(
    cls_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _class_folder(tmp_path / "data")
    code, _, err = run_cli(["evaluate", str(cls_bundle), str(root), "--remap", "1:0"], capsys)
    _assert_one_line_error(code, err, "--remap applies to masks")
