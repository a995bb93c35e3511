"""Fuzzing the CLI with hostile inputs.

Fuzzing the CLI with hostile inputs (issue #21): shared by tests/test_fuzz.py and
benchmarks/fuzz.py.

Each case runs one ``landlearn`` command in-process on a mutated input and checks the promise:
success (exit 0) or one line ``error: ...`` with exit 2, never a traceback (any other exception
escapes ``main`` and fails the case), and no input file changed (hashes before and after).
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st

MAPPING = Path(__file__).resolve().parent / "mapping"

# any JSON value, small
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)


def hashes(folder: Path) -> dict[str, str]:
    """sha256 of every regular file under ``folder``."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def run(args: list[str]) -> tuple[int, str]:
    """``landlearn -q ARGS`` in-process; (exit code, stderr)."""
    from landlearn.cli.main import main

    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        code = main(["-q", *args])
    return code, err.getvalue()


def check_promise(code: int, err: str, what: str) -> str:
    """Exit 0, or exit 2 with exactly one ``error:`` line; returns ``ok`` or ``refused``."""
    if code == 0:
        return "ok"
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2, f"{what}: exit {code}: {err}"
    assert "Traceback" not in err, f"{what}: {err}"
    assert lines, f"{what}: {err}"
    assert lines[-1].startswith("error: "), f"{what}: {err}"
    assert len([ln for ln in lines if ln.startswith("error: ")]) == 1, f"{what}: {err}"
    return "refused"


# ---- the inputs ---------------------------------------------------------------------------------


def make_world(root: Path) -> dict[str, Path]:
    """The valid inputs that the fuzz cases mutate.

    A segmentation bundle (1×1 conv), a 4-band scene, a label raster, a class folder and a
    classification bundle: the valid inputs that the cases mutate.
    """
    if str(MAPPING) not in sys.path:
        sys.path.insert(0, str(MAPPING))
    import mapping_helpers as mh

    import tests.cli.conftest as cc

    (root / "out").mkdir(parents=True, exist_ok=True)
    seg = mh.make_bundle(root / "seg.safetensors")
    scene = mh.write_tif(root / "scene.tif", mh.smooth_scene(48, 40))
    labels = cc.write_tif(root / "labels.tif", bands=1, size=48)
    import torch

    from landlearn.bundle import BundleMeta, save_bundle
    from landlearn.models import build_model

    torch.manual_seed(0)
    meta = BundleMeta(
        task="classification", model_name="small_cnn", model_kwargs={},
        band_names=["red", "green", "blue"], mean=[100.0] * 3, std=[50.0] * 3,
        class_names=["water", "forest"], class_colors=[[0, 0, 255], [0, 128, 0]], chip_size=32,
    )  # fmt: skip
    cls = save_bundle(root / "cls.safetensors", build_model("small_cnn", in_channels=3,
                      num_classes=2), meta)  # fmt: skip
    folder = root / "classes"
    for name in ("water", "forest"):
        for i in range(2):
            cc.write_png(folder / name / f"{i}.png", seed=i)
    return {"seg": seg, "scene": scene, "labels": labels, "cls": cls, "classes": folder}


def header(bundle: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the ``landlearn`` JSON of a bundle, its tensors)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(bundle), framework="pt") as f:
        meta = json.loads((f.metadata() or {})["landlearn"])
    return meta, load_file(str(bundle))


def write_bundle(path: Path, meta_text: str, tensors: dict[str, Any]) -> Path:
    """A safetensors file with ``meta_text`` as its ``landlearn`` header."""
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata={"landlearn": meta_text})
    return path


@st.composite
def mutated_header(draw: Callable[..., Any], base: dict[str, Any]) -> str:
    """``base`` with a few keys replaced by random JSON, deleted or added; or a non-dict."""
    if draw(st.integers(0, 9)) == 0:
        return json.dumps(draw(JSON))
    meta = dict(base)
    keys = sorted(meta)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["replace", "delete", "add", "tweak"]))
        key = draw(st.sampled_from(keys))
        if op == "replace":
            meta[key] = draw(JSON)
        elif op == "delete":
            meta.pop(key, None)
        elif op == "add":
            meta[draw(st.text(max_size=8))] = draw(JSON)
        elif isinstance(meta.get(key), list) and meta[key]:
            items = list(meta[key])
            items[draw(st.integers(0, len(items) - 1))] = draw(JSON)
            meta[key] = items[: draw(st.integers(0, len(items)))] if draw(st.booleans()) else items
        elif isinstance(meta.get(key), int | float) and not isinstance(meta.get(key), bool):
            meta[key] = draw(st.sampled_from([0, -1, 10**9, 0.5, float("nan"), float("inf")]))
    return json.dumps(meta)


@st.composite
def mutated_bytes(draw: Callable[..., Any], data: bytes) -> bytes:
    """``data`` truncated, bit-flipped or with a slice overwritten."""
    out = bytearray(data)
    op = draw(st.sampled_from(["truncate", "flip", "overwrite"]))
    if op == "truncate":
        return bytes(out[: draw(st.integers(0, len(out) - 1))])
    for _ in range(draw(st.integers(1, 16))):
        i = draw(st.integers(0, len(out) - 1))
        if op == "flip":
            out[i] ^= 1 << draw(st.integers(0, 7))
        else:
            out[i] = draw(st.integers(0, 255))
    return bytes(out)


CSV_ROW = st.lists(
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=8), max_size=5
).map(lambda cells: ",".join(cells))
CSV = st.lists(CSV_ROW, max_size=6).map(lambda rows: "\n".join(rows))

YAML_VALUE = st.one_of(
    JSON.map(json.dumps),
    st.sampled_from(["-3", "0", "1e309", "gpu", "[1, 2]", "{a: 1}", "~", "'x'", "99", "&a x"]),
)


def fit_config(root: Path, classes: Path, trainer: str, model: str, data: str) -> str:
    """A tiny classification ``fit`` config with three places for mutated values."""
    return f"""
trainer: {{fast_dev_run: 1, accelerator: cpu, default_root_dir: {root / "runs"}{trainer}}}
model:
  class_path: landlearn.tasks.ClassificationTask
  init_args: {{model: small_cnn, loss: ce{model}}}
data:
  class_path: landlearn.data.datamodules.ImageFolderDataModule
  init_args: {{root: {classes}, batch_size: 2, val_fraction: 0.25, test_fraction: 0.25{data}}}
"""


def random_scene_pixels(seed: int) -> np.ndarray:
    """Float32 pixels with NaN, inf and huge values mixed in (4 × 48 × 40)."""
    rng = np.random.default_rng(seed)
    data = rng.normal(100, 50, (4, 48, 40)).astype(np.float32)
    special = np.array([np.nan, np.inf, -np.inf, 3e38, -3e38, 0.0], np.float32)
    mask = rng.random(data.shape) < rng.random() * 0.3
    data[mask] = rng.choice(special, int(mask.sum()))
    return data
