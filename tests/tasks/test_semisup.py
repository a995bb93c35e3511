"""Issue #18: mean teacher, FixMatch and CPS — the pieces by hand, then training end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from landlearn.bundle import Ensemble, Predictor, load_bundle
from landlearn.conventions import IGNORE_INDEX
from landlearn.data.datamodules import MaskFolderDataModule
from landlearn.errors import LandlearnError
from landlearn.tasks import SemiSupervisedSegmentationTask
from landlearn.tasks.semisup import (
    _hard,
    cps_loss,
    cutmix_masks,
    ema_update,
    mix,
    rampup,
    strong_view,
)
from landlearn.training import train

UNET = {"model": "unet", "model_kwargs": {"encoder": "resnet18"}}


# ---- the pieces -------------------------------------------------------------------------
def test_rampup_is_the_sigmoid_shape_and_reaches_one() -> None:
    assert rampup(0, 100) == pytest.approx(np.exp(-5))
    assert rampup(50, 100) == pytest.approx(np.exp(-5 * 0.25))
    assert rampup(100, 100) == 1.0
    assert rampup(1000, 100) == 1.0
    assert rampup(3, 0) == 1.0


def test_ema_update_by_hand() -> None:
    teacher, student = nn.BatchNorm1d(2), nn.BatchNorm1d(2)
    with torch.no_grad():
        teacher.weight.copy_(torch.tensor([1.0, 2.0]))
        student.weight.copy_(torch.tensor([3.0, 6.0]))
        student.running_mean.copy_(torch.tensor([5.0, 7.0]))
    ema_update(teacher, student, 0.75)
    assert teacher.weight.tolist() == pytest.approx([0.75 * 1 + 0.25 * 3, 0.75 * 2 + 0.25 * 6])
    assert teacher.running_mean.tolist() == [5.0, 7.0]  # buffers are copied, not averaged
    assert student.weight.tolist() == [3.0, 6.0]


def test_the_cps_loss_is_symmetric() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    la, lb = a.argmax(1), b.argmax(1)
    la[0, 0, 0] = IGNORE_INDEX
    assert cps_loss(a, b, la, lb) == pytest.approx(float(cps_loss(b, a, lb, la)))
    # each network learns the other's labels: a network agreeing with the other costs less
    assert cps_loss(b.clone(), b, lb, lb) < cps_loss(a, b, la, lb)


def test_pseudo_labels_below_the_threshold_are_ignored() -> None:
    probs = torch.tensor([[[[0.96, 0.5]], [[0.04, 0.5]]]])  # (1, 2 classes, 1, 2)
    labels, keep = _hard(probs, 0.95)
    assert labels.tolist() == [[[0, IGNORE_INDEX]]]
    assert keep.tolist() == [[[True, False]]]


def test_cutmix_mixes_images_and_pseudo_masks_with_the_same_box() -> None:
    torch.manual_seed(3)
    x = torch.randn(4, 3, 32, 32)
    labels = (x[:, 0] > 0).long()  # a target that is a function of the pixels
    boxes = cutmix_masks(4, 32, 32, p=1.0)
    assert all(0.05 < float(b.float().mean()) < 0.6 for b in boxes)  # one box each, mid-sized
    mixed_x, mixed_y = mix(x, boxes), mix(labels, boxes)
    assert torch.equal(mixed_y, (mixed_x[:, 0] > 0).long())
    assert torch.equal(mixed_x[0][:, boxes[0]], x[1][:, boxes[0]])  # pasted from the neighbour
    assert torch.equal(mixed_x[0][:, ~boxes[0]], x[0][:, ~boxes[0]])
    assert not cutmix_masks(4, 32, 32, p=0.0).any()


def test_the_strong_view_changes_intensities_only() -> None:
    torch.manual_seed(0)
    x = torch.zeros(2, 3, 16, 16)
    x[:, :, :, 8:] = 1.0  # a vertical edge
    s = strong_view(x, blur=0.0)
    assert not torch.equal(s, x)
    # brightness and contrast are per image and band: the edge stays where it is
    assert ((s[:, :, :, 8:].mean((2, 3)) - s[:, :, :, :8].mean((2, 3))) > 0).all()


def test_bad_options_are_one_line_errors() -> None:
    for kw, match in (({"method": "meanteacher"}, "mean_teacher, fixmatch, cps"),
                      ({"method": "cps", "export": "teacher"}, "exports mean or first"),
                      ({"ema": 1.5}, "ema must be in"), ({"threshold": -0.1}, "threshold"),
                      ({"unsup_weight": -1.0}, "unsup_weight")):  # fmt: skip
        with pytest.raises(LandlearnError, match=match):
            SemiSupervisedSegmentationTask(**UNET, **kw)


# ---- the unlabelled branch --------------------------------------------------------------
class _Stream:
    """Stands in for the datamodule's unlabelled stream: fixed images, any mask beside them."""

    def __init__(self, x: torch.Tensor, mask: torch.Tensor) -> None:
        self.x, self.mask = x, mask

    def next(self, device: torch.device) -> dict[str, Any]:
        return {"image": self.x, "mask": self.mask}


@pytest.mark.parametrize("method", ["mean_teacher", "fixmatch", "cps"])
def test_the_unlabelled_branch_never_sees_masks(method: str) -> None:
    torch.manual_seed(0)
    task = SemiSupervisedSegmentationTask(**UNET, method=method, num_classes=3, in_channels=3,
                                          threshold=0.0)  # fmt: skip
    xu = torch.randn(4, 3, 32, 32)
    grads = []
    for fill in (0, 2):  # two different "masks" travel with the unlabelled images
        task._unlabelled = _Stream(xu, torch.full((4, 32, 32), fill))  # type: ignore[assignment]
        task.zero_grad()
        torch.manual_seed(1)
        loss, kept = task.unlabelled_loss(task._unlabelled_images(torch.zeros(1)))
        loss.backward()
        assert kept == 1.0
        grads.append(torch.cat([p.grad.flatten() for p in task.model.parameters()]))  # type: ignore[union-attr]
        if method != "cps":
            assert all(p.grad is None for p in task.teacher.parameters())  # no gradient
    assert torch.equal(grads[0], grads[1])
    assert float(grads[0].abs().sum()) > 0


# ---- end to end ---------------------------------------------------------------------------
def _dm(masks: Path, **kw: Any) -> MaskFolderDataModule:
    root = masks / "deepglobe"
    return MaskFolderDataModule(
        str(root / "images"), str(root / "masks"), classes_csv=str(root / "classes.csv"),
        chip_size=32, val_fraction=0.25, test_fraction=0.25, batch_size=4, seed=0,
        augment={"hflip": 0.5}, **kw,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("method", "export", "models", "kind"),
    [
        ("mean_teacher", None, ["teacher", "student"], Predictor),
        ("fixmatch", "student", ["student", "teacher"], Predictor),
        ("cps", None, ["model", "model2"], Ensemble),
    ],
)
def test_each_method_trains_and_the_bundle_holds_both_networks(
    masks: Path, tmp_path: Path, method: str, export: str | None, models: list[str], kind: type
) -> None:
    task = SemiSupervisedSegmentationTask(**UNET, method=method, export=export, rampup_steps=2)
    dm = _dm(masks, label_fraction=0.5)
    result = train(model=task, datamodule=dm, root=tmp_path, max_epochs=2, accelerator="cpu",
                   enable_progress_bar=False, report=False)  # fmt: skip
    assert len(dm.labelled_files) == 1
    assert len(dm.unlabelled_files) == 1
    assert task._unlabelled is not None  # the unlabelled loader was used
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["miou"] is not None
    path = result.run_dir / "model.safetensors"
    loaded = load_bundle(path)
    assert isinstance(loaded, kind)
    meta = loaded.meta if isinstance(loaded, Predictor) else loaded.members[0].meta
    from landlearn.bundle import read_meta

    full = read_meta(path)
    assert [m.name for m in full.models] == models
    assert full.extra["semisup"]["method"] == method
    first = dict(task.export_modules())[models[0]]
    x = torch.randn(1, 3, 32, 32)
    task.eval()
    expected = torch.softmax(task(x).float(), 1)  # what validation and test ran
    image = np.random.default_rng(0).uniform(0, 255, (3, 32, 32)).astype(np.float32)
    got = np.asarray(loaded.predict_proba(image[None]))[0]
    assert got.shape == (3, 32, 32)
    assert np.allclose(got.sum(0), 1.0, atol=1e-4)
    if kind is Predictor:
        with torch.no_grad():
            direct = torch.softmax(first(x).float(), 1)
        assert torch.allclose(direct, expected, atol=1e-5)
    assert meta.class_names == ["urban_land", "agriculture_land", "water"]
    from landlearn.cli.main import main

    scene = next((masks / "deepglobe" / "images").iterdir())
    out = tmp_path / "map.tif"
    assert (
        main(["map", str(path), str(scene), "-o", str(out), "--tile", "32", "--overlap", "8"]) == 0
    )
    assert out.is_file()


def test_without_unlabelled_images_the_labelled_batches_feed_the_unlabelled_loss(
    masks: Path, tmp_path: Path
) -> None:
    # the "few clicked points per tile" case: sparse points + partial CE + mean teacher
    task = SemiSupervisedSegmentationTask(**UNET, loss="partial_ce", rampup_steps=0,
                                          threshold=0.0)  # fmt: skip
    logged: dict[str, float] = {}

    class Grab(pl.Callback):
        def on_train_epoch_end(self, trainer: pl.Trainer, module: Any) -> None:
            logged.update({k: float(v) for k, v in trainer.callback_metrics.items()})

    train(model=task, datamodule=_dm(masks, label_fraction_pixels=0.05), root=tmp_path,
          max_epochs=1, accelerator="cpu", enable_progress_bar=False, report=False,
          callbacks=[Grab()])  # fmt: skip
    assert task._unlabelled is None
    assert float(logged["train_unsup"]) > 0
    assert float(logged["train_pseudo_kept"]) == 1.0


def test_a_raster_pairs_unlabelled_blocks_feed_the_unlabelled_loss(
    pair: Path, tmp_path: Path
) -> None:
    # label_fraction on a raster scene: the other train blocks are the unlabelled data (the
    # task used to look for image-folder attributes only and fell back to the labelled chips)
    from landlearn.data.datamodules import RasterPairDataModule

    dm = RasterPairDataModule(str(pair / "scene.tif"), str(pair / "label.tif"),
                              remap={1: 0, 2: 1, 3: 2, 8: 3}, chip_size=16, samples_per_epoch=8,
                              batch_size=4, seed=3, label_fraction=0.5)  # fmt: skip
    task = SemiSupervisedSegmentationTask(**UNET, rampup_steps=0, threshold=0.0)
    train(model=task, datamodule=dm, root=tmp_path, max_steps=2, max_epochs=-1,
          accelerator="cpu", enable_progress_bar=False, report=False)  # fmt: skip
    assert task._unlabelled is not None
    assert task._unlabelled.loader.dataset is dm.unlabelled_dataset


def test_checkpoint_and_resume_keep_the_teacher(masks: Path, tmp_path: Path) -> None:
    task = SemiSupervisedSegmentationTask(**UNET, rampup_steps=1)
    quiet = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False}
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", default_root_dir=tmp_path, **quiet)
    trainer.fit(task, datamodule=_dm(masks, label_fraction=0.5))
    ckpt = next(tmp_path.rglob("*.ckpt"))
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    teacher = {k: v for k, v in state.items() if k.startswith("teacher.")}
    assert teacher
    assert any(not torch.equal(v, state["model." + k.removeprefix("teacher.")])
               for k, v in teacher.items() if v.is_floating_point())  # fmt: skip
    resumed = SemiSupervisedSegmentationTask(**UNET, rampup_steps=1)
    seen: dict[str, torch.Tensor] = {}

    class Peek(pl.Callback):
        def on_train_start(self, trainer: pl.Trainer, module: Any) -> None:
            seen.update({f"teacher.{k}": v.clone() for k, v in module.teacher.state_dict().items()})

    trainer2 = pl.Trainer(max_epochs=2, accelerator="cpu", default_root_dir=tmp_path / "r",
                          callbacks=[Peek()], **quiet)  # fmt: skip
    trainer2.fit(resumed, datamodule=_dm(masks, label_fraction=0.5), ckpt_path=str(ckpt))
    assert seen.keys() == teacher.keys()
    assert all(torch.equal(seen[k], teacher[k]) for k in teacher)


def test_extra_unlabelled_images_join_the_loader_and_a_wrong_band_count_is_one_line(
    masks: Path, tmp_path: Path
) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(extra / "a.png")
    dm = _dm(masks, unlabelled_images=str(extra))
    dm.setup("fit")
    assert dm.unlabelled_files == []  # every train image keeps its mask …
    batch = next(iter(dm.unlabelled_dataloader()))  # … and the folder gives 4 chips of 32 px
    assert batch["image"].shape == (4, 3, 32, 32)
    assert "mask" not in batch
    Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(extra / "b.png")
    with pytest.raises(LandlearnError, match=r"b\.png: unlabelled image has 1 bands but the "
                                             r"labelled images have 3"):  # fmt: skip
        _dm(masks, unlabelled_images=str(extra)).setup("fit")


def test_fit_with_a_bad_unlabelled_folder_is_one_line_exit_2(
    masks: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from landlearn.cli.main import main

    root = masks / "deepglobe"
    extra = tmp_path / "gray"
    extra.mkdir()
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(extra / "g.png")
    code = main(["fit", "--model", "SemiSupervisedSegmentationTask",
                 "--model.model=unet", "--data", "MaskFolderDataModule",
                 f"--data.images={root / 'images'}", f"--data.masks={root / 'masks'}",
                 f"--data.classes_csv={root / 'classes.csv'}", "--data.chip_size=32",
                 f"--data.unlabelled_images={extra}", "--trainer.max_epochs=1",
                 f"--trainer.default_root_dir={tmp_path / 'run'}"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "g.png: unlabelled image has 1 bands" in err
    assert "Traceback" not in err
    assert not list((tmp_path / "run").rglob("model.safetensors"))
