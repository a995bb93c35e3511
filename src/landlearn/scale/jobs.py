"""What ``map_many`` maps: one job per scene, one unit of work per scene or per block of one.

A scene is one raster, or ``{input name: raster}`` for a bundle that reads several inputs; a
list of such scenes can come from a CSV (a header of input names, optionally a ``name`` column)
or a YAML list (paths, or mappings of input names to paths with an optional ``name``).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from landlearn.errors import LandlearnError
from landlearn.mapping import Block

__all__ = ["BLOCKS_DIR", "SceneJob", "Unit", "read_scene_list", "scene_jobs"]

BLOCKS_DIR = ".landlearn-blocks"
"""Folder of the out-dir where the blocks of big scenes wait to be joined."""

SceneArg = str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]]


@dataclass(frozen=True)
class SceneJob:
    """One scene to map: its name (the output's stem), its raster(s) and the output COG."""

    name: str
    scene: str | tuple[tuple[str, str], ...]
    out: Path

    @property
    def source(self) -> str | dict[str, str]:
        """The raster, or ``{input name: raster}``: what :func:`map_scene` takes."""
        return self.scene if isinstance(self.scene, str) else dict(self.scene)

    @property
    def paths(self) -> list[str]:
        """Every raster the scene reads."""
        return [self.scene] if isinstance(self.scene, str) else [p for _, p in self.scene]

    @property
    def blocks_dir(self) -> Path:
        """Where this scene's blocks are written before they are joined."""
        return self.out.parent / BLOCKS_DIR / self.name


@dataclass(frozen=True)
class Unit:
    """One task for a worker: map a scene, map one block of it, or join its blocks.

    ``kind`` is ``scene``, ``block`` or ``join``; ``blocks`` are all the scene's blocks (a join
    reads their files).
    """

    job: SceneJob
    kind: str = "scene"
    block: Block | None = None
    blocks: tuple[Block, ...] = ()

    @property
    def out(self) -> Path:
        """The GeoTIFF this unit writes."""
        if self.kind == "block":
            assert self.block is not None
            return block_path(self.job, self.block)
        return self.job.out

    @property
    def label(self) -> str:
        """How log lines name the unit."""
        if self.kind == "block":
            assert self.block is not None
            return f"{self.job.name} block {self.block.row_off},{self.block.col_off}"
        return self.job.name if self.kind == "scene" else f"{self.job.name} (joining blocks)"


def block_path(job: SceneJob, block: Block) -> Path:
    """The GeoTIFF of one block of ``job``."""
    return job.blocks_dir / f"r{block.row_off}_c{block.col_off}.tif"


def _stem(path: str) -> str:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return name.split(".", 1)[0] if not name.startswith(".") else name


def scene_jobs(scenes: Sequence[SceneArg], out_dir: Path) -> list[SceneJob]:
    """One job per scene, named by the (first) raster's stem or a mapping's ``name``.

    Raises:
        LandlearnError: no scenes, or two scenes that would write the same output.
    """
    if not scenes:
        raise LandlearnError("no scenes to map")
    jobs: list[SceneJob] = []
    seen: dict[str, str] = {}
    for scene in scenes:
        if isinstance(scene, Mapping):
            items = {str(k): os.fspath(v) for k, v in scene.items()}
            name = items.pop("name", None) or _stem(next(iter(items.values()), ""))
            if not items:
                raise LandlearnError(f"scene {name!r} names no input raster")
            key: str | tuple[tuple[str, str], ...] = tuple(items.items())
            first = next(iter(items.values()))
        else:
            key = first = os.fspath(scene)
            name = _stem(first)
        if not name:
            raise LandlearnError("cannot name the output of this scene", first)
        if name in seen:
            raise LandlearnError(
                f"two scenes would write {name}.tif ({seen[name]} and {first}); "
                "rename one, or name them in a scene list (a 'name' column)"
            )
        seen[name] = first
        jobs.append(SceneJob(name, key, out_dir / f"{name}.tif"))
    return jobs


def read_scene_list(path: str | os.PathLike[str]) -> list[SceneArg]:
    """Scenes from a CSV (header: input names, optional ``name``) or a YAML list.

    Relative raster paths are taken from the list's folder; GDAL names (``/vsi…``, URLs) as
    they are.

    Raises:
        LandlearnError: unreadable, empty or malformed list.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LandlearnError(f"cannot read the scene list: {exc}", path) from None
    if path.suffix.lower() == ".csv":
        rows: list[object] = list(csv.DictReader(text.splitlines()))
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise LandlearnError(f"not valid YAML: {str(exc).splitlines()[0]}", path) from None
        if isinstance(data, dict) and "scenes" in data:
            data = data["scenes"]
        if not isinstance(data, list):
            raise LandlearnError("expected a list of scenes (or a 'scenes:' list)", path)
        rows = data
    if not rows:
        raise LandlearnError("the scene list is empty", path)
    out: list[SceneArg] = []
    for i, row in enumerate(rows, start=1):
        if isinstance(row, str):
            out.append(_resolve(row, path.parent))
        elif isinstance(row, dict) and row:
            bad = [k for k, v in row.items() if not isinstance(v, str) or not v]
            if bad:
                raise LandlearnError(f"scene {i}: {bad[0]!r} has no path", path)
            out.append(
                {str(k): v if k == "name" else _resolve(v, path.parent) for k, v in row.items()}
            )
        else:
            raise LandlearnError(f"scene {i}: expected a path or NAME: PATH entries", path)
    return out


def _resolve(raster: str, folder: Path) -> str:
    if raster.startswith("/vsi") or "://" in raster or os.path.isabs(raster):
        return raster
    return os.fspath(folder / raster)
