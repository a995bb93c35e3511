"""`fit` configs: values range-checked and jsonargparse errors as one line naming file and key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from landlearn.config_checks import parse_error, remove_empty_run
from tests.cli.conftest import run_cli, write_png
from tests.cli.test_bad_input import _assert_one_line_error, _class_folder


def _config(
    tmp_path: Path, trainer: str = "fast_dev_run: 1", model: str = "", data: str = "",
    name: str = "c.yaml", batch_size: int = 2,
) -> Path:  # fmt: skip
    if not (tmp_path / "data").exists():
        _class_folder(tmp_path / "data", n=4)
    p = tmp_path / name
    p.write_text(
        f"""
trainer: {{{trainer}, accelerator: cpu, default_root_dir: {tmp_path}}}
model:
  class_path: landlearn.tasks.ClassificationTask
  init_args: {{model: small_cnn, loss: ce{model}}}
data:
  class_path: landlearn.data.datamodules.ImageFolderDataModule
  init_args: {{root: {tmp_path / "data"}, batch_size: {batch_size}, val_fraction: 0.25,
               test_fraction: 0.25{data}}}
"""
    )
    return p


@pytest.mark.parametrize(
    ("parts", "needle"),
    [({"trainer": "max_epochs: -3"}, "c.yaml: trainer.max_epochs: must be >= 1 (or -1 for no "
      "limit), got -3"),
     ({"batch_size": 0}, "c.yaml: data.init_args.batch_size: must be >= 1, got 0"),
     ({"model": ", lr: -1"}, "c.yaml: model.init_args.lr: must be a finite number >= 0, got -1"),
     ({"model": ", lr: null"}, "c.yaml: model.init_args.lr: must be a number, got null"),
     ({"model": ", dropout: null"}, "c.yaml: model.init_args.dropout: must be a number, got null"),
     ({"trainer": "fast_dev_run: 1, devices: 10000"},
      "c.yaml: trainer.devices: 10000 devices asked for, but this machine has"),
     ({"trainer": "fast_dev_run: 1, devices: 0"}, "c.yaml: trainer.devices: must be >= 1"),
     ({"trainer": "fast_dev_run: 1, devices: null"},
      "c.yaml: trainer.devices: must be a number, a list or 'auto', got null"),
     ({"trainer": "fast_dev_run: 1, devices: []"},
      "c.yaml: trainer.devices: an empty list selects no device"),
     ({"trainer": "fast_dev_run: 1, devices: [0, 1]"},
      "c.yaml: trainer.devices: on the CPU, devices is a number of processes"),
     ({"trainer": "fast_dev_run: 1, accelerator: quantum"},
      "trainer.accelerator: unknown accelerator 'quantum'")],
)  # fmt: skip
def test_config_values_out_of_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], parts: dict[str, Any], needle: str
) -> None:
    cfg = _config(tmp_path, **parts)
    if "quantum" in needle:  # the later accelerator key in the same flow mapping wins
        cfg.write_text(cfg.read_text().replace("accelerator: cpu, ", ""))
    code, _, err = run_cli(["fit", "--config", str(cfg)], capsys)
    _assert_one_line_error(code, err, needle)
    assert not list(tmp_path.rglob("version_*"))


def test_accelerator_gpu_without_a_gpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    cfg = _config(tmp_path)
    cfg.write_text(cfg.read_text().replace("accelerator: cpu", "accelerator: gpu"))
    code, _, err = run_cli(["fit", "--config", str(cfg)], capsys)
    _assert_one_line_error(code, err, "c.yaml: trainer.accelerator: 'gpu' asked for", "no CUDA GPU")


def test_command_line_value_is_named_as_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(tmp_path)
    code, _, err = run_cli(["fit", "--config", str(cfg), "--trainer.max_epochs=-3"], capsys)
    _assert_one_line_error(code, err, "error: --trainer.max_epochs: must be >= 1")
    assert "c.yaml" not in err


def test_the_config_that_sets_the_key_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = _config(tmp_path)
    extra = tmp_path / "override.yaml"
    extra.write_text("data:\n  init_args:\n    batch_size: 0\n")
    code, _, err = run_cli(["fit", "--config", str(base), "--config", str(extra)], capsys)
    _assert_one_line_error(code, err, "override.yaml: data.init_args.batch_size: must be >= 1")


@pytest.mark.parametrize(
    ("edit", "needle"),
    [(("loss: ce", "loss: ce, bogus_key: 3"),
      "c.yaml: model.init_args.bogus_key: unknown option"),
     (("batch_size: 2", "batch_size: two"),
      "c.yaml: data.init_args.batch_size: expected int, got two"),
     (("fast_dev_run: 1", "fast_dev_run: 1, max_epoch: 3"),
      "c.yaml: trainer.max_epoch: unknown option"),
     (("\nmodel:", "\nbogus_section: 1\nmodel:"), "c.yaml: bogus_section: unknown option")],
)  # fmt: skip
def test_jsonargparse_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: tuple[str, str], needle: str
) -> None:
    cfg = _config(tmp_path)
    cfg.write_text(cfg.read_text().replace(*edit))
    code, out, err = run_cli(["fit", "--config", str(cfg)], capsys)
    _assert_one_line_error(code, err, needle)
    assert "usage:" not in out + err


def test_empty_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "empty.yaml"
    cfg.write_text("")
    code, _, err = run_cli(["fit", "--config", str(cfg)], capsys)
    _assert_one_line_error(code, err, "empty.yaml: config is empty")


def test_unknown_command_line_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["fit", "--config", str(_config(tmp_path)), "--bogus"], capsys)
    _assert_one_line_error(code, err, "unrecognized arguments: --bogus")


def test_debug_keeps_jsonargparse_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from landlearn.cli.main import main

    cfg = _config(tmp_path)
    cfg.write_text(cfg.read_text().replace("loss: ce", "loss: ce, bogus_key: 3"))
    with pytest.raises(SystemExit) as exit_:
        main(["--debug", "fit", "--config", str(cfg)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err
    assert "bogus_key" in err
    assert len(err.splitlines()) > 10


def test_parse_error_message_shapes() -> None:
    message = (
        'Parser key "data":\n  Does not validate against any of the Union subtypes\n'
        "  Subtypes: [<class 'LightningDataModule'>, <class 'NoneType'>]\n  Errors:\n"
        "    - Problem with given class_path 'landlearn.data.datamodules.ImageFolderDataModule':\n"
        "        Parser key \"batch_size\":\n          Expected a <class 'int'>. Got value: x\n"
        "    - Expected a <class 'NoneType'>\n  Given value type: <class 'dict'>\n"
    )
    err = parse_error(message, ["fit", "--config", "/nowhere/c.yaml"])
    assert err.one_line() == "/nowhere/c.yaml: data.init_args.batch_size: expected int, got x"
    plain = parse_error(
        "Parser key \"trainer.max_epochs\":\n  Errors:\n    - Expected a <class 'int'>\n"
        "    - Expected a <class 'NoneType'>\n  Given value type: <class 'str'>\n"
        "  Given value: x",
        ["fit", "--trainer.max_epochs", "x"],
    )
    assert plain.one_line() == "--trainer.max_epochs: expected int, got x"


def test_failed_fit_removes_its_empty_run_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(tmp_path, trainer="max_epochs: 1, limit_train_batches: 4")
    for i in range(4):  # fails inside the training loop, after Lightning made version_0
        write_png(tmp_path / "data" / "water" / f"big{i}.png", size=40, seed=i)
    keep = tmp_path / "c" / "version_0"  # a folder the user already had is never touched
    code, _, err = run_cli(["fit", "--config", str(cfg)], capsys)
    _assert_one_line_error(code, err, "image is 40×40 px", logs=True)
    assert not (tmp_path / "c").exists(), sorted(tmp_path.rglob("*"))
    keep.mkdir(parents=True)
    (keep / "notes.txt").write_text("mine")
    code, _, err = run_cli(["fit", "--config", str(cfg)], capsys)
    assert code == 2
    assert (keep / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "c" / "version_1").exists()


def test_remove_empty_run_keeps_results(tmp_path: Path) -> None:
    def run(name: str, *files: str) -> Path:
        folder = tmp_path / "runs" / name / "version_0"
        for f in files:
            (folder / f).parent.mkdir(parents=True, exist_ok=True)
            (folder / f).write_text("x")
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    assert remove_empty_run(run("a", "config.yaml", "hparams.yaml", "events.out.tfevents.1"))
    assert not (tmp_path / "runs" / "a").exists()
    assert (tmp_path / "runs").is_dir()
    assert remove_empty_run(run("b"))  # left empty
    for files in (("config.yaml", "checkpoints/best-epoch=0.ckpt"), ("metrics.csv",),
                  ("model.safetensors",), ("config.yaml", "my_notes.txt")):  # fmt: skip
        folder = run("c", *files)
        assert not remove_empty_run(folder)
        assert all((folder / f).exists() for f in files)
    big = run("d", "config.yaml")
    (big / "events.out.tfevents.2").write_bytes(b"x" * 10_000)  # logged scalars
    assert not remove_empty_run(big)
