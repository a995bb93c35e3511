"""``landlearn report RUN_DIR [--out DIR]`` through the subcommand's own parser."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest

from landlearn.cli import report as cli_report
from landlearn.errors import LandlearnError


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="landlearn report")
    cli_report.add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_writes_report(seg_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="landlearn"):
        assert cli_report.run(_parse([str(seg_run), "--out", str(out)])) == 0
    assert (out / "index.html").is_file()
    assert (out / "metrics.md").is_file()
    assert str(out / "index.html") in caplog.text


def test_cli_defaults_and_error(tmp_path: Path) -> None:
    args = _parse([str(tmp_path / "nope")])
    assert args.out is None
    with pytest.raises(LandlearnError, match="landlearn run folder"):
        cli_report.run(args)


def test_cli_help_shows_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parse(["--help"])
    assert "landlearn report runs/" in capsys.readouterr().out


def test_report_through_the_landlearn_command(
    cls_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.cli.conftest import run_cli

    code, _, err = run_cli(["report", str(cls_run), "--out", str(tmp_path / "r")], capsys)
    assert code == 0, err
    assert (tmp_path / "r" / "index.html").stat().st_size > 1000
    assert list((tmp_path / "r").glob("*.png"))
