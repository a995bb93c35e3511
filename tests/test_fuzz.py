"""Property-based fuzzing of the CLI.

Property-based fuzzing of the CLI (issue #21): mutated bundle headers, GeoTIFF bytes, CSV
tables, YAML configs and pixel values give success or one line with exit 2, never a traceback,
and never change an input file. A bounded number of examples here; ``benchmarks/fuzz.py`` runs
many more and records its counts in RESULTS.md.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import fuzz_helpers as fz

EXAMPLES = int(os.environ.get("LANDLEARN_FUZZ_EXAMPLES", "12"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("LANDLEARN_FUZZ_RANDOM") is None,  # the suite is repeatable
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
OUTCOMES: Counter[str] = Counter()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    yield fz.make_world(tmp_path_factory.mktemp("fuzz"))
    counts = os.environ.get("LANDLEARN_FUZZ_COUNTS")  # benchmarks/fuzz.py reads them
    if counts:
        Path(counts).write_text(json.dumps(dict(OUTCOMES), indent=2, sort_keys=True))


def _guarded(world: dict[str, Path], case: str, args: list[str], *inputs: Path) -> None:
    """Run ``args``; the world's files and ``inputs`` (the mutated ones) must not change."""
    root = world["seg"].parent

    def snapshot() -> dict[str, str]:
        files = {k: v for k, v in fz.hashes(root).items() if not k.startswith("out")}
        files.update({str(p): fz.hashes(p.parent).get(p.name, "") for p in inputs})
        return files

    before = snapshot()
    code, err = fz.run(args)
    OUTCOMES[f"{case}:{fz.check_promise(code, err, case)}"] += 1
    after = snapshot()
    changed = [k for k in before if after.get(k) != before[k]]
    assert not changed, f"{case}: inputs changed: {changed}"


@FUZZ
@given(data=st.data())
def test_mutated_bundle_headers(world: dict[str, Path], data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(["seg", "cls"]))
    base, tensors = fz.header(world[kind])
    text = data.draw(fz.mutated_header(base))
    bad = fz.write_bundle(world["seg"].parent / "out" / f"bad_{kind}.safetensors", text, tensors)
    out = world["seg"].parent / "out"
    if kind == "seg":
        args = ["map", str(bad), str(world["scene"]), "-o", str(out / "m.tif"), "--tile", "32"]
        args += ["--overlap", "8", "--no-preview"]
    else:
        args = ["evaluate", str(bad), str(world["classes"])]
    _guarded(world, "header", args, bad)


@FUZZ
@given(data=st.data())
def test_mutated_geotiff_bytes(world: dict[str, Path], data: st.DataObject) -> None:
    raw = world["scene"].read_bytes()
    out = world["seg"].parent / "out"
    out.mkdir(exist_ok=True)
    bad = out / "bad_scene.tif"
    bad.write_bytes(data.draw(fz.mutated_bytes(raw)))
    if data.draw(st.booleans()):
        args = ["map", str(world["seg"]), str(bad), "-o", str(out / "m.tif"), "--tile", "32"]
        args += ["--overlap", "8", "--no-preview"]
    else:
        args = ["evaluate", str(world["seg"]), str(bad), str(world["labels"]), "--chip-size", "16"]
    _guarded(world, "geotiff", args, bad)


@FUZZ
@given(data=st.data())
def test_mutated_bundle_bytes(world: dict[str, Path], data: st.DataObject) -> None:
    out = world["seg"].parent / "out"
    out.mkdir(exist_ok=True)
    bad = out / "flipped.safetensors"
    bad.write_bytes(data.draw(fz.mutated_bytes(world["cls"].read_bytes())))
    _guarded(world, "bundle_bytes", ["evaluate", str(bad), str(world["classes"])], bad)


@FUZZ
@given(text=fz.CSV)
def test_mutated_class_tables(world: dict[str, Path], text: str) -> None:
    root = world["seg"].parent / "out" / "masks_case"
    if not root.exists():
        import numpy as np

        from tests.cli.conftest import write_mask_pair

        write_mask_pair(root, np.zeros((32, 32, 3), np.uint8))
    table = world["seg"].parent / "out" / "classes.csv"
    table.write_text(text, encoding="utf-8")
    args = ["evaluate", str(world["cls"]), str(root), "--classes-csv", str(table)]
    _guarded(world, "csv", args, table)


@settings(FUZZ, max_examples=max(3, EXAMPLES // 3))
@given(
    where=st.sampled_from(["trainer", "model", "data"]),
    key=st.sampled_from(["max_epochs", "lr", "batch_size", "devices", "patience", "x", "seed"]),
    value=fz.YAML_VALUE,
)
def test_mutated_fit_configs(world: dict[str, Path], where: str, key: str, value: str) -> None:
    root = world["seg"].parent / "out"
    root.mkdir(exist_ok=True)
    extra = {w: "" for w in ("trainer", "model", "data")}
    extra[where] = f", {key}: {value}"
    cfg = root / "fuzz.yaml"
    cfg.write_text(fz.fit_config(root, world["classes"], **extra))
    _guarded(world, "yaml", ["fit", "--config", str(cfg)], cfg)


@FUZZ
@given(seed=st.integers(0, 2**31 - 1))
def test_hostile_pixel_values(world: dict[str, Path], seed: int) -> None:
    import sys

    sys.path.insert(0, str(fz.MAPPING))
    import mapping_helpers as mh

    out = world["seg"].parent / "out"
    out.mkdir(exist_ok=True)
    scene = mh.write_tif(out / "hostile.tif", fz.random_scene_pixels(seed))
    args = ["map", str(world["seg"]), str(scene), "-o", str(out / "h.tif"), "--tile", "32"]
    _guarded(world, "pixels", [*args, "--overlap", "8", "--no-preview"], scene)
