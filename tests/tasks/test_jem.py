"""Issue #17: JEM's energy, SGLD and replay buffer, the divergence guard, semi-supervision."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from landlearn.data import synthetic
from landlearn.data.datamodules import ImageFolderDataModule
from landlearn.errors import LandlearnError
from landlearn.models import build_model
from landlearn.tasks import DivergenceGuard, JEMTask, SegmentationJEMTask
from landlearn.tasks.sgld import ReplayBuffer, sgld
from landlearn.training import train
from landlearn.uncertainty import energy

FAST = {"sgld_steps": 3, "buffer_size": 32, "lr": 1e-3}


@pytest.fixture(scope="module")
def patches(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("patches")
    synthetic.write_patch_folder(data, n_per_class=8, size=16, seed=1)
    return data


def _dm(patches: Path, **kw: Any) -> ImageFolderDataModule:
    return ImageFolderDataModule(
        str(patches), batch_size=8, val_fraction=0.25, test_fraction=0.25, **kw
    )


def _trainer(tmp_path: Path, epochs: int = 2, **kw: Any) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs, accelerator="cpu", default_root_dir=tmp_path, logger=False,
        enable_progress_bar=False, enable_model_summary=False, **kw,
    )  # fmt: skip


# ---- energy and SGLD --------------------------------------------------------------------
def test_energy_is_minus_logsumexp_of_the_logits() -> None:
    logits = torch.tensor([[0.0, 0.0], [1.0, 2.0], [-3.0, 5.0]])
    expected = [
        -math.log(2.0),
        -math.log(math.e + math.e**2),
        -math.log(math.exp(-3) + math.exp(5)),
    ]
    assert torch.allclose(energy(logits), torch.tensor(expected))
    task = JEMTask(model="small_cnn", num_classes=2, in_channels=3, channels_last=False)
    x = torch.randn(4, 3, 16, 16)
    assert torch.allclose(task.energy(x), -torch.logsumexp(task(x), 1))


def test_sgld_lowers_the_energy_of_samples_on_a_toy_2d_problem() -> None:
    torch.manual_seed(0)
    mu = torch.tensor([1.5, -0.5])

    def e(x: torch.Tensor) -> torch.Tensor:  # a Gaussian well: E = |x − μ|² / 2
        return 0.5 * ((x - mu) ** 2).sum(1)

    x0 = torch.rand(256, 2) * 2 - 1
    x = sgld(e, x0, steps=50, step_size=0.1, noise=0.01)
    assert e(x).mean() < 0.1 * e(x0).mean()
    assert torch.allclose(x.mean(0), mu, atol=0.05)
    assert not x.requires_grad


def test_sgld_leaves_the_model_in_its_mode_with_no_parameter_gradients() -> None:
    model = build_model("wide_resnet", in_channels=3, num_classes=4)
    model.train()
    x = sgld(lambda t: energy(model(t)), torch.rand(2, 3, 16, 16), steps=2, model=model)
    assert model.training
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert x.shape == (2, 3, 16, 16)


def test_replay_buffer_fills_then_reuses_and_restarts_a_share() -> None:
    buf = ReplayBuffer(8, (1, 2, 2), num_classes=2, reinit=0.0, seed=0)
    x, c, slots = buf.draw(8)
    assert (slots == -1).all()
    buf.push(x + 10, c, slots)
    assert len(buf) == 8
    x2, _, slots2 = buf.draw(4)
    assert (slots2 >= 0).all()
    assert (x2 >= 9).all()  # continued chains, not fresh noise
    buf.reinit = 1.0
    x3, _, _ = buf.draw(4)
    assert (x3.abs() <= 1).all()  # all restarted from U(−1, 1)


def test_gaussian_init_follows_each_class_and_conditional_draws_keep_the_class() -> None:
    buf = ReplayBuffer(16, (1, 4, 4), num_classes=2, init="gaussian", seed=0)
    with pytest.raises(LandlearnError, match="fit_gaussian"):
        buf.draw(2)
    images = torch.cat([torch.full((20, 1, 4, 4), -3.0), torch.full((20, 1, 4, 4), 3.0)])
    images += 0.1 * torch.randn_like(images)
    labels = torch.tensor([0] * 20 + [1] * 20)
    buf.fit_gaussian(images, labels)
    x, c, slots = buf.draw(16, classes=torch.tensor([0, 1] * 8))
    assert torch.equal(c, torch.tensor([0, 1] * 8))
    assert (x[c == 0].mean() - -3).abs() < 0.2
    assert (x[c == 1].mean() - 3).abs() < 0.2
    buf.push(x, c, slots)
    _, c2, _ = buf.draw(6, classes=torch.tensor([1] * 6))
    assert (c2 == 1).all()


def test_bad_options_are_one_line_errors() -> None:
    with pytest.raises(LandlearnError, match="init must be one of uniform, gaussian"):
        JEMTask(init="normal")
    with pytest.raises(LandlearnError, match="multiclass"):
        JEMTask(mode="multilabel")
    with pytest.raises(LandlearnError, match="depth must be 6n"):
        build_model("wide_resnet", in_channels=3, num_classes=2, depth=12)
    with pytest.raises(LandlearnError, match="action must be restore or stop"):
        DivergenceGuard(action="ignore")


def test_wide_resnet_without_batch_norm_has_none() -> None:
    plain = build_model("wide_resnet", in_channels=4, num_classes=3, norm="none", depth=16)
    assert not [m for m in plain.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert plain(torch.randn(2, 4, 24, 24)).shape == (2, 3)


# ---- the guard's rule -------------------------------------------------------------------
def test_guard_fires_on_a_diverging_energy_sequence_and_not_on_a_stable_one() -> None:
    rng = np.random.default_rng(0)
    stable = DivergenceGuard()
    assert all(stable.check(1.0, 5.0 + 0.1 * v) is None for v in rng.standard_normal(300))

    diverging = DivergenceGuard()
    values = list(5.0 + 0.1 * rng.standard_normal(80))
    values += list(5.0 * 1.15 ** np.arange(1, 40))  # the gap blows up
    reasons = [diverging.check(1.0, v) for v in values]
    fired = [i for i, r in enumerate(reasons) if r is not None]
    assert fired, "the guard never fired"
    assert fired[0] >= 80  # not during the stable part
    assert "relative std" in str(reasons[fired[0]])

    assert DivergenceGuard().check(float("nan"), 1.0) is not None  # the hard rule
    assert DivergenceGuard().check(1e9, 1.0) is not None


# ---- end to end -------------------------------------------------------------------------
def test_jem_trains_and_the_run_records_samples_and_the_guard(
    patches: Path, tmp_path: Path
) -> None:
    task = JEMTask(model="wide_resnet", reg_r=0.1, **FAST)
    result = train(model=task, datamodule=_dm(patches), root=tmp_path, max_epochs=2,
                   accelerator="cpu", enable_progress_bar=False,
                   callbacks=[DivergenceGuard()])  # fmt: skip
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["divergence"]["epochs_completed_share"] == 1.0
    assert metrics["ece"] is not None
    assert (result.run_dir / "sgld_samples.png").stat().st_size > 1000
    assert len(task.buffer or []) == 32


def test_an_absurd_learning_rate_rolls_back_and_still_completes_every_epoch(
    patches: Path, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    guard = DivergenceGuard(jump=2, every=1, lr_factor=1e-4, max_rollbacks=10)
    task = JEMTask(model="small_cnn", optimizer="sgd", momentum=0.0, **(FAST | {"lr": 1e7}))
    trainer = _trainer(tmp_path, epochs=3, callbacks=[guard], enable_checkpointing=False)
    trainer.fit(task, datamodule=_dm(patches))
    s = guard.summary()
    assert s["rollbacks"] >= 1
    assert s["epochs_completed"] == 3
    assert s["epochs_completed_share"] == 1.0
    assert all(torch.isfinite(p).all() for p in task.parameters())
    assert s["lr_scale"] < 1

    torch.manual_seed(0)
    stop = DivergenceGuard(action="stop")  # "no guard": stop where it diverged
    task = JEMTask(model="small_cnn", optimizer="sgd", momentum=0.0, **(FAST | {"lr": 1e7}))
    trainer = _trainer(tmp_path / "stop", epochs=3, callbacks=[stop], enable_checkpointing=False)
    trainer.fit(task, datamodule=_dm(patches))
    assert stop.summary()["stopped_at_step"] is not None
    assert stop.summary()["epochs_completed_share"] < 1.0


def test_the_replay_buffer_survives_checkpoint_and_resume(patches: Path, tmp_path: Path) -> None:
    pl.seed_everything(0)
    task = JEMTask(model="small_cnn", **FAST)
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)
    _trainer(tmp_path, epochs=1, callbacks=[ckpt]).fit(task, datamodule=_dm(patches))
    assert task.buffer is not None
    saved = task.buffer.samples.clone()
    state = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert torch.equal(state["jem_replay_buffer"]["samples"], saved)

    resumed = JEMTask(model="small_cnn", **FAST)
    seen: list[torch.Tensor] = []
    original = ReplayBuffer.draw

    def spy(self: ReplayBuffer, n: int, classes: torch.Tensor | None = None) -> Any:
        if not seen:
            seen.append(self.samples.clone())
        return original(self, n, classes)

    ReplayBuffer.draw = spy  # type: ignore[method-assign]
    try:
        trainer = _trainer(tmp_path / "r", epochs=2, enable_checkpointing=False)
        trainer.fit(resumed, datamodule=_dm(patches), ckpt_path=tmp_path / "last.ckpt")
    finally:
        ReplayBuffer.draw = original  # type: ignore[method-assign]
    assert seen
    assert torch.equal(seen[0], saved)  # the first step after resume drew from it


class _Spy(JEMTask):
    """A JEM that records what each term of each step saw."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.sizes: list[dict[str, int]] = []

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Any:
        self.sizes.append({"labelled": len(batch["label"])})
        return super().training_step(batch, batch_idx)

    def configure_losses(self, datamodule: Any = None) -> None:
        super().configure_losses(datamodule)
        head = self.head_names[0]
        ce = self.losses[head]
        sizes = self.sizes

        class Counted(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.ce = ce

            def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
                sizes[-1]["ce"] = len(y)
                return self.ce(logits, y)

        self.losses[head] = Counted()

    def _unlabelled_batch(self) -> torch.Tensor | None:
        x = super()._unlabelled_batch()
        self.sizes[-1]["unlabelled"] = 0 if x is None else len(x)
        return x

    def _sample(self, n: int, like: torch.Tensor, classes: torch.Tensor | None = None) -> Any:
        self.sizes[-1]["px"] = n
        return super()._sample(n, like, classes)


def test_semi_supervised_jem_uses_unlabelled_images_only_in_px(
    patches: Path, tmp_path: Path
) -> None:
    dm = _dm(patches, label_fraction=0.5)
    task = _Spy(model="small_cnn", unlabelled=True, **FAST)
    trainer = _trainer(tmp_path, epochs=2, enable_checkpointing=False, limit_val_batches=0)
    trainer.fit(task, datamodule=dm)
    assert dm.unlabelled_dataset is not None
    assert task.sizes
    for step in task.sizes:
        assert step["unlabelled"] > 0
        assert step["ce"] == step["labelled"]  # the cross-entropy sees the labelled images only
        assert step["px"] == step["labelled"] + step["unlabelled"]  # p(x) sees both


def test_unlabelled_without_a_label_fraction_is_one_line(patches: Path, tmp_path: Path) -> None:
    task = JEMTask(model="small_cnn", unlabelled=True, **FAST)
    with pytest.raises(LandlearnError, match="no unlabelled samples"):
        _trainer(tmp_path, epochs=1).fit(task, datamodule=_dm(patches))


def test_guard_warmup_holds_the_soft_rule_back_but_not_the_hard_one() -> None:
    noisy = [1.0, 5.0] * 60  # unstable from the first step
    early = DivergenceGuard(window=10, outliers=0, history=20)
    late = DivergenceGuard(window=10, outliers=0, history=20, warmup=50)
    first_early = next(i for i, v in enumerate(noisy) if early.check(0.0, v) is not None)
    first_late = next(i for i, v in enumerate(noisy) if late.check(0.0, v) is not None)
    assert first_early == 9
    assert first_late == 49
    assert DivergenceGuard(warmup=50).check(float("nan"), 1.0) is not None


def test_a_jem_bundle_keeps_its_validation_energies_and_maps_an_energy_band(
    patches: Path, tmp_path: Path
) -> None:
    import rasterio
    from rasterio.transform import from_origin

    from landlearn.bundle import load_bundle
    from landlearn.cli.main import main

    result = train(model=JEMTask(model="small_cnn", **FAST), datamodule=_dm(patches),
                   root=tmp_path, max_epochs=1, accelerator="cpu", enable_progress_bar=False,
                   report=False)  # fmt: skip
    bundle = result.run_dir / "model.safetensors"
    ref = load_bundle(bundle).meta.extra["jem"]["energy_reference"]
    assert ref["n"] == 10
    assert ref["p0.5"] <= ref["p50"] <= ref["p99.5"]
    scene = tmp_path / "scene.tif"
    image = np.random.default_rng(0).integers(0, 255, (3, 48, 48), dtype=np.uint8)
    with rasterio.open(
        scene,
        "w",
        driver="GTiff",
        width=48,
        height=48,
        count=3,
        dtype="uint8",
        crs="EPSG:32633",
        transform=from_origin(500000, 4000000, 10, 10),
    ) as dst:
        dst.write(image)  # fmt: skip
    assert main(["map", str(bundle), str(scene), "-o", str(tmp_path / "map.tif")]) == 0
    with rasterio.open(tmp_path / "map.tif") as m:
        assert m.descriptions[-1] == "energy"
        assert float(m.tags(m.count)["VALIDATION_ENERGY_P50"]) == pytest.approx(ref["p50"], 1e-4)


# ---- segmentation ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def seg_scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("seg_scene")
    return synthetic.write_scene(root / "scene.tif", root / "label.tif", 128, 128, num_classes=3)


def _seg_dm(seg_scene: tuple[Path, Path], chip: int = 32) -> Any:
    from landlearn.data.datamodules import RasterPairDataModule

    return RasterPairDataModule(str(seg_scene[0]), str(seg_scene[1]), chip_size=chip,
                                samples_per_epoch=16, batch_size=4, seed=0)  # fmt: skip


def test_wide_resnet_unet_keeps_the_input_size_and_passes_gradients() -> None:
    model = build_model("wide_resnet_unet", in_channels=4, num_classes=3, norm="none")
    x = torch.randn(2, 4, 37, 50, requires_grad=True)  # odd sizes: upsampling meets the skips
    out = model(x)
    assert out.shape == (2, 3, 37, 50)
    out.sum().backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()


def test_the_tile_energy_is_the_pixel_mean_so_its_gradient_does_not_grow_with_the_tile() -> None:
    task = SegmentationJEMTask(model="wide_resnet_unet", num_classes=3, in_channels=4,
                               model_kwargs={"norm": "none"}, channels_last=False)  # fmt: skip
    task.eval()
    logits = torch.randn(2, 3, 8, 8)
    assert torch.allclose(task._tile_energy(logits), energy(logits).flatten(1).mean(1))
    summed = SegmentationJEMTask(num_classes=3, in_channels=4, tile_energy="sum")
    assert torch.allclose(summed._tile_energy(logits), energy(logits).flatten(1).sum(1))
    with pytest.raises(LandlearnError, match="mean or sum"):
        SegmentationJEMTask(num_classes=3, in_channels=4, tile_energy="max")
    torch.manual_seed(0)
    grads = []
    for size in (32, 128):
        x = torch.randn(1, 4, size, size, requires_grad=True)
        (g,) = torch.autograd.grad(task.energy(x).sum(), x)
        grads.append(float(g.abs().mean()) * size * size)  # the pixel-mean gradient × pixels
    per_pixel = [g / s**2 for g, s in zip(grads, (32, 128), strict=True)]
    assert per_pixel[1] < per_pixel[0] * 0.5  # 16× the pixels: each pixel's share shrinks
    assert grads[1] == pytest.approx(grads[0], rel=0.5)  # the tile's total stays on one scale


def test_segmentation_jem_trains_with_the_guard_and_maps_a_per_pixel_energy_band(
    seg_scene: tuple[Path, Path], tmp_path: Path
) -> None:
    import rasterio

    from landlearn.bundle import load_bundle
    from landlearn.cli.main import main

    task = SegmentationJEMTask(model_kwargs={"norm": "none", "widen": 1}, buffer_crop=16,
                               init="gaussian", reg_r=0.2, **FAST)  # fmt: skip
    result = train(model=task, datamodule=_seg_dm(seg_scene), root=tmp_path, max_epochs=2,
                   accelerator="cpu", enable_progress_bar=False, report=False,
                   callbacks=[DivergenceGuard()])  # fmt: skip
    assert task.buffer is not None
    assert task.buffer.samples.shape[1:] == (4, 16, 16)  # the fixed crop, not the 32 px chips
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["divergence"]["epochs_completed_share"] == 1.0
    assert metrics["miou"] is not None
    bundle = result.run_dir / "model.safetensors"
    ref = load_bundle(bundle).meta.extra["jem"]["energy_reference"]
    assert ref["n"] > 1000  # per-pixel energies of the validation chips
    out = tmp_path / "map.tif"
    argv = [
        "map",
        str(bundle),
        str(seg_scene[0]),
        "-o",
        str(out),
        "--tile",
        "64",
        "--overlap",
        "16",
    ]
    assert main(argv) == 0
    with rasterio.open(out) as m:
        assert m.descriptions[-1] == "energy"
        e = m.read(m.count)
        assert len(np.unique(e[e != 255])) > 5  # varies from pixel to pixel
