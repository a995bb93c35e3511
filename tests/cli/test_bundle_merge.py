"""``landlearn bundle merge A B -o ens.safetensors``: one-file ensembles, safe outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from landlearn.bundle import BundleMeta, load_bundle, save_bundle
from landlearn.ensemble import Ensemble, load_ensemble
from landlearn.models import build_model
from tests.cli.conftest import run_cli


def _bundle(path: Path, seed: int, classes: tuple[str, ...] = ("water", "forest")) -> Path:
    torch.manual_seed(seed)
    model = build_model("small_cnn", in_channels=3, num_classes=len(classes), width=8)
    meta = BundleMeta(
        task="classification", model_name="small_cnn", model_kwargs={"width": 8},
        band_names=["red", "green", "blue"], mean=[100.0 + seed] * 3, std=[50.0] * 3,
        class_names=list(classes), chip_size=32,
    )  # fmt: skip
    return save_bundle(path, model, meta)


@pytest.fixture
def members(tmp_path: Path) -> list[Path]:
    return [_bundle(tmp_path / f"{n}.safetensors", i) for i, n in enumerate("abc")]


def _one_line(code: int, err: str, *needles: str) -> None:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_merge_writes_an_ensemble_bundle(
    members: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ens.safetensors"
    code, _, err = run_cli(["bundle", "merge", *map(str, members), "-o", str(out)], capsys)
    assert code == 0, err
    loaded = load_bundle(out)
    assert isinstance(loaded, Ensemble)
    assert len(loaded) == 3
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255
    torch.testing.assert_close(loaded.predict_proba(x), load_ensemble(members).predict_proba(x))


def test_output_that_is_an_input_is_refused_even_with_overwrite(
    members: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    before = members[0].read_bytes()
    for extra in ([], ["--overwrite"]):
        args = ["bundle", "merge", *map(str, members), "-o", str(members[0]), *extra]
        code, _, err = run_cli(args, capsys)
        _one_line(code, err, "a.safetensors", "is an input of this command")
    assert members[0].read_bytes() == before


def test_existing_files_at_the_output(
    members: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "notes.safetensors"
    other.write_bytes(b"not a bundle, but mine")
    for extra in ([], ["--overwrite"]):
        args = ["bundle", "merge", *map(str, members[:2]), "-o", str(other), *extra]
        code, _, err = run_cli(args, capsys)
        _one_line(code, err, "notes.safetensors", "refusing to overwrite it")
    assert other.read_bytes() == b"not a bundle, but mine"
    out = tmp_path / "ens.safetensors"
    args = ["bundle", "merge", *map(str, members[:2]), "-o", str(out)]
    assert run_cli(args, capsys)[0] == 0
    code, _, err = run_cli(args, capsys)  # an existing bundle: only with --overwrite
    _one_line(code, err, "ens.safetensors", "exists; refusing to overwrite it (pass --overwrite")
    code, _, err = run_cli([*args[:2], *map(str, members), "-o", str(out), "--overwrite"], capsys)
    assert code == 0, err
    assert len(load_bundle(out)) == 3


def test_members_that_do_not_match_name_the_file(
    members: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    odd = _bundle(tmp_path / "odd.safetensors", 5, classes=("water", "urban"))
    out = tmp_path / "ens.safetensors"
    code, _, err = run_cli(["bundle", "merge", str(members[0]), str(odd), "-o", str(out)], capsys)
    _one_line(code, err, "odd.safetensors", "same classes, in order")
    assert not out.exists()
    gone = tmp_path / "gone.safetensors"
    code, _, err = run_cli(["bundle", "merge", str(members[0]), str(gone), "-o", str(out)], capsys)
    _one_line(code, err, "gone.safetensors", "no such file")
    code, _, err = run_cli(["bundle", "merge", str(members[0]), "-o", str(out)], capsys)
    _one_line(code, err, "needs at least two bundles")
    code, _, err = run_cli(["bundle", "merge", *map(str, members), "-o", str(tmp_path / "e.pt")],
                           capsys)  # fmt: skip
    _one_line(code, err, "e.pt", "ending in")
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temporary left


def test_help_shows_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        run_cli(["bundle", "merge", "--help"], capsys)
    assert info.value.code == 0
    assert "landlearn bundle merge a.safetensors b.safetensors" in capsys.readouterr().out
