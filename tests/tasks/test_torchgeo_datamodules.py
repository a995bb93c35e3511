"""TorchGeo's own datamodules, unchanged, feed landlearn's tasks (fake data in their layouts)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.cli.conftest import run_cli

from landlearn.bundle import load_bundle

# torchgeo.datasets.DeepGlobeLandCover's colour map, in class order
DEEPGLOBE = [(0, 255, 255), (255, 255, 0), (255, 0, 255), (0, 255, 0), (0, 0, 255),
             (255, 255, 255), (0, 0, 0)]  # fmt: skip


def _fake_deepglobe(root: Path, n: int = 4, size: int = 64) -> Path:
    rng = np.random.default_rng(0)
    for split, ids in (("training_data", range(n)), ("test_data", range(n, n + 2))):
        for folder in ("images", "masks"):
            (root / "data" / split / folder).mkdir(parents=True, exist_ok=True)
        for i in ids:
            codes = np.repeat(np.repeat(rng.integers(0, 7, (4, 4)), size // 4, 0), size // 4, 1)
            rgb = np.array(DEEPGLOBE, np.uint8)[codes]
            image = (rgb * 0.6 + rng.integers(0, 60, rgb.shape)).astype(np.uint8)
            Image.fromarray(image).save(root / "data" / split / "images" / f"{i}_sat.jpg")
            Image.fromarray(rgb).save(root / "data" / split / "masks" / f"{i}_mask.png")
    return root


def test_deepglobe_datamodule_unchanged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _fake_deepglobe(tmp_path / "deepglobe")
    cfg = tmp_path / "dg.yaml"
    cfg.write_text(
        f"""
trainer: {{max_epochs: 1, accelerator: cpu, default_root_dir: {tmp_path / "runs"},
           enable_progress_bar: false}}
model:
  class_path: landlearn.tasks.SegmentationTask
  init_args: {{model: unet, loss: ce}}
data:
  class_path: torchgeo.datamodules.DeepGlobeLandCoverDataModule
  init_args: {{batch_size: 2, patch_size: 32, val_split_pct: 0.25}}
  dict_kwargs: {{root: {root}}}
"""
    )
    code, _, err = run_cli(["fit", "--config", str(cfg)], capsys)
    assert code == 0, err
    (bundle,) = (tmp_path / "runs").rglob("model.safetensors")
    meta = load_bundle(bundle).meta
    assert meta.num_classes == 7
    assert meta.in_channels == 3
    assert meta.class_names[0] == "Urban land"
    assert meta.class_colors[4] == [0, 0, 255]  # TorchGeo's colour map travels in the bundle
    assert meta.mean == [0.0, 0.0, 0.0]
    assert meta.std == [255.0, 255.0, 255.0]
    metrics = json.loads((bundle.parent / "metrics.json").read_text())
    assert metrics["num_classes"] == 7
    assert metrics["pixels"] > 0
