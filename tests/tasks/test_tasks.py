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
        ["lr-find", "--config", str(cfg), "--num-training", "60", "--out", str(png)], capsys
    )
    assert code == 0, err
    assert "suggested learning rate" in out
    assert png.stat().st_size > 10_000


def test_in_channels_must_match_the_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _patch_config(tmp_path, tmp_path / "x", extra=", in_channels: 13, num_classes: 5")
    code, _, err = run_cli(["fit", "--config", str(cfg)], capsys)
    assert code == 2
    assert "in_channels=13" in err and "3 bands" in err


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
    task.val_metrics.update(probs, y if mode != "binary" else y.long())
    assert task.val_metrics.compute()["overall_accuracy"] is not None


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
