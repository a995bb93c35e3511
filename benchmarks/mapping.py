"""Benchmark of ``landlearn map`` (issue #8): throughput and memory, as ratios.

On generated 4-band scenes (``--sizes``, default 2048² and 16384²) with a U-Net bundle (random
weights; speed and memory do not depend on them), in one run:

1. map throughput ÷ the same model's pure forward throughput (random windows already in memory,
   no I/O, no blending) — goal ≥ 0.85;
2. peak RSS of the map at the largest size ÷ at the smallest — goal ≤ 1.3, and ≤ 2 GB;
3. against a straightforward in-memory baseline (whole scene read, whole-scene probability
   accumulator, as the peers do): speed ratio and memory ratio.

Each measurement runs in its own interpreter so its peak RSS (``VmHWM``) is its own. The pure
forward pass is timed on at most ``--forward-windows`` windows (a rate). On a CPU the U-Net
ResNet-18 at 16384² takes long; ``--model``/``--encoder``/``--sizes`` pick a smaller run, and the
results name what was run. Results are printed and appended to ``--out``.

    python benchmarks/mapping.py --sizes 2048 16384 --device cuda
    python benchmarks/mapping.py --sizes 512 1024 --encoder resnet18 --tile 256   # quick CPU
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _vm(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    return 0


def _child(argv: list[str]) -> None:
    """One measurement in this (fresh) process; prints a JSON line."""
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["map", "forward", "baseline"])
    p.add_argument("bundle")
    p.add_argument("scene")
    p.add_argument("--out")
    p.add_argument("--tile", type=int)
    p.add_argument("--overlap", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--device")
    p.add_argument("--forward-windows", type=int)
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    if a.mode == "map":
        from landlearn.mapping import map_scene

        res = map_scene(
            a.bundle, a.scene, a.out, tile=a.tile, overlap=a.overlap,
            batch_size=a.batch_size, device=a.device, preview=False,
        )  # fmt: skip
        n = res.windows
    elif a.mode == "forward":
        n = _forward(a)
    else:
        n = _baseline(a)
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "windows": n, "peak_rss": _vm("VmHWM")}))


def _grid(a: argparse.Namespace) -> Any:
    import rasterio

    from landlearn.mapping.blend import TileGrid

    with rasterio.open(a.scene) as src:
        return TileGrid.build(src.height, src.width, a.tile, a.overlap, 32)


def _forward(a: argparse.Namespace) -> int:
    """Pure model throughput on windows already in memory; returns windows timed."""
    import torch

    from landlearn.bundle import load_bundle

    pred = load_bundle(a.bundle, device=a.device)
    cuda = pred.device.type == "cuda"
    if cuda:
        pred.model.to(memory_format=torch.channels_last)
    g = _grid(a)
    n = min(len(g), a.forward_windows)
    x = torch.rand(a.batch_size, 4, g.tile_h, g.tile_w) * 200
    ctx = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if cuda
        else torch.autocast("cpu", enabled=False)
    )
    with torch.inference_mode(), ctx:
        pred.probs_from_logits(pred.model(pred.normalize(x[:1])))  # warm-up
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        done = 0
        while done < n:
            xb = pred.normalize(x[: min(a.batch_size, n - done)])
            if cuda:
                xb = xb.contiguous(memory_format=torch.channels_last)
            pred.probs_from_logits(pred.model(xb)).float().cpu()
            done += xb.shape[0]
        if cuda:
            torch.cuda.synchronize()
    print(json.dumps({"forward_seconds": time.perf_counter() - t0}), flush=True)
    return n


def _baseline(a: argparse.Namespace) -> int:
    """What peers do: whole scene in memory, whole-scene probability accumulator."""
    import numpy as np
    import rasterio
    import torch

    from landlearn.bundle import load_bundle
    from landlearn.mapping.blend import weight_window

    pred = load_bundle(a.bundle, device=a.device)
    g = _grid(a)
    with rasterio.open(a.scene) as src:
        img, profile = src.read(out_dtype="float32"), src.profile
    m = g.margin
    hp, wp = g.y0(g.rows - 1) + g.tile_h + m, g.x0(g.cols - 1) + g.tile_w + m
    img = np.pad(img, ((0, 0), (m, hp - g.height - m), (m, wp - g.width - m)), mode="reflect")
    k = pred.meta.num_classes
    acc = np.zeros((k, hp, wp), np.float32)
    wsum = np.zeros((hp, wp), np.float32)
    w = weight_window(g.tile_h, g.tile_w, g.overlap, "cosine")
    spots = [(r * g.stride_y, c * g.stride_x) for r in range(g.rows) for c in range(g.cols)]
    for i in range(0, len(spots), a.batch_size):
        part = spots[i : i + a.batch_size]
        x = np.stack([img[:, y : y + g.tile_h, x : x + g.tile_w] for y, x in part])
        with torch.inference_mode():
            p = pred.predict_proba(torch.from_numpy(x)).float().cpu().numpy()
        for (y, x0), pk in zip(part, p, strict=True):
            acc[:, y : y + g.tile_h, x0 : x0 + g.tile_w] += pk * w
            wsum[y : y + g.tile_h, x0 : x0 + g.tile_w] += w
    probs = acc[:, m : m + g.height, m : m + g.width] / wsum[m : m + g.height, m : m + g.width]
    cls = probs.argmax(0).astype(np.uint8)
    profile.update(count=1, dtype="uint8", nodata=255, compress="deflate")
    with rasterio.open(a.out, "w", **profile) as dst:
        dst.write(cls, 1)
    return len(spots)


def _run_child(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{proc.stderr[-3000:]}")
    out: dict[str, Any] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            out.update(json.loads(line))
    return out


def _make_inputs(work: Path, size: int, a: argparse.Namespace) -> tuple[Path, Path]:
    from landlearn.bundle import BundleMeta, save_bundle
    from landlearn.data.synthetic import band_names, write_scene
    from landlearn.models import build_model

    scene = work / f"scene_{size}.tif"
    if not scene.exists():
        write_scene(scene, work / f"labels_{size}.tif", size, size, bands=4, seed=0)
    bundle = work / "bundle.safetensors"
    if not bundle.exists():
        kwargs = {"encoder": a.encoder} if a.encoder else {}
        model = build_model(a.model, in_channels=4, num_classes=a.classes, **kwargs)
        meta = BundleMeta(
            task="segmentation", model_name=a.model, model_kwargs=kwargs,
            band_names=band_names(4), mean=[0.1] * 4, std=[0.05] * 4,
            class_names=[f"class_{i}" for i in range(a.classes)],
        )  # fmt: skip
        save_bundle(bundle, model, meta)
    return scene, bundle


def main() -> None:
    """Parse options, run the measurements, print and record the ratios."""
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2:])
        return
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[2048, 16384])
    p.add_argument("--device", default="cpu")
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--overlap", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--model", default="unet")
    p.add_argument("--encoder", default="resnet18")
    p.add_argument("--classes", type=int, default=6)
    p.add_argument("--forward-windows", type=int, default=64)
    p.add_argument("--no-baseline", action="store_true", help="skip the in-memory baseline")
    p.add_argument("--workdir", type=Path, default=None, help="keep scenes here (default: tmp)")
    p.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = a.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows = [_measure(work, size, a) for size in sorted(a.sizes)]
    _report(rows, a)


def _measure(work: Path, size: int, a: argparse.Namespace) -> dict[str, Any]:
    scene, bundle = _make_inputs(work, size, a)
    common = [str(bundle), str(scene), "--tile", str(a.tile), "--overlap", str(a.overlap),
              "--batch-size", str(a.batch_size), "--device", a.device,
              "--forward-windows", str(a.forward_windows)]  # fmt: skip
    row: dict[str, Any] = {"size": size}
    mapped = _run_child(["map", *common, "--out", str(work / f"map_{size}.tif")])
    fwd = _run_child(["forward", *common])
    row["windows"] = mapped["windows"]
    row["map_wps"] = mapped["windows"] / mapped["seconds"]
    row["forward_wps"] = fwd["windows"] / fwd["forward_seconds"]
    row["map_rss"] = mapped["peak_rss"]
    if not a.no_baseline:
        base = _run_child(["baseline", *common, "--out", str(work / f"base_{size}.tif")])
        row["base_wps"] = base["windows"] / base["seconds"]
        row["base_rss"] = base["peak_rss"]
    print(json.dumps(row), flush=True)
    return row


def _report(rows: list[dict[str, Any]], a: argparse.Namespace) -> None:
    gib = 2**30
    lines = [
        f"## mapping — {dt.datetime.now():%Y-%m-%d %H:%M}",
        "",
        f"Machine: {platform.node()} · {platform.processor() or platform.machine()} · "
        f"{os.cpu_count()} CPUs · device {a.device} · Python {platform.python_version()}",
        f"Run: `python benchmarks/mapping.py {' '.join(sys.argv[1:])}` — model {a.model} "
        f"({a.encoder}), {a.classes} classes, tile {a.tile}, overlap {a.overlap}, "
        f"batch {a.batch_size}; forward rate over ≤ {a.forward_windows} windows.",
        "",
        "| size | windows | map win/s | forward win/s | map ÷ forward (goal ≥ 0.85) "
        "| map peak RSS | baseline win/s | baseline peak RSS | map ÷ baseline speed "
        "| baseline ÷ map memory |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        base = (
            f"{r['base_wps']:.2f} | {r['base_rss'] / gib:.2f} GiB | "
            f"{r['map_wps'] / r['base_wps']:.2f} | {r['base_rss'] / r['map_rss']:.2f}"
            if "base_wps" in r
            else "– | – | – | –"
        )
        lines.append(
            f"| {r['size']}² | {r['windows']} | {r['map_wps']:.2f} | {r['forward_wps']:.2f} | "
            f"{r['map_wps'] / r['forward_wps']:.2f} | {r['map_rss'] / gib:.2f} GiB | {base} |"
        )
    if len(rows) > 1:
        lo, hi = rows[0], rows[-1]
        ratio = hi["map_rss"] / lo["map_rss"]
        lines += [
            "",
            f"Peak RSS {hi['size']}² ÷ {lo['size']}²: **{ratio:.2f}** (goal ≤ 1.3); "
            f"largest {hi['map_rss'] / gib:.2f} GiB (goal ≤ 2 GB).",
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(a.out, "a", encoding="utf-8") as f:
        f.write("\n" + text)


if __name__ == "__main__":
    main()
