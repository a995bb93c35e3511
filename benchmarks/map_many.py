"""Benchmark of ``landlearn.map_many`` (issue #20): scenes/s on Ray, Ray's overhead, big scenes.

Bundles have random weights (speed and memory do not depend on them); the model is named in
the output. Scenes are generated once into ``--work`` (tiled, deflate-compressed 4-band uint8
GeoTIFFs in EPSG:32633 with smooth content; a 50,000² one is written strip by strip, never
whole in memory) and reused by every row and every re-run.

1. ``--scenes`` scenes of ``--scene-size``² (default 8 × 4096², model ``--model``): scenes/s with
   ``--engine local`` (this process, 1 torch thread), Ray with 1 worker and with 2 workers (1
   thread each). Ratio ray-2 ÷ ray-1 (goal ≥ 1.8) and Ray's overhead, ray-1 time ÷ local time
   − 1 (goal ≤ 10 %). ``ray.init`` is timed on its own and left out of the map time; the map
   time (``ManyResult.seconds``) includes starting the actors and loading the bundle in them
   ("workers up", also given, and the rate without it).
2. One scene per ``--big-sizes`` (default 16,384² and 50,000², model ``--big-model``) in blocks of
   ``--block`` on Ray with 2 workers: total time and each worker's peak RSS, read as
   ``VmHWM`` of ``/proc/<pid>/status`` just before the actors are stopped (each actor reports
   its pid through ``Worker.ping``), so the peak covers every block and the final join. Beside
   it the one-piece map of the same scene (``engine="local"``, ``block`` = the scene's size,
   ``--one-piece-threads`` torch threads: the same cores) with its time and peak RSS. Goal:
   ≤ 2 GB per worker, independent of scene size.
3. With ``--device cuda`` only: 2 actors on 1 GPU (0.5 GPU each) on row 1's scenes: scenes/s and
   the map's windows/s ÷ the model's pure forward windows/s on that GPU.

Each measurement runs in its own interpreter, so its peak RSS is its own.

    python benchmarks/map_many.py --md benchmarks/out/map_many.md --json out/map_many.json
    python benchmarks/map_many.py --quick     # 2 × 1024², big 2048² and 4096² in blocks of 1024
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
GIB = 2**30

MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "unet-resnet18": ("smp U-Net, ResNet-18 encoder", {"encoder": "resnet18"}),
    "unet-mobilenetv3s-d3": (
        "smp U-Net, timm MobileNetV3-Small 0.5 encoder, depth 3, decoder 32/16/8",
        {
            "encoder": "tu-mobilenetv3_small_050",
            "encoder_depth": 3,
            "decoder_channels": [32, 16, 8],
        },
    ),
}
FULL = {"scenes": 8, "scene_size": 4096, "big_sizes": [16384, 50000], "block": 8192,
        "model": "unet-resnet18", "big_model": "unet-mobilenetv3s-d3"}  # fmt: skip
QUICK = {"scenes": 2, "scene_size": 1024, "big_sizes": [2048, 4096], "block": 1024,
         "model": "unet-mobilenetv3s-d3", "big_model": "unet-mobilenetv3s-d3"}  # fmt: skip
CLASSES = 6


# ---- measurements, each in a fresh interpreter ----------------------------------------------
def _hwm(pid: int | str = "self") -> int:
    """Peak resident set (``VmHWM``) of a process, in bytes; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _child(argv: list[str]) -> None:
    """One ``map_many`` run (or the pure forward rate); prints one JSON line."""
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["many", "forward"])
    p.add_argument("bundle")
    p.add_argument("out_dir")
    p.add_argument("scenes", nargs="+")
    p.add_argument("--engine", default="local")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--gpus-per-worker", type=float, default=0.0)
    p.add_argument("--block", type=int, default=8192)
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--overlap", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)  # the local engine's torch (Ray workers set their own)
    if a.mode == "forward":
        print(json.dumps(_forward(a)))
        return
    from landlearn.scale import engines, many

    stats: dict[str, Any] = {"ray_init_s": 0.0}

    class MeasuredRay(engines.RayEngine):
        """Times the actors' start; reads each actor's peak RSS before stopping it."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            t0 = time.perf_counter()
            super().__init__(*args, **kwargs)
            stats["workers_up_s"] = time.perf_counter() - t0

        def close(self) -> None:
            try:  # the actors are still up: ask each its pid, read its peak from /proc
                pids = self.ray.get([w.ping.remote() for w in self._idle], timeout=120)
                stats["worker_pids"] = pids
                stats["worker_peak_rss"] = [_hwm(pid) for pid in pids]
            finally:
                super().close()

    class MeasuredWorker(engines.Worker):
        """The local engine's worker: times loading the bundle."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            t0 = time.perf_counter()
            super().__init__(*args, **kwargs)
            stats["workers_up_s"] = time.perf_counter() - t0

    many.RayEngine, many.Worker = MeasuredRay, MeasuredWorker  # type: ignore[misc]
    if a.engine == "ray":
        ray = engines.import_ray()
        t0 = time.perf_counter()  # map_many reuses this Ray (and leaves it running)
        ray.init(num_cpus=a.workers * a.threads, include_dashboard=False, log_to_driver=False)
        stats["ray_init_s"] = time.perf_counter() - t0
    shutil.rmtree(a.out_dir, ignore_errors=True)  # else the manifest skips finished scenes

    def progress(pr: many.ManyProgress) -> None:
        print(f"  {pr.scenes_done}/{pr.scenes_total} scenes, {pr.windows} windows, "
              f"{pr.seconds:.0f} s", file=sys.stderr, flush=True)  # fmt: skip

    res = many.map_many(
        a.bundle, a.scenes, a.out_dir, engine=a.engine, workers=a.workers, threads=a.threads,
        gpus_per_worker=a.gpus_per_worker, block=a.block, tile=a.tile, overlap=a.overlap,
        batch_size=a.batch_size, device=a.device, preview=False, retries=0, progress=progress,
    )  # fmt: skip
    if a.engine == "ray":
        engines.import_ray().shutdown()
    if res.failed or len(res.done) != len(a.scenes):
        raise SystemExit(f"not every scene was mapped: {res.failed}")
    out_bytes = sum(f.stat().st_size for f in Path(a.out_dir).rglob("*") if f.is_file())
    print(json.dumps({**stats, "seconds": res.seconds, "windows": res.windows,
                      "scenes": len(res.done), "driver_peak_rss": _hwm(),
                      "out_bytes": out_bytes}))  # fmt: skip


def _forward(a: argparse.Namespace) -> dict[str, Any]:
    """The model's pure windows/s: random windows already on the device, no I/O, no blending."""
    import torch

    from landlearn.bundle import load_bundle

    pred = load_bundle(a.bundle, device=a.device)
    x = torch.rand(a.batch_size, len(pred.meta.band_names), a.tile, a.tile) * 200
    x = x.to(pred.device)
    cuda = pred.device.type == "cuda"
    with torch.inference_mode():
        for _ in range(2):  # warm-up (cuDNN autotune)
            pred.predict_proba(x)
        if cuda:
            torch.cuda.synchronize()
        t0, n = time.perf_counter(), 0
        while n < 64 or time.perf_counter() - t0 < 5.0:
            pred.predict_proba(x).float().cpu()
            n += a.batch_size
        if cuda:
            torch.cuda.synchronize()
    return {"forward_wps": n / (time.perf_counter() - t0)}


def _run_child(label: str, args: list[str]) -> dict[str, Any]:
    print(f"· {label}", flush=True)
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args], stdout=subprocess.PIPE, text=True,
        check=False,
    )  # fmt: skip  # stderr passes through: progress of long maps
    if proc.returncode != 0:
        raise SystemExit(f"measurement {args[0]} failed (exit {proc.returncode}); see above")
    out: dict[str, Any] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            out.update(json.loads(line))
    return out


# ---- inputs, generated once ------------------------------------------------------------------
def _scene_ok(path: Path, size: int, bands: int) -> bool:
    if not path.is_file():
        return False
    import rasterio

    try:
        with rasterio.open(path) as src:
            alpha = rasterio.enums.ColorInterp.alpha in src.colorinterp
            shape = (src.height, src.width, src.count, src.dtypes[0])
            return shape == (size, size, bands, "uint8") and not alpha
    except rasterio.errors.RasterioError:
        return False


def write_scene(path: Path, size: int, bands: int, seed: int, origin: tuple[float, float]) -> Path:
    """A smooth ``size``² uint8 scene, written in strips of 512 rows (bounded memory)."""
    if _scene_ok(path, size, bands):
        return path
    import numpy as np
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    from landlearn.data.synthetic import band_names

    rng = np.random.default_rng([seed, size])
    # per band: sums of separable waves at three scales (fields, patches, texture)
    terms = [
        [(rng.uniform(lo, 3 * lo), rng.uniform(lo, 3 * lo), amp, *rng.uniform(0, 2 * np.pi, 2))
         for lo, amp in ((1500.0, 45.0), (200.0, 30.0), (12.0, 10.0))]
        for _ in range(bands)
    ]  # fmt: skip
    profile = {
        "driver": "GTiff", "dtype": "uint8", "count": bands, "height": size, "width": size,
        "crs": "EPSG:32633", "transform": Affine(10.0, 0.0, origin[0], 0.0, -10.0, origin[1]),
        "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate",
        "predictor": 2, "photometric": "MINISBLACK", "BIGTIFF": "IF_SAFER",
        "NUM_THREADS": "ALL_CPUS",
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    xs = np.arange(size, dtype=np.float32)
    t0, strips, step = time.perf_counter(), math.ceil(size / 512), max(1, math.ceil(size / 5120))
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.descriptions = tuple(band_names(bands))
        for i, row in enumerate(range(0, size, 512)):
            ys = np.arange(row, min(row + 512, size), dtype=np.float32)
            strip = np.empty((bands, len(ys), size), np.uint8)  # (C, h, W)
            for b, waves in enumerate(terms):
                acc = np.full((len(ys), size), 128.0, np.float32)
                for px, py, amp, fx, fy in waves:
                    wy = (amp * np.cos(2 * np.pi * ys / py + fy)).astype(np.float32)
                    acc += np.outer(wy, np.sin(2 * np.pi * xs / px + fx).astype(np.float32))
                strip[b] = np.clip(acc, 0, 255)
            dst.write(strip, window=Window(0, row, size, len(ys)))
            if size >= 8192 and (i + 1) % step == 0:
                print(f"  {path.name}: {i + 1}/{strips} strips, {time.perf_counter() - t0:.0f} s",
                      flush=True)  # fmt: skip
    os.replace(tmp, path)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.0f} MiB, "
          f"{time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
    return path


def make_bundle(work: Path, preset: str, bands: int) -> Path:
    """A bundle of ``MODELS[preset]`` with seeded random weights."""
    path = work / f"bundle_{preset}.safetensors"
    if path.is_file():
        return path
    import torch

    from landlearn.bundle import BundleMeta, save_bundle
    from landlearn.data.synthetic import band_names
    from landlearn.models import build_model

    torch.manual_seed(0)
    kwargs = MODELS[preset][1]
    model = build_model("unet", in_channels=bands, num_classes=CLASSES, **kwargs)
    meta = BundleMeta(
        task="segmentation", model_name="unet", model_kwargs=kwargs,
        band_names=band_names(bands), mean=[100.0] * bands, std=[50.0] * bands,
        class_names=[f"class_{i}" for i in range(CLASSES)],
    )  # fmt: skip
    return save_bundle(path, model, meta)


# ---- rows --------------------------------------------------------------------------------------
def _common_args(a: argparse.Namespace, batch: int | None = None) -> list[str]:
    return ["--tile", str(a.tile), "--overlap", str(a.overlap),
            "--batch-size", str(batch or a.batch_size)]  # fmt: skip


def _rate(r: dict[str, Any]) -> dict[str, Any]:
    up = r.get("workers_up_s", 0.0)
    return {**r, "scenes_per_s": r["scenes"] / r["seconds"],
            "scenes_per_s_after_up": r["scenes"] / max(r["seconds"] - up, 1e-9)}  # fmt: skip


def _row1_scenes(a: argparse.Namespace, work: Path) -> list[str]:
    """Row 1's scenes, side by side in rows of 4 (so their mosaic is one picture)."""
    size = a.scene_size
    return [
        str(write_scene(work / f"scene{size}_{i}.tif", size, a.bands, i,
                        (500000.0 + (i % 4) * size * 10.0, 5100000.0 - (i // 4) * size * 10.0)))
        for i in range(a.scenes)
    ]  # fmt: skip


def row_scenes(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Row 1: local, Ray 1 worker, Ray 2 workers on the same scenes."""
    size = a.scene_size
    scenes = _row1_scenes(a, work)
    bundle = str(make_bundle(work, a.model, a.bands))
    out = str(work / "out_scenes")
    common = [*_common_args(a), "--block", str(max(a.block, size)), "--threads", "1"]
    runs = {}
    for name, extra in (("local", ["--engine", "local"]),
                        ("ray-1", ["--engine", "ray", "--workers", "1"]),
                        ("ray-2", ["--engine", "ray", "--workers", "2"])):  # fmt: skip
        label = f"{a.scenes} × {size}², {name}"
        runs[name] = _rate(_run_child(label, ["many", bundle, out, *scenes, *common, *extra]))
        print(json.dumps({name: runs[name]}), flush=True)
    shutil.rmtree(out, ignore_errors=True)
    loc, r1, r2 = runs["local"], runs["ray-1"], runs["ray-2"]
    ratios = {
        "ray2_over_ray1": r2["scenes_per_s"] / r1["scenes_per_s"],
        "ray1_overhead": r1["seconds"] / loc["seconds"] - 1,
        "ray2_over_ray1_after_up": r2["scenes_per_s_after_up"] / r1["scenes_per_s_after_up"],
        "ray1_overhead_after_up": (r1["seconds"] - r1["workers_up_s"])
        / (loc["seconds"] - loc["workers_up_s"])
        - 1,
    }
    return {"scenes": a.scenes, "size": size, "model": a.model, "runs": runs, "ratios": ratios}


def row_big(a: argparse.Namespace, work: Path, size: int) -> dict[str, Any]:
    """Row 2: one big scene in blocks on 2 Ray workers, and the one-piece map beside it."""
    scene = str(write_scene(work / f"big{size}.tif", size, a.bands, 100, (500000.0, 5100000.0)))
    bundle = str(make_bundle(work, a.big_model, a.bands))
    out = str(work / "out_big")
    common = [bundle, out, scene, *_common_args(a)]
    ray = ["--engine", "ray", "--workers", "2", "--threads", "1", "--block", str(a.block)]
    blocked = _run_child(f"{size}², blocks of {a.block}, Ray 2 workers", ["many", *common, *ray])
    print(json.dumps({"blocked": blocked}), flush=True)
    local = ["--engine", "local", "--threads", str(a.one_piece_threads), "--block", str(size)]
    one = _run_child(f"{size}², one piece", ["many", *common, *local])
    print(json.dumps({"one_piece": one}), flush=True)
    shutil.rmtree(out, ignore_errors=True)
    n = math.ceil(size / a.block)
    return {"size": size, "block": a.block, "blocks": n * n, "model": a.big_model,
            "blocked": blocked, "one_piece": one,
            "blocked_over_one_piece_time": blocked["seconds"] / one["seconds"]}  # fmt: skip


def row_gpu(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Row 3: 2 actors sharing 1 GPU; windows/s ÷ the pure forward windows/s."""
    size = a.scene_size
    scenes = _row1_scenes(a, work)
    bundle = str(make_bundle(work, a.model, a.bands))
    out = str(work / "out_gpu")
    gpu = [*_common_args(a, a.gpu_batch_size), "--device", "cuda"]
    fwd = _run_child("GPU pure forward", ["forward", bundle, out, scenes[0], *gpu])
    ray = ["--engine", "ray", "--workers", "2", "--threads", str(a.gpu_threads),
           "--gpus-per-worker", "0.5", "--block", str(max(a.block, size))]  # fmt: skip
    run = _rate(_run_child("GPU, 2 actors on 1 GPU", ["many", bundle, out, *scenes, *gpu, *ray]))
    shutil.rmtree(out, ignore_errors=True)
    map_wps = run["windows"] / (run["seconds"] - run["workers_up_s"])
    return {**run, "forward_wps": fwd["forward_wps"], "map_wps_after_up": map_wps,
            "fraction_of_forward": map_wps / fwd["forward_wps"]}  # fmt: skip


# ---- report ------------------------------------------------------------------------------------
def _gib(values: list[int]) -> str:
    return " / ".join(f"{v / GIB:.2f}" for v in values) if values else "–"


def _md_scenes(s: dict[str, Any], table: Any) -> list[str]:
    cols = ["engine", "map s", "scenes/s", "ray.init s", "workers up s",
            "scenes/s after up", "worker peak RSS GiB", "driver peak RSS GiB"]  # fmt: skip
    rows = [[name, r["seconds"], r["scenes_per_s"], r["ray_init_s"], r["workers_up_s"],
             r["scenes_per_s_after_up"], _gib(r.get("worker_peak_rss", [])),
             r["driver_peak_rss"] / GIB] for name, r in s["runs"].items()]  # fmt: skip
    q = s["ratios"]
    return [f"{s['scenes']} scenes of {s['size']}², model {MODELS[s['model']][0]}:", "",
            table(cols, rows), "",
            f"Ray 2 workers ÷ 1 worker: **{q['ray2_over_ray1']:.2f}×** (goal ≥ 1.8; "
            f"{q['ray2_over_ray1_after_up']:.2f}× once workers are up). Ray overhead, "
            f"ray-1 ÷ local − 1: **{100 * q['ray1_overhead']:.1f} %** (goal ≤ 10 %; "
            f"{100 * q['ray1_overhead_after_up']:.1f} % once workers are up).", ""]  # fmt: skip


def _md_big(big: list[dict[str, Any]], threads: int, table: Any) -> list[str]:
    cols = ["scene", "blocks", "blocked map s (Ray, 2 workers)", "peak RSS per worker GiB",
            "one-piece map s", "one-piece peak RSS GiB", "blocked ÷ one-piece time"]  # fmt: skip
    rows = [[f"{b['size']:,}²", f"{b['blocks']} of {b['block']}²", b["blocked"]["seconds"],
             _gib(b["blocked"]["worker_peak_rss"]), b["one_piece"]["seconds"],
             b["one_piece"]["driver_peak_rss"] / GIB, b["blocked_over_one_piece_time"]]
            for b in big]  # fmt: skip
    head = f"Big scenes, model {MODELS[big[0]['model']][0]}; the one-piece map runs "
    lines = [f'{head}`engine="local"` with {threads} torch thread(s):', "", table(cols, rows), ""]
    if len(big) > 1:
        lo, hi = big[0], big[-1]
        ratio = max(hi["blocked"]["worker_peak_rss"]) / max(lo["blocked"]["worker_peak_rss"])
        lines += [f"Largest worker peak RSS {hi['size']:,}² ÷ {lo['size']:,}²: **{ratio:.2f}** "
                  "(goal ≈ 1, each ≤ 2 GB).", ""]  # fmt: skip
    return lines


def _markdown(rec: dict[str, Any], machine_md: str, table: Any) -> str:
    a = rec["settings"]
    lines = ["### map_many: many scenes on Ray, big scenes in blocks", "", machine_md, "",
             f"Bundles with random weights, {CLASSES} classes; scenes {a['bands']}-band uint8, "
             f"deflate; tile {a['tile']}, overlap {a['overlap']}, batch {a['batch_size']}. "
             "Map s = `ManyResult.seconds`: starting the actors and loading the bundle in "
             "them (workers up) included, `ray.init` not. Worker peak RSS: `VmHWM` of each "
             "actor's process at the end of the run.", ""]  # fmt: skip
    if "scenes" in rec:
        lines += _md_scenes(rec["scenes"], table)
    if rec["big"]:
        lines += _md_big(rec["big"], a["one_piece_threads"], table)
    g = rec.get("gpu")
    if g:
        lines += [f"GPU, 2 actors on 1 GPU: {g['scenes_per_s']:.3f} scenes/s "
                  f"({g['scenes_per_s_after_up']:.3f} once workers are up); "
                  f"{g['map_wps_after_up']:.1f} windows/s = **{g['fraction_of_forward']:.2f}** "
                  f"of the pure forward rate ({g['forward_wps']:.1f} windows/s, batch "
                  f"{a['gpu_batch_size']}).", ""]  # fmt: skip
    else:
        lines += ["GPU row: not run (`--device cpu`).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse options, run the rows, print and write the record."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        _child(argv[1:])
        return 0
    sys.path.insert(0, str(HERE))
    from _common import HelpFormatter, machine_info, markdown_table, parse_outputs_and_device
    from _common import machine_markdown as machine_md

    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--quick", action="store_true", help="the smoke preset: " + json.dumps(QUICK))
    p.add_argument(
        "--scenes",
        type=int,
        help=f"row 1 scenes; None: {FULL['scenes']} (--quick {QUICK['scenes']})",
    )
    p.add_argument(
        "--scene-size",
        type=int,
        help=f"their side; None: {FULL['scene_size']} (--quick {QUICK['scene_size']})",
    )
    p.add_argument("--big-sizes", type=int, nargs="+", help=f"row 2; None: {FULL['big_sizes']}")
    p.add_argument("--block", type=int, help=f"row 2 block side; None: {FULL['block']}")
    p.add_argument("--model", choices=sorted(MODELS), help=f"row 1 model; None: {FULL['model']}")
    p.add_argument(
        "--big-model", choices=sorted(MODELS), help=f"row 2 model; None: {FULL['big_model']}"
    )
    p.add_argument("--rows", nargs="+", default=["scenes", "big"], choices=["scenes", "big"])
    p.add_argument("--bands", type=int, default=4, choices=[3, 4])
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--overlap", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--one-piece-threads", type=int, default=2, help="= workers × threads")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="cuda: GPU row")
    p.add_argument("--gpu-batch-size", type=int, default=16)
    p.add_argument("--gpu-threads", type=int, default=2, help="CPU threads per GPU actor")
    p.add_argument("--work", type=Path, default=Path("/tmp/landlearn_map_many"),
                   help="generated scenes and bundles, kept for re-runs")  # fmt: skip
    a = parse_outputs_and_device(p, argv)
    for key, value in (QUICK if a.quick else FULL).items():
        if getattr(a, key) is None:
            setattr(a, key, value)
    a.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rec: dict[str, Any] = {"machine": machine_info(a.device), "settings": vars(a) | {
        "work": str(a.work)}, "models": {k: v[0] for k, v in MODELS.items()}}  # fmt: skip
    if "scenes" in a.rows:
        rec["scenes"] = row_scenes(a, a.work)
    rec["big"] = [row_big(a, a.work, s) for s in sorted(a.big_sizes)] if "big" in a.rows else []
    if a.device == "cuda":
        rec["gpu"] = row_gpu(a, a.work)
    else:
        print("GPU row skipped: --device cpu", flush=True)
    rec["wall_s"] = time.perf_counter() - t0
    md = _markdown(rec, machine_md(rec["machine"]), markdown_table)
    print(md)
    from _common import write_outputs

    write_outputs(rec, a.json, a.md, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
