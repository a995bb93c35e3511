"""Commands never destroy a user's file.

Issue #21: `evaluate --out`, `fit --bundle`, `lr-find --out` and `demo --out` never destroy a
user's file; the folder's files are hashed before and after.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.cli.conftest import run_cli
from tests.cli.test_bad_input import _assert_one_line_error, _class_folder
from tests.cli.test_fit_checks import _config


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_evaluate_out_onto_the_bundle_is_refused(
    cls_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _class_folder(tmp_path / "data")
    before = _hashes(tmp_path)
    code, _, err = run_cli(
        ["evaluate", str(cls_bundle), str(data), "--out", str(cls_bundle)], capsys
    )
    _assert_one_line_error(code, err, "cls.safetensors", "is an input")
    assert _hashes(tmp_path) == before


def test_evaluate_out_onto_the_label_raster_is_refused(
    cls_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.cli.conftest import write_tif

    image, labels = write_tif(tmp_path / "img.tif"), write_tif(tmp_path / "labels.tif", bands=1)
    before = _hashes(tmp_path)
    args = ["evaluate", str(cls_bundle), str(image), str(labels), "--out", str(labels)]
    code, _, err = run_cli(args, capsys)
    _assert_one_line_error(code, err, "labels.tif", "is an input")
    assert _hashes(tmp_path) == before


def test_evaluate_out_replaces_only_its_own_metrics(
    cls_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _class_folder(tmp_path / "data")
    out = tmp_path / "metrics.json"
    code, _, err = run_cli(["evaluate", str(cls_bundle), str(data), "--out", str(out)], capsys)
    assert code == 0, err
    assert json.loads(out.read_text())["written_by"] == "landlearn"
    code, _, err = run_cli(["evaluate", str(cls_bundle), str(data), "--out", str(out)], capsys)
    assert code == 0, err  # an earlier metrics file may be replaced
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": 1}')
    before = _hashes(tmp_path)
    code, _, err = run_cli(["evaluate", str(cls_bundle), str(data), "--out", str(notes)], capsys)
    _assert_one_line_error(code, err, "notes.json", "--overwrite")
    assert _hashes(tmp_path) == before
    args = ["evaluate", str(cls_bundle), str(data), "--out", str(notes), "--overwrite"]
    assert run_cli(args, capsys)[0] == 0
    assert "overall_accuracy" in json.loads(notes.read_text())


@pytest.mark.parametrize("where", ["folder", "under_a_file"])
def test_evaluate_out_unusable_fails_before_the_work(
    cls_bundle: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    import landlearn.evaluation as ev

    def no_work(*a: object, **k: object) -> None:
        raise AssertionError("evaluated before the output was checked")

    monkeypatch.setattr(ev, "evaluate", no_work)
    data = _class_folder(tmp_path / "data")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "results").mkdir()
    out = tmp_path / "results" if where == "folder" else tmp_path / "afile" / "m.json"
    code, _, err = run_cli(["evaluate", str(cls_bundle), str(data), "--out", str(out)], capsys)
    _assert_one_line_error(code, err, "folder" if where == "folder" else "is a file")


def test_fit_bundle_onto_the_training_data_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(tmp_path)
    image = next((tmp_path / "data" / "water").iterdir())
    before = _hashes(tmp_path)
    code, _, err = run_cli(["fit", "--config", str(cfg), "--bundle", str(image)], capsys)
    _assert_one_line_error(code, err, image.name, "is an input")
    code, _, err = run_cli(["fit", "--config", str(cfg), "--bundle", str(cfg)], capsys)
    _assert_one_line_error(code, err, "c.yaml", "is an input")
    assert _hashes(tmp_path) == before


def test_fit_bundle_replaces_a_file_only_with_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(tmp_path)
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"an earlier model")
    code, _, err = run_cli(["fit", "--config", str(cfg), "--bundle", str(target)], capsys)
    _assert_one_line_error(code, err, "model.safetensors", "--overwrite", logs=True)
    assert target.read_bytes() == b"an earlier model"
    args = ["fit", "--config", str(cfg), "--bundle", str(target), "--overwrite"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    from landlearn.bundle import read_meta

    assert read_meta(target).model_name == "small_cnn"


def test_demo_refuses_a_folder_of_the_users_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = tmp_path / "work"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    code, _, err = run_cli(["demo", "--out", str(mine)], capsys)
    _assert_one_line_error(code, err, "work", "not an earlier landlearn demo")
    assert (mine / "thesis.tex").read_text() == "years of work"
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]


def test_report_out_refuses_the_users_index_html(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"overall_accuracy": 0.5}))
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<html>my homepage</html>")
    before = _hashes(tmp_path)
    code, _, err = run_cli(["report", str(run), "--out", str(site)], capsys)
    _assert_one_line_error(code, err, "index.html", "--overwrite")
    assert _hashes(tmp_path) == before
    fresh = tmp_path / "fresh"
    assert run_cli(["report", str(run), "--out", str(fresh)], capsys)[0] == 0
    assert run_cli(["report", str(run), "--out", str(fresh)], capsys)[0] == 0  # its own files


def test_lr_find_out_refuses_the_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path)
    before = _hashes(tmp_path)
    code, _, err = run_cli(["lr-find", "--config", str(cfg), "--out", str(cfg)], capsys)
    _assert_one_line_error(code, err, "c.yaml", "is an input")
    assert _hashes(tmp_path) == before
