"""The model registry: name → builder returning ``nn.Module``.

Besides registered names, a *prefixed* name resolves through a factory registered for its
prefix: ``timm:<any timm model>`` (``landlearn.models.classifiers``) builds that timm classifier.
Prefixed names are not listed by :func:`list_models` (timm has about a thousand).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from landlearn.errors import LandlearnError
from landlearn.registry import Registry, check_options

ModelBuilder = Callable[..., nn.Module]
BuilderFactory = Callable[[str], ModelBuilder]


class ModelRegistry(Registry[nn.Module]):
    """A ``Registry`` that also resolves ``<prefix>:<name>`` through a factory per prefix."""

    def __init__(self, kind: str) -> None:
        """An empty registry; ``kind`` names its entries in messages."""
        super().__init__(kind)
        self._prefixes: dict[str, tuple[BuilderFactory, dict[str, Any]]] = {}
        self._resolved: dict[str, ModelBuilder] = {}

    def register_prefix(self, prefix: str, factory: BuilderFactory, **tags: Any) -> None:
        """Resolve ``<prefix>:<name>`` as ``factory(name)``; ``factory`` raises for bad names."""
        if prefix in self._prefixes or ":" in prefix:
            raise RuntimeError(f"{self.kind} prefix {prefix!r} registered twice or malformed")
        self._prefixes[prefix] = (factory, dict(tags))

    def _split(self, name: str) -> tuple[str, str] | None:
        head, sep, rest = name.partition(":")
        return (head, rest) if sep and head in self._prefixes else None

    def get(self, name: str) -> ModelBuilder:
        """The builder of a registered or prefixed name.

        Raises:
            LandlearnError: unknown name (with the nearest known one).
        """
        split = self._split(name) if isinstance(name, str) else None
        if split is None:
            try:
                return super().get(name)
            except LandlearnError as exc:
                raise LandlearnError(exc.message + self._prefix_tip(name)) from None
        if name not in self._resolved:
            self._resolved[name] = self._prefixes[split[0]][0](split[1])
        return self._resolved[name]

    def tags(self, name: str) -> dict[str, Any]:
        """Tags given at registration (of the prefix, for a prefixed name)."""
        split = self._split(name) if isinstance(name, str) else None
        if split is None:
            return super().tags(name)
        self.get(name)
        return self._prefixes[split[0]][1]

    def _prefix_tip(self, name: str) -> str:
        """``; for the timm model write 'timm:<name>'`` when a prefix knows ``name``."""
        for prefix, (factory, _) in sorted(self._prefixes.items()):
            try:
                factory(name)
            except LandlearnError:
                continue
            return f"; for the {prefix} model write '{prefix}:{name}'"
        return ""

    def prefixes(self) -> list[str]:
        """Registered prefixes (``timm`` ...)."""
        return sorted(self._prefixes)


MODELS = ModelRegistry("model")

MODEL_TASKS = ("classification", "segmentation", "regression")
"""What a registered model predicts: class logits per scene or per pixel, or scene regression
targets (``num_classes`` is then the number of targets)."""

__all__ = [
    "MODELS",
    "MODEL_TASKS",
    "ModelBuilder",
    "ModelRegistry",
    "build_model",
    "builder_signature",
    "is_multi_input",
    "list_models",
    "model_task",
    "register_model",
    "register_model_prefix",
]


def register_model(
    name: str,
    task: str,
    *,
    kwargs_from: Callable[..., Any] | None = None,
    multi_input: bool = False,
) -> Callable[[ModelBuilder], ModelBuilder]:
    """Register a builder under ``name``; ``task`` is one of ``MODEL_TASKS``.

    ``multi_input``: the builder takes ``in_channels`` as ``{input name: bands}`` and its module
    has ``input_names`` (it reads a dict of inputs; :func:`is_multi_input`).

    ``kwargs_from``: for a builder that passes ``**kwargs`` on (to an smp or timm class), the
    callable that receives them; its named parameters are then the extra keys the builder takes
    (:func:`builder_signature`), so a bundle's misspelt key is refused instead of ignored.
    """
    if task not in MODEL_TASKS:
        raise RuntimeError(f"bad task {task!r} for model {name!r}")
    return MODELS.register(name, task=task, kwargs_from=kwargs_from, multi_input=multi_input)


def is_multi_input(name: str) -> bool:
    """Whether the model ``name`` reads several named inputs (``in_channels`` per input)."""
    return bool(MODELS.tags(name).get("multi_input", False))


def register_model_prefix(
    prefix: str, task: str, *, kwargs_from: Callable[..., Any] | None = None
) -> Callable[[BuilderFactory], BuilderFactory]:
    """Register ``factory(name) -> builder`` for model names ``<prefix>:<name>``.

    The factory raises ``LandlearnError`` for a name it does not know (with the nearest one).
    """
    if task not in MODEL_TASKS:
        raise RuntimeError(f"bad task {task!r} for model prefix {prefix!r}")

    def add(factory: BuilderFactory) -> BuilderFactory:
        MODELS.register_prefix(prefix, factory, task=task, kwargs_from=kwargs_from)
        return factory

    return add


def build_model(
    name: str,
    *,
    in_channels: int | Mapping[str, int],
    num_classes: int,
    pretrained: bool = False,
    dropout: float = 0.0,
    **kwargs: Any,
) -> nn.Module:
    """Build a model by name (registered, or prefixed such as ``timm:convnext_atto``).

    ``in_channels`` is a band count, or for a multi-input model (whose module has
    ``input_names``) a mapping input name → band count, in the order the model stacks them.

    Options are checked against :func:`builder_signature` (so also against ``kwargs_from``);
    a ``TypeError`` from inside the builder is a bug and keeps its traceback.

    Raises:
        LandlearnError: unknown name (with the nearest known one), an option the builder does
            not take, or weights not available.
    """
    options = {
        "in_channels": in_channels,
        "num_classes": num_classes,
        "pretrained": pretrained,
        "dropout": dropout,
        **kwargs,
    }
    check_options(builder_signature(name), f"model {name!r}", (), options)
    return MODELS.get(name)(**options)


def model_task(name: str) -> str:
    """``classification``, ``segmentation`` or ``regression`` for a registered name."""
    return str(MODELS.tags(name)["task"])


def list_models() -> list[str]:
    """Sorted registered model names."""
    return MODELS.names()


def builder_signature(name: str) -> inspect.Signature:
    """The keyword parameters a registered builder takes, with annotations resolved.

    A builder registered with ``kwargs_from`` gets that callable's named parameters in place of
    its ``**kwargs``. ``landlearn.bundle`` checks a bundle's ``model_kwargs`` against the result
    before building anything.

    Raises:
        LandlearnError: unknown name (with the nearest known one).
    """
    sig = _signature(MODELS.get(name))
    target = MODELS.tags(name).get("kwargs_from")
    if target is None:
        return sig
    own = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
    names = {p.name for p in own}
    extra = [
        p.replace(kind=p.KEYWORD_ONLY)
        for p in _signature(target).parameters.values()
        if p.name not in names and p.name != "self"
        and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]  # fmt: skip
    return sig.replace(parameters=[*own, *extra])


def _signature(fn: Callable[..., Any]) -> inspect.Signature:
    try:
        return inspect.signature(fn, eval_str=True)
    except (NameError, TypeError, SyntaxError):  # an annotation that does not resolve here
        return inspect.signature(fn)
