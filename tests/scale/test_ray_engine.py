"""Issue #20 on a local Ray with two workers.

Outputs are identical to the local engine, and a worker process killed mid-task is replaced and
its task retried.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_map_many import FAST, outputs

from landlearn.scale import map_many
from landlearn.scale.engines import FAULT_ENV

ray = pytest.importorskip("ray", reason="the optional Ray extra: pip install 'landlearn[ray]'")

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A local Ray of 2 CPUs whose workers can import the test models (``mapping_helpers``)."""
    paths = [str(HERE.parent / "mapping"), str(HERE), os.environ.get("PYTHONPATH", "")]
    os.environ.setdefault("RAY_TQDM_PATCH_PRINT", "0")  # as landlearn's own ray.init does
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in paths if p)},
                     "worker_process_setup_hook": "mapping_helpers.register_test_models"},
    )  # fmt: skip
    yield
    ray.shutdown()


def test_two_ray_workers_write_what_the_local_engine_writes(
    local_ray: None, tmp_path: Path, bundle: Path, scenes: list[Path]
) -> None:
    users_print = builtins.print
    local = map_many(bundle, scenes, tmp_path / "local", **FAST)
    on_ray = map_many(bundle, scenes, tmp_path / "ray", engine="ray", workers=2, **FAST)
    assert builtins.print is users_print  # Ray's progress bars may not swap it
    assert sorted(on_ray.done) == local.done
    assert not on_ray.failed
    assert outputs(tmp_path / "ray") == outputs(tmp_path / "local")  # maps, sidecars, mosaic
    again = map_many(bundle, scenes, tmp_path / "ray", engine="ray", workers=2, **FAST)
    assert again.done == []
    assert len(again.skipped) == 4


def test_a_killed_worker_is_replaced_and_its_task_retried(
    local_ray: None, tmp_path: Path, bundle: Path, scenes: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    clean = map_many(bundle, scenes, tmp_path / "clean", **FAST)
    fault = tmp_path / "kill-me"
    fault.write_text("x")
    monkeypatch.setenv(FAULT_ENV, str(fault))
    result = map_many(bundle, scenes, tmp_path / "killed", engine="ray", workers=2, **FAST)
    assert not fault.exists()  # a worker took it and exited its process mid-map
    assert result.retried == 1
    assert sorted(result.done) == clean.done
    assert outputs(tmp_path / "killed") == outputs(tmp_path / "clean")
    assert not [p for p in (tmp_path / "killed").iterdir() if p.name.startswith(".")]


def test_a_blocked_scene_on_ray_equals_the_local_blocked_map(
    local_ray: None, tmp_path: Path, bundle: Path
) -> None:
    from mapping_helpers import smooth_scene, write_tif

    scene = write_tif(tmp_path / "big.tif", smooth_scene(600, 530, seed=7))
    local = map_many(bundle, [scene], tmp_path / "local", block=256, **FAST)
    on_ray = map_many(bundle, [scene], tmp_path / "ray", block=256, engine="ray", **FAST)
    assert local.done == on_ray.done == ["big"]
    assert outputs(tmp_path / "ray") == outputs(tmp_path / "local")
