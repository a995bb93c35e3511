"""``landlearn map`` through the real entry point."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rasterio

from landlearn.cli.main import main


def test_cli_map_writes_cog_and_sidecars(tmp_path: Path, bundle: Path, scene: Path) -> None:
    out = tmp_path / "cli.tif"
    code = main(
        [
            *("-q", "map", str(bundle), str(scene), "-o", str(out)),
            *("--tile", "64", "--overlap", "16", "--tta", "d4", "--probabilities"),
            *("--bands", "blue", "green", "3", "4"),
        ]
    )
    assert code == 0
    with rasterio.open(out) as m:
        assert m.count == 2 + 3 + 1
        assert m.descriptions[-1] == "entropy"
    assert (tmp_path / "cli.areas.json").exists()
    assert (tmp_path / "cli.preview.png").exists()


def test_cli_map_bad_scene_is_one_line_exit_2(
    tmp_path: Path, bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.tif"
    bad.write_text("nope")
    assert main(["map", str(bundle), str(bad), "-o", str(tmp_path / "x.tif")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ")
    assert "not a raster" in err[-1]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_kill_leaves_existing_target(tmp_path: Path, bundle: Path, scene: Path) -> None:
    out = tmp_path / "m.tif"
    out.write_bytes(b"precious")
    child = (
        "import sys, time; sys.path.insert(0, sys.argv[4]); import mapping_helpers\n"
        "from landlearn.cli.main import main\n"
        "import landlearn.mapping.scene as s\n"
        "orig = s.WindowReader.__next__\n"
        "def slow(self):\n"
        "    time.sleep(0.2); return orig(self)\n"
        "s.WindowReader.__next__ = slow\n"
        "sys.exit(main(['-q', 'map', sys.argv[1], sys.argv[2], '-o', sys.argv[3],"
        "  '--tile', '32', '--overlap', '8', '--batch-size', '1', '--overwrite']))\n"
    )
    here = str(Path(__file__).resolve().parent)
    proc = subprocess.Popen([sys.executable, "-c", child, str(bundle), str(scene), str(out), here])
    deadline = time.time() + 60
    while time.time() < deadline and not any(
        p.name.endswith(".stage.tif") for p in tmp_path.iterdir()
    ):
        time.sleep(0.1)
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=60) != 0
    assert out.read_bytes() == b"precious"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".m.tif")]
