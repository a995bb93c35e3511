"""``landlearn experiment semisup``: the table's arithmetic, option checks, a real smoke run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from landlearn.errors import LandlearnError
from landlearn.experiments.common import mean_std
from landlearn.experiments.semisup import SemisupOptions, summarise
from tests.cli.conftest import run_cli


def _row(method: str, seed: int, miou: float, fraction: float = 0.25, **kw: object) -> dict:
    return {"method": method, "seed": seed, "miou": miou, "fraction": fraction, "wall_s": 1.0,
            "labelled_images": 2, **kw}  # fmt: skip


def test_mean_std() -> None:
    assert mean_std([0.5, 0.7]) == "0.6000 ± 0.1414"
    assert mean_std([0.5]) == "0.5000 ± 0.0000"
    assert mean_std([None, None]) == "–"


def test_summarise_pairs_by_seed_and_recovers_the_gap() -> None:
    rows = [_row("100 % labels", s, 0.8, 1.0) for s in (0, 1)]
    rows += [_row("supervised", 0, 0.4), _row("supervised", 1, 0.6)]
    # +0.2 over its own seed's supervised run each time: 0.2 of the 0.8 − 0.5 = 0.3 gap
    rows += [_row("mean teacher", 0, 0.6), _row("mean teacher", 1, 0.8)]
    rows += [_row("cps", 0, 0.1), _row("cps", 1, 0.2)]  # far below the floor
    table = summarise(rows).splitlines()
    mt = next(line for line in table if line.startswith("| mean teacher"))
    assert "0.7000 ± 0.1414" in mt  # test mIoU
    assert "0.2000 ± 0.0000" in mt  # Δ paired by seed (unpaired it would have a spread)
    assert "| 0.67 |" in mt  # 0.2 / (0.8 − 0.5)
    assert "| yes |" in mt
    cps = next(line for line in table if line.startswith("| cps"))
    assert "**no**" in cps
    assert "25% (2 img)" in mt


def test_summarise_says_when_there_is_no_gap() -> None:
    rows = [_row("100 % labels", 0, 0.3, 1.0), _row("supervised", 0, 0.4), _row("fixmatch", 0, 0.5)]
    assert "no gap" in summarise(rows)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data": "mars"}, "data must be one of"),
        ({"methods": ["magic"]}, "unknown method 'magic'"),
        ({"fractions": [1.0]}, "fractions must be in (0, 1)"),
        ({"rounds": [0]}, "rounds must be >= 1"),
        ({"data_root": "/nonexistent"}, "data set folder not found"),
    ],
)
def test_bad_options(change: dict, message: str) -> None:
    with pytest.raises(LandlearnError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SemisupOptions(**change).check()  # type: ignore[arg-type]


def test_bad_data_root_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "data"
    root.mkdir()
    code, _, err = run_cli(
        ["experiment", "semisup", "--data-root", str(root), "-o", str(tmp_path / "o")], capsys
    )
    assert code == 2
    assert err.strip().count("\n") == 0
    assert "data set folder not found" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.real
def test_semisup_study_runs_on_dubai(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "study"
    code, stdout, _ = run_cli(
        ["experiment", "semisup", "--data", "dubai", "--data-root", str(shared_data),
         "--fractions", "0.5", "--methods", "supervised", "self_training", "mean_teacher",
         "--rounds", "1", "2", "--seeds", "0", "--max-steps", "2", "--limit-eval-batches", "2",
         "-o", str(out)], capsys,
    )  # fmt: skip
    assert code == 0
    record = json.loads((out / "semisup.json").read_text())
    methods = [r["method"] for r in record["rows"]]
    assert methods == [
        "100 % labels", "supervised", "self-training ×1", "self-training ×2", "mean teacher"
    ]  # fmt: skip
    rounds = [r for r in record["rows"] if r["method"].startswith("self-training")]
    # round 2's teacher is round 1's student: its pseudo-labels come from another bundle
    assert all(r["pl_kept"] is not None and r["pl_accuracy"] is not None for r in rounds)
    assert all(0.0 <= r["miou"] <= 1.0 for r in record["rows"])
    assert (out / "semisup.png").stat().st_size > 10_000
    md = (out / "semisup.md").read_text()
    assert "| self-training ×2 | 50% (3 img) |" in md
    assert "Machine:" in md
    assert "| mean teacher |" in stdout


@pytest.mark.real
def test_dubai_tiles_train_on_two_tiles_and_test_on_a_third(
    shared_data: Path, tmp_path: Path
) -> None:
    from landlearn.experiments.semisup import SemisupOptions, _data, _datamodule

    opts = SemisupOptions(data="dubai_tiles", data_root=str(shared_data))
    opts.check()
    data = _data(opts, tmp_path)
    assert len(list(data.images.iterdir())) == 18  # tiles 1 and 2, as links
    assert all(p.is_symlink() for p in data.masks.iterdir())
    dm = _datamodule(opts, data, seed=0, fraction=0.25, unlabelled=True)
    dm.setup("fit")
    dm.setup("test")
    assert len(dm.labelled_files) == 4  # 25 % of the 15 train images
    assert len(dm.unlabelled_files) == 11
    names = {Path(str(f)).name for f in dm.labelled_files}
    assert all(n.startswith(("tile1_", "tile2_")) for n in names)
    assert "tile4" in str(dm.test_images)
    assert data.unlabelled is not None
    assert data.unlabelled.parent.name == "tile6"


@pytest.mark.real
def test_semisup_on_the_slovenia_raster_uses_its_unlabelled_blocks(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "study"
    code, stdout, _ = run_cli(
        ["experiment", "semisup", "--data", "slovenia", "--data-root", str(shared_data),
         "--fractions", "0.25", "--methods", "supervised", "self_training", "mean_teacher",
         "--seeds", "0", "--max-steps", "2", "--batch-size", "4", "-o", str(out)], capsys,
    )  # fmt: skip
    assert code == 0
    record = json.loads((out / "semisup.json").read_text())
    assert [r["method"] for r in record["rows"]] == ["100 % labels", "supervised", "mean teacher"]
    assert record["skipped"][0].startswith("self_training")
    assert record["options"]["chip"] == 32  # the 100 × 101 px scene's default
    full, sup, _ = record["rows"]
    assert sup["labelled_blocks"] == 2  # 25 % of the 10 train blocks of 32 px (rounded)
    assert full["labelled_blocks"] == 10
    assert all(0.0 <= r["miou"] <= 1.0 for r in record["rows"])
    assert "| mean teacher | 25% (2 blocks) |" in stdout
    assert "Skipped: self_training" in (out / "semisup.md").read_text()


@pytest.mark.real
def test_resume_reuses_the_fits_on_record_and_runs_only_the_new_ones(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "study"
    base = ["experiment", "semisup", "--data", "slovenia", "--data-root", str(shared_data),
            "--fractions", "0.25", "--seeds", "0", "--max-steps", "2", "--batch-size", "4",
            "-o", str(out)]  # fmt: skip
    code, _, err = run_cli([*base, "--resume"], capsys)  # nothing on record yet
    assert code == 2
    assert err.strip().count("\n") == 0
    assert "no semisup.json" in err
    assert run_cli([*base, "--methods", "supervised"], capsys)[0] == 0
    first = json.loads((out / "semisup.json").read_text())
    code, _, err = run_cli([*base, "--methods", "supervised", "mean_teacher", "--resume"], capsys)
    assert code == 0
    record = json.loads((out / "semisup.json").read_text())
    assert [r["method"] for r in record["rows"]] == ["100 % labels", "supervised", "mean teacher"]
    full, sup, mt = record["rows"]
    assert full["reused"]
    assert sup["reused"]
    assert "reused" not in mt
    assert [full["miou"], sup["miou"]] == [r["miou"] for r in first["rows"]]
    assert "reused from the record" in err
    assert "2 of 3 fits reused" in (out / "semisup.md").read_text()
    # another fit option: refused in one line, and the record is left as it was
    code, _, err = run_cli([*base[:-2], "--max-steps", "3", "-o", str(out), "--resume"], capsys)
    assert code == 2
    assert err.strip().count("\n") == 0
    assert "max_steps=2" in err
    assert json.loads((out / "semisup.json").read_text()) == record
