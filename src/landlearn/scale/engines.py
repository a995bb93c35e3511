"""Where units of work run: in this process (``local``) or on Ray actors (``ray``).

A :class:`Worker` loads the bundle once and maps unit after unit with it; the ``local`` engine
holds one in this process, the ``ray`` engine one per Ray actor (each pinned to ``threads``
CPU threads and, when asked, a share of a GPU). Rasters are opened by path in the worker, by
window, never shipped through Ray's object store. Ray is imported only by the ``ray`` engine.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from landlearn.errors import LandlearnError
from landlearn.mapping import MapOptions, map_scene
from landlearn.mapping.join import join_blocks
from landlearn.mapping.plan import load_members
from landlearn.scale.jobs import Unit, block_path

__all__ = ["FAULT_ENV", "Done", "Engine", "LocalEngine", "RayEngine", "Worker", "WorkerDied"]

log = logging.getLogger(__name__)

FAULT_ENV = "LANDLEARN_INJECT_FAULT"
"""Test hook: a file path. The first worker to find that file deletes it and, after its first
batch of windows, dies (a Ray worker exits its process; the local one raises), so the tests
can check that a killed task is retried."""


@dataclass
class Done:
    """What a unit did: windows mapped and seconds taken."""

    windows: int
    seconds: float


class WorkerDied(RuntimeError):
    """The worker process running a unit died (killed, out of memory, crashed)."""


class Worker:
    """Loads the bundle(s) once, then maps units with them."""

    def __init__(
        self,
        bundles: list[str],
        options: MapOptions,
        run_ids: dict[str, str],
        *,
        threads: int | None = None,
        fault: str | None = None,
        exit_on_fault: bool = False,
    ) -> None:
        """Load ``bundles`` on ``options.device``; ``threads`` caps torch's CPU threads."""
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        self.members = load_members(bundles, options.device)
        self.options, self.run_ids = options, run_ids
        self.fault, self.exit_on_fault = fault, exit_on_fault

    def run(self, unit: Unit) -> Done:
        """Map (or join) ``unit``; a LandlearnError is the user's (a bad scene), others ours."""
        start = time.perf_counter()
        job = unit.job
        run_id = self.run_ids[job.name]
        if unit.kind == "join":
            paths = [block_path(job, b) for b in unit.blocks]
            join_blocks(unit.blocks, paths, job.out, preview=self.options.preview, run_id=run_id)
            return Done(0, time.perf_counter() - start)
        opts = self.options
        if unit.kind == "block":
            opts = opts.replace(preview=False, overwrite=True)  # our own temporary block files
        result = map_scene(
            self.members, job.source, unit.out, opts, block=unit.block, run_id=run_id,
            progress=self._fault_hook(),
        )  # fmt: skip
        return Done(result.windows, time.perf_counter() - start)

    def _fault_hook(self) -> Any:
        if not self.fault or not os.path.exists(self.fault):
            return None

        def hook(done: int, total: int) -> None:
            try:
                os.remove(str(self.fault))
            except FileNotFoundError:
                return  # another worker took it
            if self.exit_on_fault:
                os._exit(17)
            raise RuntimeError("injected fault (test hook)")

        return hook

    def ping(self) -> int:
        """The worker's process id (the actor is up)."""
        return os.getpid()


class Engine(Protocol):
    """Runs units: at most ``slots`` at once; :meth:`next_done` blocks for one outcome."""

    slots: int

    def submit(self, unit: Unit) -> None:
        """Start ``unit``."""

    def next_done(self) -> tuple[Unit, Done | BaseException]:
        """A finished unit and its result, or the exception it raised."""

    def close(self) -> None:
        """Stop every worker (cancels what runs)."""


class LocalEngine:
    """One worker in this process: units run one after the other when asked for."""

    slots = 1

    def __init__(self, worker: Worker) -> None:
        """Run units on ``worker``."""
        self.worker = worker
        self._queue: deque[Unit] = deque()

    def submit(self, unit: Unit) -> None:
        """Queue ``unit``; it runs in :meth:`next_done`."""
        self._queue.append(unit)

    def next_done(self) -> tuple[Unit, Done | BaseException]:
        """Run the next unit here and now."""
        unit = self._queue.popleft()
        try:
            return unit, self.worker.run(unit)
        except Exception as exc:  # reported, retried or skipped by the scheduler
            return unit, exc

    def close(self) -> None:
        """Nothing runs in the background."""
        self._queue.clear()


def import_ray() -> Any:
    """Ray, or one line naming the extra that installs it.

    Ray's progress bars replace ``builtins.print`` in the driver unless told not to; landlearn
    leaves the user's ``print`` alone (``RAY_TQDM_PATCH_PRINT=0`` unless already set).

    Raises:
        LandlearnError: Ray is not installed.
    """
    os.environ.setdefault("RAY_TQDM_PATCH_PRINT", "0")
    try:
        import ray
    except ImportError:
        raise LandlearnError(
            "--engine ray needs Ray, an optional extra: pip install 'landlearn[ray]'"
        ) from None
    return ray


class RayEngine:
    """``workers`` Ray actors, each a :class:`Worker` holding the bundle.

    Without ``address`` a local Ray is started (and stopped at :meth:`close`) with one CPU per
    thread of each worker; with one (``ray://host:10001`` or ``auto``) the cluster is joined, and
    its nodes need landlearn installed. A Ray that this process already started is reused.
    """

    def __init__(
        self,
        bundles: list[str],
        options: MapOptions,
        run_ids: dict[str, str],
        *,
        workers: int,
        threads: int,
        gpus_per_worker: float,
        address: str | None,
        fault: str | None,
    ) -> None:
        """Start (or join) Ray and the actors; the first actor must come up."""
        ray = self.ray = import_ray()
        self._started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address is None:
                kwargs["num_cpus"] = workers * threads
            try:
                ray.init(address=address, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise LandlearnError(f"cannot start or reach Ray at {address}: {exc}") from None
            self._started = True
        self.slots = workers
        self._args = (bundles, options, run_ids)
        self._kwargs = {"threads": threads, "fault": fault, "exit_on_fault": True}
        self._actor_options = {"num_cpus": threads, "num_gpus": gpus_per_worker}
        self._idle = [self._new_actor() for _ in range(workers)]
        self._running: dict[Any, tuple[Any, Unit]] = {}
        try:  # a bundle that does not load fails here, once, not in every task
            ray.get([a.ping.remote() for a in self._idle])
        except ray.exceptions.RayActorError as exc:
            self.close()
            raise _cause(exc) from None

    def _new_actor(self) -> Any:
        cls = self.ray.remote(Worker).options(**self._actor_options)
        return cls.remote(*self._args, **self._kwargs)

    def submit(self, unit: Unit) -> None:
        """Send ``unit`` to an idle actor."""
        actor = self._idle.pop()
        self._running[actor.run.remote(unit)] = (actor, unit)

    def next_done(self) -> tuple[Unit, Done | BaseException]:
        """Wait for any running unit; a dead actor is replaced."""
        ray = self.ray
        ready, _ = ray.wait(list(self._running), num_returns=1)
        ref = ready[0]
        actor, unit = self._running.pop(ref)
        try:
            result: Done | BaseException = ray.get(ref)
            self._idle.append(actor)
        except ray.exceptions.RayActorError as exc:
            log.warning("%s: the worker died (%s); starting another", unit.label, _first(exc))
            ray.kill(actor)
            self._idle.append(self._new_actor())
            result = WorkerDied(f"worker died: {_first(exc)}")
        except ray.exceptions.RayTaskError as exc:
            self._idle.append(actor)
            result = _cause(exc)
        return unit, result

    def close(self) -> None:
        """Kill every actor; stop the local Ray this engine started."""
        for ref in list(self._running):
            self.ray.cancel(ref, force=True)
        for actor, _ in self._running.values():
            self.ray.kill(actor)
        for actor in self._idle:
            self.ray.kill(actor)
        self._running.clear()
        self._idle.clear()
        if self._started:
            self.ray.shutdown()


def _cause(exc: BaseException) -> BaseException:
    """The exception raised inside a Ray task (a LandlearnError stays one)."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def _first(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
