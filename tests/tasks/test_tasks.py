"""Tasks through the real CLI on small generated data: reproducibility, checkpoints, modes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tests.cli.conftest import run_cli

from landlearn.bundle import load_bundle
from landlearn.data import synthetic
from landlearn.tasks import ClassificationTask, SegmentationTask


def _patch_config(tmp_path: Path, out: Path, seed: int = 0, extra: str = "") -> Path:
    data = tmp_path / "patches"
    if not data.exists():
        synthetic.write_patch_folder(data, n_per_class=8, size=32, seed=1)
    cfg = tmp_path / f"cls_{out.name}.yaml"
    cfg.write_text(
        f"""
seed_everything: {seed}
trainer: {{max_epochs: 2, accelerator: cpu, default_root_dir: {out}, enable_progress_bar: false}}
model:
  class_path: landlearn.tasks.ClassificationTask
  init_args: {{model: small_cnn, lr: 0.01, scheduler: cosine, dropout: 0.1{extra}}}
data:
  class_path: landlearn.data.datamodules.ImageFolderDataModule
  init_args: {{root: {data}, batch_size: 8, val_fraction: 0.25, test_fraction: 0.25,
               augment: {{hflip: 0.5, rot90: 0.5}}}}
"""
    )
    return cfg


def _metrics(out: Path) -> dict:
    (path,) = out.rglob("metrics.json")
    return json.loads(path.read_text())


def test_same_seed_gives_identical_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        code, _, err = run_cli(["fit", "--config", str(_patch_config(tmp_path, out))], capsys)
        assert code == 0, err
        runs.append(_metrics(out))
    assert runs[0]["confusion_matrix"] == runs[1]["confusion_matrix"]
    assert runs[0]["overall_accuracy"] == runs[1]["overall_accuracy"]
    assert runs[0]["ece"] == runs[1]["ece"]


def test_fit_writes_run_folder_and_checkpoint_loads_safely(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code, _, err = run_cli(["fit", "--config", str(_patch_config(tmp_path, out))], capsys)
    assert code == 0, err
    (run,) = (p.parent for p in out.rglob("model.safetensors"))
    for name in ("metrics.csv", "metrics.json", "metrics.md", "examples.npz", "config.yaml"):
        assert (run / name).is_file(), name
    assert list(run.glob("events.out.tfevents.*")), "TensorBoard log missing"
    (ckpt,) = run.rglob("best-*.ckpt")
    from_ckpt = load_bundle(ckpt)  # torch.load(weights_only=True) on a real Lightning checkpoint
    from_bundle = load_bundle(run / "model.safetensors")
    x = torch.rand(2, 3, 32, 32) * 255
    assert torch.allclose(from_ckpt.predict_proba(x), from_bundle.predict_proba(x), atol=1e-6)
    meta = from_bundle.meta
    assert meta.class_names == sorted(synthetic.CLASSES)  # folder names, alphabetical
    assert meta.band_names == ["red", "green", "blue"]
    assert meta.metrics["overall_accuracy"] == _metrics(out)["overall_accuracy"]
    from landlearn.data.datamodules import ImageFolderDataModule

    dm = ImageFolderDataModule(root=str(tmp_path / "patches"), batch_size=8, val_fraction=0.25,
                               test_fraction=0.25, seed=0)  # fmt: skip
    dm.setup("fit")  # the bundle keeps the statistics of the training split, not of all images
    assert meta.mean == pytest.approx([float(v) for v in dm.mean], rel=1e-5)
    assert meta.std == pytest.approx([float(v) for v in dm.std], rel=1e-5)
    assert _metrics(out)["class_names"] == sorted(synthetic.CLASSES)

    cfg = _patch_config(tmp_path, out)
    for sub in ("validate", "test", "predict"):
        code, _, err = run_cli([sub, "--config", str(cfg), f"--ckpt_path={ckpt}"], capsys)
        assert code == 0, f"{sub}: {err}"
    import numpy as np

    (preds,) = out.rglob("predictions.npz")
    with np.load(preds) as npz:
        assert npz["pred"].shape == npz["confidence"].shape == (10,)  # the test split


def test_lr_find_prints_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _patch_config(tmp_path, tmp_path / "lr")
    png = tmp_path / "lr.png"
    code, out, err = run_cli(
        ["lr-find", "--config", str(cfg), "--num-training", "60", "--out", str(png),
         "--min-lr", "1e-4", "--max-lr", "0.5"], capsys
    )  # fmt: skip
    assert code == 0, err
    assert "suggested learning rate" in out
    suggested = float(out.split("suggested learning rate:")[1].split()[0])
    assert 1e-4 <= suggested <= 0.5  # inside the range that was swept
    assert png.stat().st_size > 10_000


def test_in_channels_must_match_the_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _patch_config(tmp_path, tmp_path / "x", extra=", in_channels: 13, num_classes: 5")
    code, _, err = run_cli(["fit", "--config", str(cfg)], capsys)
    assert code == 2
    assert "in_channels=13" in err
    assert "3 bands" in err


@pytest.mark.parametrize("mode", ["binary", "multilabel", "multiclass"])
def test_classification_modes_step(mode: str) -> None:
    loss = "bce" if mode != "multiclass" else "ce"
    task = ClassificationTask(
        model="small_cnn", num_classes=2 if mode == "binary" else 3, in_channels=4,
        mode=mode, loss=loss,
    )  # fmt: skip
    x = torch.rand(4, 4, 32, 32)
    if mode == "multilabel":
        y = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.float32)
    elif mode == "binary":
        y = torch.tensor([0, 1, 1, 0]).float()
    else:
        y = torch.tensor([0, 1, 2, 0])
    loss_value = task.training_step({"image": x, "label": y}, 0)
    assert torch.isfinite(loss_value)
    probs = task.probs(task(x))
    assert probs.shape == (4, 2 if mode == "binary" else 3)
    task.val_metrics["classification"].update(probs, y if mode != "binary" else y.long())
    assert task.val_metrics["classification"].compute()["overall_accuracy"] is not None


def test_segmentation_step_ignores_unlabelled_pixels() -> None:
    torch.manual_seed(0)
    task = SegmentationTask(model="unet", num_classes=3, in_channels=4, loss="partial_ce")
    x = torch.rand(2, 4, 32, 32)
    mask = torch.full((2, 32, 32), 255)
    mask[:, 5, 5] = 1
    loss = task.training_step({"image": x, "mask": mask}, 0)
    mask2 = mask.clone()
    assert torch.isfinite(loss)
    all_ignored = task.training_step({"image": x, "mask": torch.full_like(mask2, 255)}, 0)
    assert float(all_ignored.detach()) == 0.0


def test_wrong_task_for_model() -> None:
    from landlearn.errors import LandlearnError

    with pytest.raises(LandlearnError, match="segmentation model"):
        ClassificationTask(model="unet", num_classes=2, in_channels=3)


def test_lr_suggestion_is_the_steepest_descent_before_the_minimum() -> None:
    import numpy as np

    from landlearn.cli.lr_find import suggest_lr

    lrs = np.logspace(-7, 0, 71)
    x = np.log10(lrs)
    # flat, then a descent centred at 1e-3, a minimum near 1e-1, then divergence
    losses = 2.0 - 1.5 / (1 + np.exp(-(x + 3) * 3)) + np.where(x > -1, (x + 1) * 8, 0)
    assert suggest_lr(list(lrs), list(losses)) == pytest.approx(1e-3, rel=0.3)
    assert suggest_lr([1e-3, 1e-2], [1.0, 0.9]) is None


@pytest.mark.parametrize("channels_last", [True, False])
def test_channels_last_changes_memory_order_not_results(
    channels_last: bool, tmp_path: Path
) -> None:
    """NHWC by default (faster kernels); logits equal NCHW's; the bundle stores plain weights."""
    from landlearn.bundle import save_bundle

    torch.manual_seed(0)
    task = SegmentationTask(
        model="unet", num_classes=3, in_channels=4, channels_last=channels_last
    ).eval()
    conv = next(m for m in task.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) is channels_last
    x = torch.rand(2, 4, 32, 32)
    plain = SegmentationTask(model="unet", num_classes=3, in_channels=4, channels_last=False)
    plain.load_state_dict(task.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(task(x), plain.eval()(x), rtol=1e-4, atol=1e-5)
    path = save_bundle(tmp_path / "m.safetensors", task.model, task.bundle_meta())
    with torch.no_grad():
        torch.testing.assert_close(load_bundle(path).model(x), plain(x), rtol=1e-4, atol=1e-5)


def _epochs_logged(out: Path, key: str = "val_oa") -> list[int]:
    import csv

    (path,) = out.rglob("metrics.csv")
    with path.open() as f:
        return sorted({int(r["epoch"]) for r in csv.DictReader(f) if r.get(key)})


def test_seed_flag_and_early_stopping(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--seed N`` reaches Lightning; ``patience`` stops a run whose monitor stops improving."""
    out = tmp_path / "es"
    # lr 0: validation accuracy never improves after the first epoch, so patience 1 stops at 2
    cfg = _patch_config(tmp_path, out, extra=", patience: 1, optimizer: sgd")
    cfg.write_text(cfg.read_text().replace("max_epochs: 2", "max_epochs: 6").replace(
        "lr: 0.01", "lr: 0.0").replace("scheduler: cosine", "scheduler: none"))  # fmt: skip
    code, _, err = run_cli(["fit", "--config", str(cfg), "--seed", "7"], capsys)
    assert code == 0, err
    (saved,) = out.rglob("config.yaml")
    assert "seed_everything: 7" in saved.read_text()
    assert _epochs_logged(out) == [0, 1]


@pytest.mark.parametrize(
    ("optimizer", "scheduler", "trainer"),
    [
        ("adamw, class_weights: true", "plateau", "accumulate_grad_batches: 2"),
        ("adam", "cyclic", "precision: bf16-mixed"),
        ("rmsprop, tta: d4", "step", "gradient_clip_val: 1.0"),
    ],
)
def test_craft_options_train_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], optimizer: str, scheduler: str, trainer: str
) -> None:
    out = tmp_path / "craft"
    cfg = _patch_config(tmp_path, out, extra=f", optimizer: {optimizer}")
    text = cfg.read_text().replace("scheduler: cosine", f"scheduler: {scheduler}")
    cfg.write_text(text.replace("max_epochs: 2,", f"max_epochs: 2, {trainer},"))
    code, _, err = run_cli(["fit", "--config", str(cfg)], capsys)
    assert code == 0, err
    assert _epochs_logged(out) == [0, 1]
    import csv

    (path,) = out.rglob("metrics.csv")
    with path.open() as f:
        lrs = [float(r[k]) for r in csv.DictReader(f) for k in r if k.startswith("lr-") and r[k]]
    assert lrs, "learning rate not logged"
    assert all(lr > 0 for lr in lrs), lrs
    if scheduler == "step":  # step_size defaults to a third of the run: ×0.1 after epoch 1
        assert lrs[-1] == pytest.approx(lrs[0] * 0.1)
    assert 0.0 <= _metrics(out)["overall_accuracy"] <= 1.0
    assert _metrics(out).get("tta") == ("d4" if "tta: d4" in optimizer else None)


def test_class_weights_come_from_the_datamodule(tmp_path: Path) -> None:
    from landlearn.data.datamodules import ImageFolderDataModule
    from landlearn.errors import LandlearnError

    data = tmp_path / "patches"
    synthetic.write_patch_folder(data, n_per_class=8, size=32, seed=1)
    for f in sorted((data / sorted(synthetic.CLASSES)[0]).iterdir())[:6]:
        f.unlink()  # the first class is now rare
    dm = ImageFolderDataModule(root=str(data), batch_size=8, val_fraction=0.0, seed=0)
    dm.setup("fit")
    task = ClassificationTask(model="small_cnn", num_classes=len(synthetic.CLASSES),
                              class_weights=True)  # fmt: skip
    task.configure_losses(dm)
    loss = task.losses["classification"]
    assert torch.allclose(loss.weight, torch.as_tensor(dm.class_weights, dtype=torch.float32))
    assert loss.weight[0] == loss.weight.max()
    assert loss.weight[0] > loss.weight[1]
    with pytest.raises(LandlearnError, match="class_weights: true needs a datamodule"):
        task.configure_losses(object())


@pytest.mark.parametrize("task_cls", [ClassificationTask, SegmentationTask])
def test_tta_tests_and_predicts_on_the_d4_mean(task_cls: type) -> None:
    from landlearn.d4 import D4, d4_forward, d4_inverse

    model = "small_cnn" if task_cls is ClassificationTask else "unet"
    kwargs = {} if task_cls is ClassificationTask else {"model_kwargs": {"encoder": "resnet18"}}
    torch.manual_seed(0)
    task = task_cls(model=model, num_classes=3, in_channels=3, tta="d4", **kwargs).eval()
    x = torch.rand(2, 3, 32, 32)
    seg = task_cls is SegmentationTask
    batch = {"image": x, "label": torch.tensor([0, 2]), "mask": torch.zeros(2, 32, 32).long()}
    with torch.no_grad():
        samples = [task.probs(task(d4_forward(x, k, f))) for k, f in D4]
        want = torch.stack([d4_inverse(p, k, f) if seg else p
                            for p, (k, f) in zip(samples, D4, strict=True)]).mean(0)  # fmt: skip
        got = task.predict_step(batch, 0)
        seen: list[torch.Tensor] = []
        task.test_metrics[task.head_names[0]].update = lambda probs, y: seen.append(probs)  # type: ignore[method-assign]
        task.test_step(batch, 0)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(seen[0], want)


def test_unknown_tta_fails_before_training() -> None:
    from landlearn.errors import LandlearnError

    with pytest.raises(LandlearnError, match="unknown TTA 'd8'"):
        ClassificationTask(model="small_cnn", num_classes=3, in_channels=3, tta="d8")


@pytest.mark.parametrize(("native", "precision"), [(False, "bf16-mixed"), (True, "bf16-mixed"),
                                                   (False, "32-true")])  # fmt: skip
def test_emulated_bf16_on_cpu_is_warned(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, native: bool, precision: str
) -> None:
    """bf16 autocast on a CPU without AVX512-BF16 / AMX is emulated: several times slower."""
    from types import SimpleNamespace

    from landlearn.tasks import base

    monkeypatch.setattr(base, "cpu_has_native_bf16", lambda: native)
    task = ClassificationTask(model="small_cnn", num_classes=2, in_channels=3)
    task._trainer = SimpleNamespace(precision=precision)  # type: ignore[assignment]
    with caplog.at_level("WARNING", logger="landlearn.tasks.base"):
        task.on_fit_start()
    warned = [r.getMessage() for r in caplog.records if "emulated" in r.getMessage()]
    assert bool(warned) == (not native and precision == "bf16-mixed")
    if warned:
        assert "use trainer.precision: 32-true" in warned[0]


def test_cpu_has_native_bf16_answers_a_bool() -> None:
    from landlearn.tasks.base import cpu_has_native_bf16

    assert isinstance(cpu_has_native_bf16(), bool)
