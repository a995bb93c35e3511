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


# ---- hostile bundle headers and checkpoints (issue 21): one line, exit 2, via evaluate and map --


def _hostile_bundle(good: Path, **fields: object) -> Path:
    """A bundle with some header fields replaced.

    ``good`` as a format-1 file (the fields below are format 1's) with ``fields`` replaced
    (``_raw`` = the whole text).
    """
    import json

    from safetensors.torch import save_file

    from tests.data.bundle_v1 import v1_of

    raw, state = v1_of(good)
    text = fields.pop("_raw", None)
    raw.update(fields)
    out = good.with_name("hostile.safetensors")
    save_file(state, str(out), metadata={"landlearn": text or json.dumps(raw)})
    return out


HOSTILE_HEADERS: list[tuple[dict[str, object], str]] = [
    ({"_raw": "[1, 2]"}, "is a list, expected a JSON object"),
    ({"_raw": "null"}, "is null, expected a JSON object"),
    ({"format_version": "1"}, "format_version must be an integer >= 0, got '1'"),
    ({"task": "bogus"}, "unknown bundle task 'bogus'; known: classification, segmentation"),
    ({"class_names": None}, "class_names must be a list of names, got null"),
    ({"class_names": [0, 1]}, "class_names[0] must be a non-empty string"),
    ({"mean": [1.0]}, "mean has 1 values but band_names has 3"),
    ({"mean": "big"}, "mean must be a list of numbers"),
    ({"chip_size": 0}, "chip_size must be between 1 and 65536, got 0"),
    ({"chip_size": "32"}, "chip_size must be an integer, got '32'"),
    ({"class_colors": [[0, 0, 300]]}, "class_colors[0] must be 3 or 4 integers 0-255"),
    ({"model_kwargs": [1]}, "model_kwargs must be a JSON object"),
    ({"model_kwargs": {"widht": 8}}, "does not take model_kwargs key 'widht'; did you mean"),
    ({"model_kwargs": {"width": 2500}}, "would have 5.6e8 parameters (2.3 GB); limit 2e8"),
    ({"model_name": "small_cn"}, "unknown model 'small_cn'; did you mean 'small_cnn'?"),
]


@pytest.mark.parametrize("command", ["evaluate", "map"])
@pytest.mark.parametrize(("fields", "needle"), HOSTILE_HEADERS)
def test_hostile_bundle_header_is_one_line(
    cls_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str,
    fields: dict[str, object], needle: str,
) -> None:  # fmt: skip
    bad = _hostile_bundle(cls_bundle, **fields)
    if command == "evaluate":
        args = ["evaluate", str(bad), str(_class_folder(tmp_path / "data"))]
    else:
        scene = write_tif(tmp_path / "scene.tif", bands=3)
        args = ["map", str(bad), str(scene), "-o", str(tmp_path / "out.tif")]
    code, _, err = run_cli(args, capsys)
    _assert_one_line_error(code, err, "hostile.safetensors", needle)
    assert not (tmp_path / "out.tif").exists()


def _many_classes_bundle(tmp_path: Path, k: int) -> Path:
    import torch

    from landlearn.bundle import BundleMeta, save_bundle
    from landlearn.models import build_model

    torch.manual_seed(0)
    names = ["water", "forest", *(f"c{i}" for i in range(k - 2))]
    meta = BundleMeta(
        task="classification", model_name="small_cnn", model_kwargs={"width": 4, "depth": 1},
        band_names=["red", "green", "blue"], mean=[100.0] * 3, std=[50.0] * 3,
        class_names=names, chip_size=32,
    )  # fmt: skip
    model = build_model("small_cnn", in_channels=3, num_classes=k, width=4, depth=1)
    return save_bundle(tmp_path / "many.safetensors", model, meta)


def test_map_refuses_more_classes_than_the_class_band_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = _many_classes_bundle(tmp_path, 256)
    scene = write_tif(tmp_path / "scene.tif", bands=3)
    capsys.readouterr()  # "wrote bundle" when an earlier test left the CLI's log handler
    code, _, err = run_cli(["map", str(bundle), str(scene), "-o", str(tmp_path / "o.tif")], capsys)
    _assert_one_line_error(
        code, err, "many.safetensors", "map: 256 classes do not fit the uint8 class band"
    )
    assert not (tmp_path / "o.tif").exists()
    # evaluate has no class band: the same bundle scores a class folder
    out = tmp_path / "m.json"
    args = ["evaluate", str(bundle), str(_class_folder(tmp_path / "data")), "--out", str(out)]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    assert "overall_accuracy" in out.read_text()


@pytest.mark.parametrize("command", ["evaluate", "map"])
@pytest.mark.parametrize(
    ("kind", "needle"),
    [
        ("mismatch", "weights do not fit model 'small_cnn': shape of fc.1.weight is (5, 64) in the "
                     "file, (2, 64) in the model"),
        ("list", "checkpoint's state_dict is a list, expected a mapping"),
        ("meta", "checkpoint's landlearn_bundle_meta is a list, expected the JSON text"),
        ("pickle", "checkpoint holds pickled objects besides weights (the Python global print); "
                   "landlearn loads weights only (torch.load weights_only=True) and refused it"),
    ],
)  # fmt: skip
def test_hostile_checkpoint_is_one_line(
    cls_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str,
    kind: str, needle: str,
) -> None:  # fmt: skip
    import torch

    from landlearn.bundle import read_meta
    from landlearn.models import build_model

    meta = read_meta(cls_bundle).to_json()
    five = build_model("small_cnn", in_channels=3, num_classes=5)
    state = {f"model.{k}": v for k, v in five.state_dict().items()}
    ckpt: dict[str, object] = {
        "mismatch": {"state_dict": state, "landlearn_bundle_meta": meta},
        "list": {"state_dict": [1], "landlearn_bundle_meta": meta},
        "meta": {"state_dict": state, "landlearn_bundle_meta": [meta]},
        "pickle": {"state_dict": state, "callbacks": _PrintOnLoad()},
    }[kind]
    path = tmp_path / "last.ckpt"
    torch.save(ckpt, path)
    if command == "evaluate":
        args = ["evaluate", str(path), str(_class_folder(tmp_path / "data"))]
    else:
        scene = write_tif(tmp_path / "scene.tif", bands=3)
        args = ["map", str(path), str(scene), "-o", str(tmp_path / "out.tif")]
    code, out, err = run_cli(args, capsys)
    _assert_one_line_error(code, err, "last.ckpt", needle)
    assert "code ran" not in out


class _PrintOnLoad:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("code ran",))


@pytest.mark.parametrize(
    ("extra", "needle"),
    [("scheduler: step, scheduler_kwargs: {gama: 0.5}", "did you mean 'gamma'"),
     ("scheduler: cosin", "did you mean 'cosine'"), ("optimizer: adamww", "did you mean 'adamw'"),
     ("loss: {name: focal, gama: 2}", "unknown option 'gama'; did you mean 'gamma'")],
)  # fmt: skip
def test_bad_optimiser_schedule_or_loss_option_in_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, needle: str
) -> None:
    cfg = _yaml(tmp_path, "small_cnn", "ce")
    cfg.write_text(cfg.read_text().replace("loss: ce}", f"loss: ce, {extra}}}"))
    if extra.startswith("loss:"):
        cfg.write_text(cfg.read_text().replace("loss: ce, ", ""))
    code, _, err = run_cli(["fit", "--config", str(cfg)], capsys)
    _assert_one_line_error(code, err, needle, logs=True)
    assert not list(tmp_path.rglob("*.safetensors"))
