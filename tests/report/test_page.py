"""build_report on fake run folders: files written, content on the page, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from landlearn.errors import LandlearnError
from landlearn.report import build_report


def _png(path: Path, min_kb: float = 10) -> tuple[int, int]:
    assert path.is_file(), path
    assert path.stat().st_size > min_kb * 1024, f"{path.name} looks empty"
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_segmentation_report(seg_run: Path) -> None:
    index = build_report(seg_run)
    out = seg_run / "report"
    assert index == out / "index.html"
    page = index.read_text(encoding="utf-8")
    metrics = json.loads((seg_run / "metrics.json").read_text())
    assert metrics["class_names"] == ["water", "forest", "cropland", "wetland", "urban"]
    for name in metrics["class_names"]:
        assert f">{name}<" in page
    assert f"{metrics['overall_accuracy']:.4f}" in page
    assert f"{metrics['miou']:.4f}" in page
    assert "unet_resnet18" in page  # key setting from hparams.yaml
    assert 'src="report/' not in page
    assert page.count("data:image/png;base64,") == 5
    assert "absent from the test split" in page
    width, height = _png(out / "training_curves.png")
    assert width > 2 * height  # three panels side by side: loss, metrics, lr
    width, height = _png(out / "confusion_matrix.png")
    assert 500 < width < 1000
    assert 500 < height < 1000
    _png(out / "per_class.png")
    _png(out / "reliability.png")
    width, height = _png(out / "examples.png")
    assert width > 800
    assert height > 3 * 200
    md = (out / "metrics.md").read_text(encoding="utf-8")
    assert "| wetland | — |" in md
    assert f"{metrics['overall_accuracy']:.4f}" in md
    assert not list(out.glob(".*.tmp"))


def test_classification_report_uses_latest_version(cls_run: Path, tmp_path: Path) -> None:
    index = build_report(cls_run, tmp_path / "elsewhere")
    assert index == tmp_path / "elsewhere" / "index.html"
    page = index.read_text(encoding="utf-8")
    metrics = json.loads((cls_run / "version_2" / "metrics.json").read_text())
    assert len(metrics["class_names"]) == 10
    assert all(f">{name}<" in page for name in metrics["class_names"])
    assert f"{metrics['overall_accuracy']:.4f}" in page
    assert "version_2" in page
    assert "9.9000" not in page
    width, height = _png(tmp_path / "elsewhere" / "confusion_matrix.png", min_kb=30)
    assert width >= 800
    assert height >= 700
    _png(tmp_path / "elsewhere" / "examples.png")


def test_csv_only_run_notes_missing_pieces(seg_run: Path) -> None:
    for name in ("metrics.json", "examples.npz", "hparams.yaml"):
        (seg_run / name).unlink()
    page = build_report(seg_run).read_text(encoding="utf-8")
    assert "no metrics.json" in page
    assert page.count("data:image/png;base64,") == 1
    assert not (seg_run / "report" / "metrics.md").exists()


def test_json_only_run_with_bad_examples(seg_run: Path) -> None:
    (seg_run / "metrics.csv").unlink()
    (seg_run / "examples.npz").write_bytes(b"not a zip")
    page = build_report(seg_run).read_text(encoding="utf-8")
    assert "no metrics.csv" in page
    assert "Examples skipped" in page
    assert "Confusion matrix" in page


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_not_a_run_folder(tmp_path: Path, make: str) -> None:
    run = tmp_path / "run"
    if make == "empty":
        (run / "version_0").mkdir(parents=True)
    with pytest.raises(LandlearnError, match=r"no metrics\.csv or metrics\.json") as info:
        build_report(run)
    assert info.value.path == str(run)


def test_corrupt_metrics_json(seg_run: Path) -> None:
    (seg_run / "metrics.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(LandlearnError, match="cannot read metrics JSON") as info:
        build_report(seg_run)
    assert info.value.path == str(seg_run / "metrics.json")


def test_training_table_best_is_min_for_loss_and_ece_and_skips_test_rows() -> None:
    import pandas as pd

    from landlearn.report.page import _training_rows

    frame = pd.DataFrame(
        {
            "epoch": [0, 1, 2],
            "val_ece": [0.5, 0.01, 0.05],
            "val_loss": [2.0, 0.5, 0.7],
            "val_miou": [0.2, 0.6, 0.5],
            "test_oa": [None, None, 0.9],
        }
    )
    rows = {r[0]: r for r in _training_rows(frame)}
    assert "test_oa" not in rows
    assert rows["val_ece"][2:] == ["0.0100", "1"]
    assert rows["val_loss"][3] == "1"
    assert rows["val_miou"][3] == "1"


def test_regression_report_has_errors_not_classes(tmp_path: Path) -> None:
    """A regression run's page.

    A regression run's page: R², MAE and RMSE in the target's units, lowest error is best,
    and no class count, confusion matrix or calibration notes.
    """
    from landlearn.report.page import _training_rows

    run = tmp_path / "run"
    run.mkdir()
    metrics = {"task": "regression", "targets": ["lfmc"], "units": ["%"], "r2": 0.48}
    metrics |= {"mae": 20.18, "rmse": 26.46, "samples": 735}
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "metrics.csv").write_text(
        "epoch,step,val_mae,val_rmse,val_r2,train_loss_epoch\n"
        "0,10,26.7,35.6,0.1,\n0,10,,,,0.9\n1,20,22.6,31.8,0.3,\n1,20,,,,0.5\n"
    )
    page = build_report(run).read_text(encoding="utf-8")
    assert "targets: lfmc" in page
    assert "classes" not in page
    assert "MAE (%)" in page
    assert "RMSE (%)" in page
    assert "0.4800" in page
    assert "Confusion matrix" not in page
    assert "Reliability" not in page
    md = (run / "report" / "metrics.md").read_text(encoding="utf-8")
    assert "Task: regression of lfmc." in md
    assert "| R² | 0.4800 |" in md

    import pandas as pd

    rows = {r[0]: r for r in _training_rows(pd.read_csv(run / "metrics.csv"))}
    assert rows["val_mae"][2:] == ["22.6000", "1"]
    assert rows["val_r2"][2:] == ["0.3000", "1"]


def test_a_baseline_run_puts_its_reliability_diagram_beside_this_one(
    seg_run: Path, cls_run: Path, tmp_path: Path
) -> None:
    index = build_report(cls_run, tmp_path / "rep", baseline=seg_run)
    page = index.read_text(encoding="utf-8")
    assert "Calibration beside the baseline" in page
    assert f"baseline: {seg_run.resolve().name}" in page
    width, height = _png(tmp_path / "rep" / "reliability_vs_baseline.png")
    assert width > 1.4 * height  # two diagrams side by side
    with pytest.raises(LandlearnError, match="landlearn run folder"):
        build_report(cls_run, tmp_path / "rep2", baseline=tmp_path / "nope")


def test_pseudo_label_rounds_get_a_section_with_coverage_and_accuracy_per_class(
    seg_run: Path, tmp_path: Path
) -> None:
    rounds = []
    for r, (cov, acc) in enumerate(((0.2, 0.9), (0.5, 0.8)), start=1):
        folder = tmp_path / f"pseudo{r}"
        folder.mkdir()
        data = {"written_by": "landlearn", "kept_share": cov, "accuracy": acc,
                "classes": [{"class": "urban", "threshold": 0.9, "kept_pixels": 1200,
                             "coverage": cov, "accuracy": acc},
                            {"class": "water", "threshold": 0.7, "kept_pixels": 30,
                             "coverage": cov / 2, "accuracy": None}]}  # fmt: skip
        (folder / "pseudo_labels.json").write_text(json.dumps(data))
        rounds.append(folder)
    index = build_report(seg_run, tmp_path / "rep", pseudo_labels=rounds)
    page = index.read_text(encoding="utf-8")
    assert "Pseudo-labels per class and round" in page
    assert (
        "<td>2</td><td>urban</td><td>0.900</td><td>1,200</td><td>50.0 %</td><td>80.0 %</td>" in page
    )
    assert "<td>1</td><td>water</td><td>0.700</td><td>30</td><td>10.0 %</td><td>–</td>" in page
    width, height = _png(tmp_path / "rep" / "pseudo_labels.png")
    assert width > 2 * height  # coverage beside accuracy
    (rounds[1] / "pseudo_labels.json").write_text('{"classes": []}')
    with pytest.raises(LandlearnError, match="not written by `landlearn pseudo-label`"):
        build_report(seg_run, tmp_path / "rep2", pseudo_labels=rounds)
    with pytest.raises(LandlearnError, match=r"no pseudo_labels\.json"):
        build_report(seg_run, tmp_path / "rep3", pseudo_labels=[tmp_path])
