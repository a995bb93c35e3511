"""Issue #17: energy and max-softmax as out-of-distribution scores (``evaluate --ood``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from landlearn.data import synthetic
from landlearn.data.datamodules import ImageFolderDataModule
from landlearn.errors import LandlearnError
from landlearn.ood import auroc, ood_scores
from landlearn.tasks import JEMTask
from landlearn.training import train
from tests.cli.conftest import run_cli


def test_auroc_matches_hand_counts() -> None:
    assert auroc([0, 1], [2, 3]) == 1.0
    assert auroc([2, 3], [0, 1]) == 0.0
    assert auroc([0, 1, 2], [1]) == pytest.approx((1 + 0.5 + 0) / 3)  # a tie counts half
    with pytest.raises(LandlearnError, match="both groups"):
        auroc([], [1.0])


@pytest.fixture(scope="module")
def jem_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ood")
    data = synthetic.write_patch_folder(root / "patches", n_per_class=8, size=16, seed=1)
    task = JEMTask(model="small_cnn", sgld_steps=3, buffer_size=32, lr=1e-3)
    dm = ImageFolderDataModule(str(data), batch_size=8, val_fraction=0.25, test_fraction=0.25)
    result = train(model=task, datamodule=dm, root=root / "runs", max_epochs=2,
                   accelerator="cpu", enable_progress_bar=False)  # fmt: skip
    assert result.bundle is not None
    return result.bundle, data


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two bigger RGB images of saturated noise, nothing like the patches."""
    folder = tmp_path_factory.mktemp("elsewhere") / "tiles"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_ood_scores_cut_chips_and_give_both_aurocs(
    jem_bundle: tuple[Path, Path], elsewhere: Path
) -> None:
    bundle, data = jem_bundle
    s = ood_scores(bundle, data, elsewhere, ood_chip=16)
    assert s["n_in"] == 40
    assert s["n_out"] == 2 * 2 * 3  # 40 × 48 px images → 2 × 3 grid chips of 16 px each
    assert 0.0 <= s["energy_auroc"] <= 1.0
    assert 0.0 <= s["max_softmax_auroc"] <= 1.0
    capped = ood_scores(bundle, data, elsewhere, ood_chip=8, max_chips=5)
    assert capped["n_out"] == 5


def test_evaluate_with_ood_prints_and_stores_it(
    jem_bundle: tuple[Path, Path], elsewhere: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    bundle, data = jem_bundle
    out = tmp_path / "m.json"
    code, stdout, err = run_cli(["evaluate", str(bundle), str(data), "--ood", str(elsewhere),
                                 "--ood-chip", "16", "--out", str(out)], capsys)  # fmt: skip
    assert code == 0, err
    assert "AUROC energy" in stdout
    assert json.loads(out.read_text())["ood"]["n_out"] == 12


def test_bad_ood_folder_is_one_line(
    jem_bundle: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle, data = jem_bundle
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli(["evaluate", str(bundle), str(data), "--ood", str(empty)], capsys)
    assert code == 2
    assert "no images" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["evaluate", str(bundle), str(data), "--ood", str(tmp_path / "no")],
                           capsys)  # fmt: skip
    assert code == 2
