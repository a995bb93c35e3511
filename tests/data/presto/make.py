"""Write a tiny fake Presto task folder in the real layout (``<out>/fuel_moisture/npy/*.npy``).

60 rows of 3 monthly steps × 18 bands in 12 sites; the last 4 sites (20 rows) are the test
split. The target is a noisy linear function of NDVI and temperature, so a model can learn it;
one EO value is NaN (row 3, month 1, VV), as a missing observation.

Run ``python tests/data/presto/make.py`` or call ``make(out_dir)``; seeded, rerunnable.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

ROWS, STEPS, BANDS, SITES = 60, 3, 18, 12


def make(out_dir: str | Path) -> Path:
    """Write the fixture under ``out_dir`` (cleared first) and return it."""
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    npy = out / "fuel_moisture" / "npy"
    npy.mkdir(parents=True)
    rng = np.random.default_rng(0)
    eo = rng.normal(size=(ROWS, STEPS, BANDS))
    eo[..., 2:13] = rng.uniform(100, 3000, size=(ROWS, STEPS, 11))  # S2 reflectance x 10000
    eo[..., 13] = rng.uniform(270, 305, size=(ROWS, STEPS))  # temperature (K)
    eo[..., 17] = rng.uniform(0, 0.9, size=(ROWS, STEPS))  # NDVI
    target = 60 + 150 * eo[:, -1, 17] - 2.0 * (eo[:, -1, 13] - 285) + rng.normal(0, 5, ROWS)
    eo[3, 1, 0] = np.nan
    site = np.array([f"site {i // (ROWS // SITES)}" for i in range(ROWS)])
    is_test = (np.arange(ROWS) >= ROWS - 20).astype(np.int64)
    month = (np.arange(ROWS)[:, None] % 12 + np.arange(STEPS)[None]) % 12
    latlon = np.stack([rng.uniform(30, 48, ROWS), rng.uniform(-123, -100, ROWS)], axis=1)
    for name, arr in (("s1_s2_era5_srtm", eo), ("target", target), ("latlon", latlon),
                      ("month", month), ("site", site), ("is_test", is_test)):  # fmt: skip
        np.save(npy / f"{name}.npy", arr)
    return out


if __name__ == "__main__":
    make(Path(__file__).resolve().parent / "out")
