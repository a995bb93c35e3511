"""Issue #21: `landlearn map` never destroys a user's file, and commits a map as one group.

Each overwrite case hashes every file in the folder before and after; the signal cases kill a
real subprocess at the moment named.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rasterio
import rasterio.shutil

from landlearn.cli.main import main
from landlearn.mapping.outputs import stale_sidecars
from landlearn.safety import map_run_id

HERE = str(Path(__file__).resolve().parent)
FAST = ["--tile", "64", "--overlap", "16"]


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def _refused(capsys: pytest.CaptureFixture[str], args: list[str], *needles: str) -> str:
    code = main(["-q", "map", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1, err
    assert err[0].startswith("error: "), err
    for n in needles:
        assert n in err[0], err[0]
    return err[0]


def test_output_onto_the_bundle_is_refused(
    tmp_path: Path, bundle: Path, scene: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _hashes(tmp_path)
    _refused(capsys, [str(bundle), str(scene), "-o", str(bundle)], "ending in .tif")
    tif_bundle = tmp_path / "b.tif"  # a bundle named like a map: still an input
    os.link(bundle, tif_bundle)
    before = _hashes(tmp_path)
    _refused(
        capsys,
        [str(bundle), str(scene), "-o", str(tif_bundle), "--ensemble", str(tif_bundle)],
        "is an input",
    )
    assert _hashes(tmp_path) == before


def test_output_onto_a_vrt_source_is_refused(
    tmp_path: Path, bundle: Path, scene: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data.tif"
    scene.rename(data)
    vrt = tmp_path / "scene.vrt"
    with rasterio.open(data) as src:
        assert src.count == 4
    rasterio.shutil.copy(data, vrt, driver="VRT")
    before = _hashes(tmp_path)
    _refused(capsys, [str(bundle), str(vrt), "-o", str(data), *FAST], "is an input")
    assert _hashes(tmp_path) == before


def test_sidecar_that_is_the_scene_is_refused(
    tmp_path: Path, bundle: Path, scene: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "area.preview.png"
    with rasterio.open(scene) as src:
        rasterio.shutil.copy(src, png, driver="PNG")
    before = _hashes(tmp_path)
    _refused(capsys, [str(bundle), str(png), "-o", str(tmp_path / "area.tif")], "is an input")
    assert _hashes(tmp_path) == before


@pytest.mark.parametrize("name", ["m.tif", "m.qml", "m.areas.json", "m.tif.aux.xml"])
def test_a_users_file_at_any_output_name_is_refused_unless_overwrite(
    tmp_path: Path, bundle: Path, scene: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    (tmp_path / name).write_text("the user's own file")
    before = _hashes(tmp_path)
    _refused(
        capsys,
        [str(bundle), str(scene), "-o", str(tmp_path / "m.tif"), *FAST],
        name,
        "--overwrite",
    )
    assert _hashes(tmp_path) == before
    assert main(["-q", "map", str(bundle), str(scene), "-o", str(tmp_path / "m.tif"),
                 *FAST, "--overwrite"]) == 0  # fmt: skip
    assert (tmp_path / name).read_bytes() != b"the user's own file"


def test_a_label_raster_is_not_a_map(
    tmp_path: Path, bundle: Path, scene: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = tmp_path / "labels.tif"
    with rasterio.open(scene) as src:
        rasterio.shutil.copy(src, labels)  # a real GeoTIFF, not written by `landlearn map`
    before = _hashes(tmp_path)
    _refused(capsys, [str(bundle), str(scene), "-o", str(labels)], "not a map that landlearn")
    assert _hashes(tmp_path) == before


def test_an_earlier_map_is_replaced_as_a_group(tmp_path: Path, bundle: Path, scene: Path) -> None:
    out = tmp_path / "m.tif"
    assert main(["-q", "map", str(bundle), str(scene), "-o", str(out), *FAST]) == 0
    first = map_run_id(out)
    assert first
    assert stale_sidecars(out) == []
    assert main(["-q", "map", str(bundle), str(scene), "-o", str(out), *FAST]) == 0
    second = map_run_id(out)
    assert second
    assert second != first
    assert stale_sidecars(out) == []
    assert json.loads((tmp_path / "m.areas.json").read_text())["run_id"] == second
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_fifo_output_is_refused_without_opening_it(
    tmp_path: Path, bundle: Path, scene: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "out.tif"
    os.mkfifo(fifo)
    _refused(capsys, [str(bundle), str(scene), "-o", str(fifo)], "FIFO")
    assert fifo.exists()
    assert not fifo.is_file()


@pytest.mark.parametrize("where", ["under_a_file", "proc"])
def test_unwritable_output_fails_before_the_work(
    tmp_path: Path,
    bundle: Path,
    scene: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    import landlearn.mapping.scene as s

    def no_work(*a: object, **k: object) -> None:
        raise AssertionError("the map started before its output was checked")

    monkeypatch.setattr(s, "make_plan", no_work)
    if where == "under_a_file":
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "m.tif"
        needle = "is a file, not a folder"
    else:
        out = Path("/proc/landlearn-test/m.tif")
        needle = "cannot write"
    _refused(capsys, [str(bundle), str(scene), "-o", str(out)], needle)


# ---- kills at chosen moments (real subprocesses) ------------------------------------------------

_CHILD = """
import os, signal, sys, time
# A shell starts background jobs with SIGINT ignored, and Python keeps that: give the child the
# Ctrl-C a user's terminal gives, whoever runs the suite.
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, sys.argv[5])
import mapping_helpers  # noqa: F401  (registers the test models)
from pathlib import Path
flag, moment = Path(sys.argv[4]), sys.argv[6]
import landlearn.mapping.outputs as s
import landlearn.atomic as a
if moment == "preview":
    orig = s.write_preview
    def slow(*args, **kw):
        flag.write_text("x")
        time.sleep(30)
        return orig(*args, **kw)
    s.write_preview = slow
else:
    real = os.replace
    count = [0]
    def replace(src, dst):
        real(src, dst)
        count[0] += 1
        if count[0] == 1:
            flag.write_text("x")
            time.sleep(3)
    a.os.replace = replace
from landlearn.cli.main import main
sys.exit(main(["-q", "map", sys.argv[1], sys.argv[2], "-o", sys.argv[3],
               "--tile", "64", "--overlap", "16"]))
"""


def _run_and_kill(tmp_path: Path, bundle: Path, scene: Path, moment: str, sig: int) -> int:
    out, flag = tmp_path / "m.tif", tmp_path / "flag"
    flag.unlink(missing_ok=True)
    args = [str(bundle), str(scene), str(out), str(flag), HERE, moment]
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, *args], stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not flag.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert flag.exists(), proc.communicate()[1]
    time.sleep(0.2)
    os.kill(proc.pid, sig)
    code = proc.wait(timeout=60)
    flag.unlink()
    return code


def _first_map(tmp_path: Path, bundle: Path, scene: Path) -> dict[str, str]:
    assert main(["-q", "map", str(bundle), str(scene), "-o", str(tmp_path / "m.tif"), *FAST]) == 0
    return _hashes(tmp_path)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_while_the_preview_is_written_keeps_all_old_files(
    tmp_path: Path, bundle: Path, scene: Path, sig: int
) -> None:
    before = _first_map(tmp_path, bundle, scene)
    assert _run_and_kill(tmp_path, bundle, scene, "preview", sig) != 0
    assert _hashes(tmp_path) == before  # no temporary file left, every old file intact


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_between_the_renames_finishes_the_commit(
    tmp_path: Path, bundle: Path, scene: Path
) -> None:
    before = _first_map(tmp_path, bundle, scene)
    old_id = map_run_id(tmp_path / "m.tif")
    assert _run_and_kill(tmp_path, bundle, scene, "commit", signal.SIGTERM) == 130
    after = _hashes(tmp_path)
    assert set(after) == set(before)  # the same names, no temporary files
    new_id = map_run_id(tmp_path / "m.tif")
    assert new_id
    assert new_id != old_id
    assert stale_sidecars(tmp_path / "m.tif") == []  # every file is the new run's


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigkill_between_the_renames_is_detected_by_run_id(
    tmp_path: Path, bundle: Path, scene: Path
) -> None:
    _first_map(tmp_path, bundle, scene)
    old_id = map_run_id(tmp_path / "m.tif")
    assert _run_and_kill(tmp_path, bundle, scene, "commit", signal.SIGKILL) == -signal.SIGKILL
    assert map_run_id(tmp_path / "m.tif") == old_id  # the GeoTIFF is renamed last
    assert stale_sidecars(tmp_path / "m.tif") == [tmp_path / "m.areas.json"]
