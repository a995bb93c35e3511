"""The manifest of an out-dir: which scene was mapped from what, so a re-run skips it.

``manifest.json`` holds, per scene, the bundle hash (SHA-256 of the bundle files), the options
hash (everything that changes the output), the identity of each input (path, size, mtime) and
the SHA-256 of the COG written (and the names of its sidecars). A scene is finished when all
four still match and its files are there: a changed bundle
or option redoes everything, a touched input or a deleted / edited output redoes that scene.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from landlearn.atomic import dump_json, write_atomic
from landlearn.mapping import MapOptions
from landlearn.mapping.outputs import MapFiles
from landlearn.scale.jobs import SceneJob

__all__ = ["MANIFEST", "Manifest", "file_sha256", "options_hash", "scene_identity", "sha256_of"]

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_CHUNK = 1 << 22


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_of(data: Any) -> str:
    """SHA-256 of the canonical JSON of ``data``."""
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def options_hash(options: MapOptions, block: int) -> str:
    """Hash of what changes a map's bytes: every option but ``overwrite``, and the block size."""
    fields = dataclasses.asdict(options)
    fields.pop("overwrite")
    fields["bands"] = list(options.bands) if options.bands is not None else None
    return sha256_of({"options": fields, "block": block})


def scene_identity(job: SceneJob) -> list[dict[str, Any]]:
    """Path, size and modification time of each local input (a URL: its name only)."""
    out = []
    for path in job.paths:
        entry: dict[str, Any] = {"path": path}
        try:
            st = os.stat(path)
            entry.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
        except OSError:
            pass  # a GDAL name (/vsi…, a URL): nothing to stat
        out.append(entry)
    return out


class Manifest:
    """``manifest.json`` of an out-dir, rewritten (atomically) after every finished scene."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / MANIFEST
        self.scenes: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self.scenes = dict(data.get("scenes", {}))
            except (OSError, ValueError, AttributeError):
                log.warning("%s: unreadable manifest; every scene will be mapped", self.path)

    def key(self, job: SceneJob, bundle_hash: str, opts_hash: str) -> dict[str, Any]:
        """What must match for ``job`` to count as finished."""
        return {
            "bundle_sha256": bundle_hash,
            "options_sha256": opts_hash,
            "inputs": scene_identity(job),
        }

    def finished(self, job: SceneJob, key: dict[str, Any]) -> bool:
        """Whether ``job`` was mapped with ``key`` and its COG is still the one written."""
        entry = self.scenes.get(job.name)
        if entry is None or any(entry.get(k) != v for k, v in key.items()):
            return False
        files = [job.out.with_name(n) for n in entry.get("files", [job.out.name])]
        if not all(f.exists() for f in files):
            return False  # a sidecar (or the map) is gone: redo the scene
        return bool(entry.get("output_sha256") == file_sha256(job.out))

    def record(self, job: SceneJob, key: dict[str, Any], seconds: float, preview: bool) -> None:
        """Note ``job`` as finished (with its COG's checksum and its files) and save."""
        files = [o.path.name for o in MapFiles(job.out, preview).outputs() if o.path.exists()]
        self.scenes[job.name] = {
            **key,
            "map": job.out.name,
            "files": files,
            "output_sha256": file_sha256(job.out),
            "seconds": round(seconds, 3),
        }
        self.save()

    def forget(self, job: SceneJob) -> None:
        """Drop ``job`` (it failed or is being redone) and save."""
        if self.scenes.pop(job.name, None) is not None:
            self.save()

    def save(self) -> None:
        """Write the manifest through a temporary name."""
        write_atomic(self.path, dump_json({"written_by": "landlearn", "scenes": self.scenes}))
