"""Memory of a map is bounded by tile size × scene width, not by the scene's area (measured).

Each map runs in a fresh interpreter, so its peak resident memory (``VmHWM``) is its own. The
growth over the resident memory just before ``map_scene`` is compared between two scenes of the
same width and 8× different area, and with what a whole-scene probability accumulator (the
in-memory approach) would need.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from mapping_helpers import make_bundle
from rasterio.windows import Window

HERE = Path(__file__).resolve().parent

_CHILD = """
import json, sys
import matplotlib.figure, torch  # imported before the baseline: not part of the map
import mapping_helpers  # registers the test models
from landlearn.mapping import map_scene

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    raise KeyError(key)

torch.set_num_threads(1)
bundle, scene, out = sys.argv[1:4]
before = status("VmRSS")
res = map_scene(bundle, scene, out, tile=256, overlap=32, batch_size=4)
print(json.dumps({"before": before, "peak": status("VmHWM"), "windows": res.windows}))
"""


def _write_scene(path: Path, height: int, width: int) -> None:
    """A 4-band uint8 scene, written one block row at a time."""
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 4,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5100000.0),
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
    }
    xs = np.arange(width, dtype=np.float32)
    with rasterio.open(path, "w", **profile) as dst:
        for y in range(0, height, 256):
            ys = np.arange(y, y + 256, dtype=np.float32)[:, None]
            base = 100 + 80 * np.sin(ys / 97.0) * np.cos(xs / 131.0)
            rows = np.stack([base, base[::-1], 255 - base, 0.5 * base + 60])
            dst.write(rows.astype(np.uint8), window=Window(0, y, width, 256))


def _map_in_child(tmp_path: Path, bundle: Path, scene: Path) -> dict[str, int]:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    )
    out = tmp_path / f"{scene.stem}_map.tif"
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(bundle), str(scene), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    with rasterio.open(out) as m:
        assert m.overviews(1)
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
def test_peak_memory_does_not_grow_with_scene_area(tmp_path: Path) -> None:
    width, classes = 4096, 8
    short, tall = tmp_path / "short.tif", tmp_path / "tall.tif"
    _write_scene(short, 512, width)
    _write_scene(tall, 4096, width)
    bundle = make_bundle(tmp_path / "b.safetensors", num_classes=classes)
    growth = {}
    for scene in (short, tall):
        got = _map_in_child(tmp_path, bundle, scene)
        growth[scene.stem] = got["peak"] - got["before"]
    whole_scene = (classes + 1) * 4096 * width * 4  # float32 probabilities + weights, tall
    mib = {k: round(v / 2**20) for k, v in growth.items()}
    print(f"peak growth MiB {mib}; whole-scene accumulator {whole_scene / 2**20:.0f} MiB")
    # 8× the area costs (almost) nothing more, and far less than the in-memory approach
    assert growth["tall"] - growth["short"] < 0.1 * whole_scene
    assert growth["tall"] < 0.5 * whole_scene
