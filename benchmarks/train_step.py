"""Training-step speed by memory format and precision: why landlearn trains in ``channels_last``.

Times forward + backward + SGD step of the two workhorse models on random data, in the four
combinations of memory format (NCHW / NHWC = ``channels_last``) and precision (fp32 / bf16
autocast), on the device you name:

- ResNet-18 classifier (timm), 64x64 chips (EuroSAT's size), batch 128, 3 bands, 10 classes;
- U-Net ResNet-18 segmenter (smp), 256x256 chips, batch 8, 4 bands, 5 classes.

The models are built through landlearn's registry, as ``ClassificationTask`` and
``SegmentationTask`` build them. bf16 pays off only on hardware with bf16 arithmetic (GPUs since
Ampere; CPUs with AVX512-BF16 or AMX); elsewhere autocast emulates it and is slower. Run it on a
quiet machine::

    .venv/bin/python benchmarks/train_step.py --md benchmarks/out/train_step.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    HelpFormatter,
    console,
    machine_info,
    machine_markdown,
    markdown_table,
    parse_outputs_and_device,
    print_table,
    sync,
    write_outputs,
)

from landlearn.models import build_model

CASES = {
    "resnet18 64x64 b128": ("resnet18", 3, 10, 64, 128),
    "unet-resnet18 256x256 b8": ("unet", 4, 5, 256, 8),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to time")
    p.add_argument("--steps", type=int, default=8, help="timed steps per combination")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument(
        "--batch",
        type=int,
        default=None,
        help="images per step in every case (default: each case's own, 128 and 8)",
    )
    p.add_argument(
        "--size",
        type=int,
        default=None,
        help="chip size in every case, a multiple of 32 (default: each case's own, 64 and 256); "
        "small batches and chips make a smoke run fast where bf16 is emulated",
    )
    args = parse_outputs_and_device(p, argv)
    return args


def time_steps(
    name: str,
    channels_last: bool,
    bf16: bool,
    device: torch.device,
    steps: int,
    warmup: int,
    batch: int,
    size: int,
) -> float:
    """Training throughput in images per second.

    Images per second of ``steps`` training steps of ``batch`` chips of ``size``², after
    ``warmup`` untimed ones.
    """
    model_name, bands, classes, _, _ = CASES[name]
    torch.manual_seed(0)
    model = build_model(model_name, in_channels=bands, num_classes=classes).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, bands, size, size, device=device)
    shape = (batch,) if model_name == "resnet18" else (batch, size, size)
    y = torch.randint(0, classes, shape, device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        x = x.contiguous(memory_format=torch.channels_last)
    elapsed = 0.0
    for i in range(warmup + steps):
        sync(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync(device)
        if i >= warmup:
            elapsed += time.perf_counter() - start
    return batch * steps / elapsed


def main(argv: list[str] | None = None) -> int:
    """Time every combination, print and write the table."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    combos = [(False, False), (True, False), (False, True), (True, True)]
    rows: list[list[Any]] = []
    records: list[dict[str, Any]] = []
    for name, (model_name, _, _, own_size, own_batch) in CASES.items():
        batch, size = args.batch or own_batch, args.size or own_size
        net = "resnet18" if model_name == "resnet18" else "unet-resnet18"
        label = f"{net} {size}x{size} b{batch}"
        # one discarded pass first: kernel selection and allocator warm-up would otherwise
        # land on whichever combination is timed first
        time_steps(name, False, False, device, 1, args.warmup, batch, size)
        base = None
        for channels_last, bf16 in combos:
            ips = time_steps(
                name, channels_last, bf16, device, args.steps, args.warmup, batch, size
            )
            base = base or ips
            layout = "NHWC (channels_last)" if channels_last else "NCHW"
            precision = "bf16 autocast" if bf16 else "fp32"
            rows.append([label, layout, precision, ips, ips / base])
            records.append({"case": label, "batch": batch, "channels_last": channels_last,
                            "bf16": bf16, "images_per_s": ips})  # fmt: skip
            console.print(f"{label:26s} {layout:21s} {precision:13s} {ips:8.1f} img/s")
    columns = ["model, chips, batch", "memory format", "precision", "train img/s", "× NCHW fp32"]
    machine = machine_info(args.device)
    print_table("training step speed", columns, rows)
    markdown = (
        f"{markdown_table(columns, rows)}\n\n{machine_markdown(machine)}\n"
        f"{args.steps} timed steps after {args.warmup} warm-up steps per row."
    )
    write_outputs({"machine": machine, "rows": records}, args.json, args.md, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
