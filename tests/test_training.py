"""``landlearn.train`` and ``landlearn.evaluate`` from Python make what the CLI makes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import landlearn
from landlearn.data import synthetic
from landlearn.errors import LandlearnError
from tests.cli.conftest import run_cli

CONFIG = """
seed_everything: 0
trainer: {{max_epochs: 2, accelerator: cpu, default_root_dir: {out}, enable_progress_bar: false}}
model:
  class_path: landlearn.tasks.ClassificationTask
  init_args: {{model: small_cnn, lr: 0.01, scheduler: cosine, dropout: 0.1}}
data:
  class_path: landlearn.data.datamodules.ImageFolderDataModule
  init_args: {{root: {data}, batch_size: 8, val_fraction: 0.25, test_fraction: 0.25}}
"""


@pytest.fixture(scope="module")
def patches(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("patches")
    synthetic.write_patch_folder(data, n_per_class=8, size=32, seed=1)
    return data


def _config(folder: Path, data: Path, out: Path) -> Path:
    cfg = folder / "cls.yaml"  # one name: the run folder is runs/<config name>/version_N
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(CONFIG.format(out=out, data=data))
    return cfg


def _files(run: Path) -> set[str]:
    """The run folder's files, with the names that hold a timestamp or host left generic."""
    names = set()
    for p in run.rglob("*"):
        if p.is_file():
            rel = p.relative_to(run).as_posix()
            names.add("events.out.tfevents" if "tfevents" in rel else rel)
    return names


def test_train_from_python_writes_the_same_files_as_fit(
    tmp_path: Path, patches: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_cfg = _config(tmp_path / "a", patches, tmp_path / "a" / "runs")
    code, _, err = run_cli(["fit", "--config", str(cli_cfg)], capsys)
    assert code == 0, err
    (cli_run,) = (p.parent for p in (tmp_path / "a" / "runs").rglob("model.safetensors"))

    result = landlearn.train(_config(tmp_path / "b", patches, tmp_path / "b" / "runs"))
    assert result.bundle == result.run_dir / "model.safetensors"
    assert _files(result.run_dir) == _files(cli_run)
    for name in ("model.safetensors", "metrics.json", "metrics.md", "examples.npz",
                 "report/index.html", "report/confusion_matrix.png"):  # fmt: skip
        assert (result.run_dir / name).is_file(), name
    ours = json.loads((result.run_dir / "metrics.json").read_text())
    theirs = json.loads((cli_run / "metrics.json").read_text())
    assert ours["confusion_matrix"] == theirs["confusion_matrix"]  # same seed, same numbers
    assert (
        ours["overall_accuracy"] == theirs["overall_accuracy"] == result.metrics["overall_accuracy"]
    )
    x = torch.rand(3, 3, 32, 32) * 255
    a, b = (
        landlearn.load_bundle(cli_run / "model.safetensors"),
        landlearn.load_bundle(result.bundle),
    )
    assert torch.equal(a.predict_proba(x), b.predict_proba(x))
    assert b.meta.metrics["overall_accuracy"] == ours["overall_accuracy"]  # tested, then exported


def test_train_from_objects_leaves_a_full_run_folder(tmp_path: Path, patches: Path) -> None:
    from landlearn.data.datamodules import ImageFolderDataModule
    from landlearn.tasks import ClassificationTask

    task = ClassificationTask(model="small_cnn", lr=0.01, dropout=0.1)
    dm = ImageFolderDataModule(root=str(patches), batch_size=8, val_fraction=0.25,
                               test_fraction=0.25)  # fmt: skip
    result = landlearn.train(
        model=task, datamodule=dm, root=tmp_path / "runs", name="mine", max_epochs=2,
        accelerator="cpu", enable_progress_bar=False, bundle=tmp_path / "shared.safetensors",
    )  # fmt: skip
    assert result.run_dir.parent == tmp_path / "runs" / "mine"
    assert result.bundle == tmp_path / "shared.safetensors"
    for name in ("metrics.json", "metrics.md", "examples.npz", "report/index.html",
                 "metrics.csv"):  # fmt: skip
        assert (result.run_dir / name).is_file(), name
    assert list(result.run_dir.rglob("best-*.ckpt")), "no best checkpoint"
    saved = json.loads((result.run_dir / "metrics.json").read_text())
    assert saved["overall_accuracy"] == pytest.approx(result.metrics["overall_accuracy"])
    assert 0.0 <= saved["overall_accuracy"] <= 1.0
    assert landlearn.load_bundle(result.bundle).meta.class_names == sorted(synthetic.CLASSES)

    # the library evaluate scores the exported bundle exactly as the CLI does
    test_folder = tmp_path / "test_images"
    synthetic.write_patch_folder(test_folder, n_per_class=3, size=32, seed=7)
    lib = landlearn.evaluate(result.bundle, test_folder, batch_size=4)
    assert sum(map(sum, lib["confusion_matrix"])) == 3 * len(synthetic.CLASSES)
    out = tmp_path / "m.json"
    import argparse

    from landlearn.cli.evaluate import add_arguments, run

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [str(result.bundle), str(test_folder), "--out", str(out), "--batch-size", "4"]
    )
    assert run(args) == 0
    cli = json.loads(out.read_text())
    assert cli["confusion_matrix"] == lib["confusion_matrix"]
    assert cli["overall_accuracy"] == lib["overall_accuracy"]


def test_train_without_testing_still_exports_the_best_weights(
    tmp_path: Path, patches: Path
) -> None:
    result = landlearn.train(
        _config(tmp_path, patches, tmp_path / "runs"), "--trainer.max_epochs=1", test=False,
        report=False,
    )  # fmt: skip
    assert result.bundle is not None
    assert result.bundle.is_file()
    assert result.metrics == {}
    assert not (result.run_dir / "metrics.json").exists()
    assert not (result.run_dir / "report").exists()


def test_train_refuses_unclear_calls(tmp_path: Path, patches: Path) -> None:
    with pytest.raises(LandlearnError, match="a config, or a model"):
        landlearn.train()
    from landlearn.tasks import ClassificationTask

    task = ClassificationTask(model="small_cnn")
    with pytest.raises(LandlearnError, match="datamodule"):
        landlearn.train(model=task)
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer: {max_epochs: -3}\n")
    with pytest.raises(LandlearnError, match=r"bad\.yaml"):
        landlearn.train(bad)


def test_library_evaluate_refuses_bad_options(tmp_path: Path) -> None:
    with pytest.raises(LandlearnError, match="batch_size"):
        landlearn.evaluate(tmp_path / "x.safetensors", tmp_path, batch_size=0)
