"""Run every fixture script.

Run every ``tests/data/*/make.py`` (and ``bundle_v1.py``) so no fixture script rots (the
Makefile calls this).
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path


def main() -> int:
    """Run each script as ``__main__``; return the number that failed."""
    failed = 0
    here = Path(__file__).resolve().parent
    for script in [*sorted(here.glob("*/make.py")), here / "bundle_v1.py"]:
        try:
            runpy.run_path(str(script), run_name="__main__")
        except Exception as err:  # report every broken script, not just the first
            failed += 1
            sys.stderr.write(f"{script}: {type(err).__name__}: {err}\n")
    return failed


if __name__ == "__main__":
    sys.exit(1 if main() else 0)
