"""Config files of the Lightning subcommands: checked before any work, errors as one line.

jsonargparse reports a bad config with its whole usage (about 50 lines) and a nested message;
Lightning checks values only once it builds the trainer, loaders or optimiser (a traceback), and
``trainer.devices: 99`` on a CPU starts 99 processes. Here every such problem becomes one
``LandlearnError`` naming the config file that set the key (or the command-line option) and the
key itself, before Lightning builds anything.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from landlearn.errors import LandlearnError
from landlearn.inputs import check_input_file

__all__ = [
    "check_config_values",
    "check_configs",
    "config_paths",
    "parse_error",
    "remove_empty_run",
]


def config_paths(argv: list[str]) -> list[str]:
    """The ``--config`` / ``-c`` files of ``argv``, in order."""
    paths = [b for a, b in itertools.pairwise(argv) if a in ("--config", "-c")]
    paths += [a.split("=", 1)[1] for a in argv if a.startswith(("--config=", "-c="))]
    return paths


def _load(path: str | Path) -> Any:
    f = check_input_file(path, "config file (YAML)", allow_empty=True, utf8_name=False)
    try:
        return yaml.safe_load(f.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise LandlearnError(f"not valid YAML{line}", f) from None


def check_configs(argv: list[str]) -> None:
    """Each ``--config`` / ``-c`` file exists and is a non-empty YAML mapping, else one error.

    jsonargparse would print its whole usage (~50 lines) for a missing or broken config, and
    only "Unexpected config:" for an empty one.
    """
    for path in config_paths(argv):
        f = Path(path)
        if not f.exists() and not f.is_symlink():
            raise LandlearnError("no such config file", f)
        data = _load(f)
        if data is None:
            raise LandlearnError(
                "config is empty; it needs sections such as trainer:, model: and data:", f
            )
        if not isinstance(data, dict):
            raise LandlearnError("a config must be a YAML mapping of sections", f)


# ---- where a key was set ---------------------------------------------------------------------
def _lookup(data: Any, key: str) -> bool:
    """Whether the nested mapping ``data`` holds the dotted ``key``."""
    for part in key.split("."):
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def _where(argv: list[str], key: str) -> tuple[str, str | None]:
    """``(how to name the key, file)``: the option on the command line, or the config's key."""
    option = f"--{key}"
    if any(a == option or a.startswith(option + "=") for a in argv):
        return option, None
    # A later config overrides an earlier one, so the last that sets the key is the source.
    for path in reversed(config_paths(argv)):
        try:
            if _lookup(_load(path), key):
                return key, path
        except LandlearnError:
            continue
    paths = config_paths(argv)
    return key, (paths[-1] if paths else None)


def _error(argv: list[str], key: str, problem: str) -> LandlearnError:
    name, path = _where(argv, key)
    return LandlearnError(f"{name}: {problem}", path)


# ---- jsonargparse's messages -------------------------------------------------------------------
_NOISE = re.compile(
    r"^(Does not validate against any of the Union subtypes|Subtypes:|Errors:|Given value"
    r"|Expected a <class 'NoneType'>|tip:)"
)
_CLASS = re.compile(r"<class '(?:[\w.]*\.)?(\w+)'>")


def parse_error(message: str, argv: list[str]) -> LandlearnError:
    """Jsonargparse's (multi-line) parse error as one line naming the config file and key."""
    text = message.strip()
    m = re.search(r"(?:Subcommand|Group) '[^']*' does not accept option '([^']+)'", text)
    if m:
        return _error(argv, m.group(1), "unknown option; see `landlearn fit --help`")
    m = re.match(r"unrecognized arguments: (.*)", text, re.IGNORECASE)
    if m:
        rest = [a for a in m.group(1).split() if a not in ("fit", "validate", "test", "predict")]
        shown = " ".join(rest) or m.group(1)
        return LandlearnError(f"unrecognized arguments: {shown}; see `landlearn fit --help`")
    keys: list[str] = []
    problem = ""
    in_class = False
    given = ""
    for raw in text.splitlines():
        line = raw.strip().removeprefix("- ").strip()
        key = re.match(r'Parser key "([^"]+)":?\s*(.*)', line)
        if key:
            if in_class:
                keys.append("init_args")
                in_class = False
            keys.append(key.group(1))
            line = key.group(2)
            if not line:
                continue
        if line.startswith("Problem with given class_path"):
            in_class = True
            continue
        option = re.match(r"Option '([^']+)' is not accepted", line)
        if option and not problem:
            keys += ["init_args", option.group(1)] if in_class else [option.group(1)]
            problem = "unknown option (not an argument of that class)"
            continue
        if line.startswith("Given value:") and not given:
            given = line.removeprefix("Given value:").strip()
        if not line or _NOISE.match(line) or problem:
            continue
        problem = line
    if not problem:
        problem = " ".join(text.split())
    problem = _CLASS.sub(r"\1", problem)
    problem = re.sub(r"^Expected an? (\S+?)\.? Got value: ", r"expected \1, got ", problem)
    problem = re.sub(r"^Expected an? ", "expected ", problem)
    if problem.startswith("expected") and ", got" not in problem and given:
        problem += f", got {given[:60]}"
    if not keys:
        paths = config_paths(argv)
        return LandlearnError(problem, paths[-1] if paths else None)
    return _error(argv, ".".join(keys), problem)


# ---- values jsonargparse accepts but Lightning or torch refuse late ----------------------------
def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _check_range(
    argv: list[str], key: str, value: Any, ok: Callable[[float], bool], rule: str
) -> None:
    n = _number(value)
    if value is not None and n is not None and not ok(n):
        raise _error(argv, key, f"{rule}, got {value}")


def _check_accelerator(argv: list[str], accelerator: Any) -> str:
    """The accelerator's kind ("cpu", "gpu", "mps", other) after checking it exists here."""
    name = str(accelerator).lower() if isinstance(accelerator, str) else "other"
    if isinstance(accelerator, str):
        from lightning.pytorch.accelerators import AcceleratorRegistry

        known = {"auto", "gpu", *AcceleratorRegistry.available_accelerators()}
        if name not in known:
            raise _error(
                argv, "trainer.accelerator",
                f"unknown accelerator {accelerator!r}; use one of {', '.join(sorted(known))}",
            )  # fmt: skip
    if name in ("gpu", "cuda") and _gpus() == 0:
        raise _error(
            argv, "trainer.accelerator",
            f"{accelerator!r} asked for, but this machine has no CUDA GPU; use cpu or auto",
        )  # fmt: skip
    if name == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise _error(argv, "trainer.accelerator", "'mps' asked for, but MPS is not available")
    if name == "auto":
        return "gpu" if _gpus() else "cpu"
    return "gpu" if name in ("gpu", "cuda") else name


def _device_count(argv: list[str], devices: Any, kind: str = "cpu") -> int | None:
    """How many devices ``trainer.devices`` asks for (None: "auto" or a form left to Lightning).

    Lightning takes a count, "auto", -1, or (GPUs only) a list of indices; ``null``, a bool,
    an empty list, or a list on the CPU would end in its traceback.
    """
    if isinstance(devices, bool) or devices is None:
        shown = "null" if devices is None else str(devices).lower()
        raise _error(argv, "trainer.devices", f"must be a number, a list or 'auto', got {shown}")
    if isinstance(devices, list | tuple):
        if not devices:
            raise _error(argv, "trainer.devices", "an empty list selects no device")
        if kind == "cpu":
            raise _error(
                argv, "trainer.devices",
                f"on the CPU, devices is a number of processes, not a list ({list(devices)})",
            )  # fmt: skip
        bad = [d for d in devices if isinstance(d, bool) or not isinstance(d, int) or d < 0]
        if bad:
            raise _error(
                argv, "trainer.devices", f"device indices are integers >= 0, got {bad[0]!r}"
            )
    if isinstance(devices, str):
        text = devices.strip()
        if text in ("auto", "-1"):
            return None
        if "," in text:
            if kind == "cpu":
                raise _error(
                    argv, "trainer.devices",
                    f"on the CPU, devices is a number of processes, not a list ({text!r})",
                )  # fmt: skip
            return len([p for p in text.split(",") if p.strip()])
        if not text.lstrip("-").isdigit():
            raise _error(
                argv, "trainer.devices", f"must be a number, a list or 'auto', got {text!r}"
            )
        devices = int(text)
    if isinstance(devices, list | tuple):
        return len(devices)
    if isinstance(devices, int):
        if devices == -1:
            return None
        if devices < 1:
            raise _error(argv, "trainer.devices", f"must be >= 1 (or -1 for all), got {devices}")
        return devices
    return None


def _check_devices(argv: list[str], trainer: Any) -> None:
    kind = _check_accelerator(argv, trainer.get("accelerator", "auto"))
    wanted = _device_count(argv, trainer.get("devices", "auto"), kind)
    if wanted is None:
        return
    if kind == "gpu":
        have, what = _gpus(), "GPU(s)"
    elif kind == "cpu":
        have, what = _cpus(), "CPU core(s)"
    else:
        return
    if wanted > have:
        raise _error(
            argv, "trainer.devices",
            f"{wanted} devices asked for, but this machine has {have} {what}; "
            f"use at most {have} (each device is one training process)",
        )  # fmt: skip


def _get(cfg: Any, key: str) -> Any:
    try:
        return cfg.get(key)
    except (AttributeError, KeyError, TypeError):
        return None


def check_config_values(cfg: Any, argv: list[str]) -> None:
    """Range checks of the parsed config (a jsonargparse Namespace) before anything is built.

    Raises:
        LandlearnError: epochs, batch size, learning rate or devices out of range, or an
            accelerator this machine does not have; names the config file and key.
    """
    at_least_one = (lambda v: v >= 1, "must be >= 1")
    _check_range(
        argv, "trainer.max_epochs", _get(cfg, "trainer.max_epochs"),
        lambda v: v >= 1 or v == -1, "must be >= 1 (or -1 for no limit)",
    )  # fmt: skip
    _check_range(argv, "trainer.min_epochs", _get(cfg, "trainer.min_epochs"),
                 lambda v: v >= 0, "must be >= 0")  # fmt: skip
    _check_range(
        argv, "trainer.max_steps", _get(cfg, "trainer.max_steps"),
        lambda v: v >= 1 or v == -1, "must be >= 1 (or -1 for no limit)",
    )  # fmt: skip
    _check_range(argv, "trainer.num_nodes", _get(cfg, "trainer.num_nodes"), *at_least_one)
    for key in ("batch_size", "chip_size"):
        full = f"data.init_args.{key}"
        _check_range(argv, full, _get(cfg, full), *at_least_one)
    _check_range(argv, "data.init_args.num_workers", _get(cfg, "data.init_args.num_workers"),
                 lambda v: v >= 0, "must be >= 0")  # fmt: skip
    _check_range(
        argv, "model.init_args.lr", _get(cfg, "model.init_args.lr"),
        # 0 is allowed, as torch allows it: weights stay put (a test of early stopping uses it)
        lambda v: v >= 0 and math.isfinite(v), "must be a finite number >= 0",
    )  # fmt: skip
    _check_range(
        argv, "model.init_args.weight_decay", _get(cfg, "model.init_args.weight_decay"),
        lambda v: v >= 0 and math.isfinite(v), "must be >= 0",
    )  # fmt: skip
    for key in _NUMBERS:  # jsonargparse lets `null` through for a subclass's float arguments
        full = f"model.init_args.{key}"
        if _is_null(cfg, full):
            raise _error(argv, full, "must be a number, got null")
    trainer = _get(cfg, "trainer")
    if trainer is not None:
        _check_devices(argv, trainer)


_NUMBERS = ("lr", "weight_decay", "momentum", "dropout", "num_examples")
"""Task arguments that are numbers with a default: ``null`` would fail deep inside training."""


def _is_null(cfg: Any, key: str) -> bool:
    """Whether ``key`` is in the config and set to null (not merely absent)."""
    try:
        return key in cfg and cfg.get(key) is None
    except (AttributeError, KeyError, TypeError):
        return False


# ---- clean-up of failed runs -------------------------------------------------------------------
_LIGHTNING_FILES = ("config.yaml", "hparams.yaml")
_SMALL_EVENTS = 4096  # a TensorBoard file holding only its header and hparams


def _boilerplate(path: Path) -> bool:
    """A file Lightning writes at the start of every run, holding no results."""
    if path.name in _LIGHTNING_FILES:
        return True
    return path.name.startswith("events.out.tfevents.") and path.stat().st_size < _SMALL_EVENTS


def remove_empty_run(folder: Path) -> bool:
    """Remove a failed run's ``version_N`` folder if it holds only Lightning's start-up files.

    Anything else (a checkpoint, metrics, a bundle, a file the user put there) keeps the whole
    folder. The ``runs/<name>`` folder above goes too when it is left empty.
    """
    if not folder.is_dir() or folder.is_symlink():
        return False
    for path in folder.rglob("*"):
        if path.is_symlink() or (path.is_file() and not _boilerplate(path)):
            return False
        if not path.is_dir() and not path.is_file():
            return False
    shutil.rmtree(folder)
    try:
        folder.parent.rmdir()  # only when empty
    except OSError:
        pass
    return True
