"""Fuzz the CLI longer than the suite does (issue #21) and count the outcomes.

Runs tests/test_fuzz.py with many more examples and random (not derandomized) draws: mutated
bundle headers and bytes, GeoTIFF bytes, class CSVs, fit configs and hostile pixel values. Every
case must end in success or one line with exit 2, with no input file changed; any other ending
fails the run (pytest prints the shrunk failing input).

    .venv/bin/python benchmarks/fuzz.py --examples 200 --md benchmarks/out/fuzz.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    """Run the fuzz cases; print (and with --md write) the outcome counts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200, help="examples per case")
    parser.add_argument("--md", type=Path, default=None, help="write the table here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        counts_file = Path(tmp) / "counts.json"
        env = {
            **os.environ,
            "LANDLEARN_FUZZ_EXAMPLES": str(args.examples),
            "LANDLEARN_FUZZ_RANDOM": "1",
            "LANDLEARN_FUZZ_COUNTS": str(counts_file),
        }
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "tests/test_fuzz.py"],
            cwd=ROOT, env=env, check=False,
        )  # fmt: skip
        seconds = time.perf_counter() - t0
        counts = json.loads(counts_file.read_text()) if counts_file.exists() else {}
    cases = sorted({k.split(":")[0] for k in counts})
    lines = [
        f"fuzz: {args.examples} examples per case, {seconds:.0f} s, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"pytest exit {proc.returncode}",
        "",
        "| case | success (exit 0) | refused (one line, exit 2) |",
        "| --- | ---: | ---: |",
    ]
    for c in cases:
        ok, refused = counts.get(f"{c}:ok", 0), counts.get(f"{c}:refused", 0)
        lines.append(f"| {c} | {ok} | {refused} |")
    lines.append(
        "\nAny other ending (a traceback, another exit code, more than one error line, a changed "
        "input) fails the run."
        + (" A case FAILED: see the pytest output for the shrunk input." if proc.returncode else "")
    )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(text)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
