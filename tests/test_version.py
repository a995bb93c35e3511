"""One version, in a bottom-layer module; the package root and bundles read it from there."""

from __future__ import annotations

import tomllib
from pathlib import Path

import landlearn
from landlearn import bundle, version


def test_one_version_everywhere() -> None:
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert version.__version__ == project["project"]["version"]
    assert landlearn.__version__ == version.__version__
    assert bundle.files._versions()["landlearn"] == version.__version__
