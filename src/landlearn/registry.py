"""A small typed name → builder registry (models, losses, optimisers, ...), as in timm and smp.

Also the one "did you mean" helper every unknown-name error uses, and the check that tells a bad
keyword from the user (a ``LandlearnError``) from a ``TypeError`` raised inside a builder (our
bug, which keeps its traceback).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from landlearn.errors import LandlearnError

R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["Registry", "check_options", "did_you_mean", "unknown_name"]


def did_you_mean(name: str, known: Iterable[str], otherwise: str | None = None) -> str:
    """``did you mean 'x'?`` for the nearest known name, else ``otherwise`` or the known names."""
    known = list(known)
    near = difflib.get_close_matches(name, known, n=1)
    if near:
        return f"did you mean {near[0]!r}?"
    return otherwise if otherwise is not None else f"known: {', '.join(known)}"


def unknown_name(
    kind: str, name: str, known: Iterable[str], otherwise: str | None = None
) -> LandlearnError:
    """``unknown <kind> '<name>'; did you mean ...`` as a ``LandlearnError`` (to raise)."""
    return LandlearnError(f"unknown {kind} {name!r}; {did_you_mean(name, known, otherwise)}")


def check_options(
    fn: Callable[..., Any] | inspect.Signature,
    what: str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
) -> None:
    """Raise ``LandlearnError`` when ``fn(*args, **kwargs)`` cannot bind (a user's bad option).

    Binding only checks names against ``fn``'s signature; nothing is called, so a ``TypeError``
    from inside ``fn`` later is a bug and keeps its traceback.

    Args:
        fn: The builder (or class) the options are for, or its signature.
        what: How the message names it, e.g. ``"loss 'dice'"``.
        args: Positional arguments the caller passes.
        kwargs: Keyword arguments the caller passes (framework ones and the user's options).

    Raises:
        LandlearnError: an unknown, missing or repeated option.
    """
    kwargs = dict(kwargs or {})
    signature = fn if isinstance(fn, inspect.Signature) else inspect.signature(fn)
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        params = signature.parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        by_name = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        named = [n for n, p in params.items() if p.kind in by_name]  # signature order
        unknown = [] if takes_any else [k for k in kwargs if k not in named]
        if unknown:
            options = [n for n in named if params[n].default is not params[n].empty]
            tip = did_you_mean(unknown[0], options, otherwise=f"options: {', '.join(options)}")
            detail = f"unknown option {unknown[0]!r}; {tip}" if options else "it takes no options"
        else:
            detail = str(exc)
        raise LandlearnError(f"bad options for {what}: {detail}") from exc


class Registry(Generic[R]):
    """Name → builder returning ``R``. Unknown names raise ``LandlearnError`` naming the nearest."""

    def __init__(self, kind: str) -> None:
        """An empty registry; ``kind`` names its entries in messages (``"loss"``)."""
        self.kind = kind
        self._items: dict[str, Callable[..., R]] = {}
        self._tags: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **tags: Any) -> Callable[[F], F]:
        """Decorator that adds ``fn`` under ``name`` with optional tags (e.g. ``task=...``)."""

        def add(fn: F) -> F:
            if name in self._items:  # duplicate names are our bug, not user input
                raise RuntimeError(f"{self.kind} {name!r} registered twice")
            self._items[name] = fn
            self._tags[name] = dict(tags)
            return fn

        return add

    def get(self, name: str) -> Callable[..., R]:
        """The builder for ``name``; raises ``LandlearnError`` naming the nearest match."""
        if name not in self._items:
            raise unknown_name(self.kind, name, self.names())
        return self._items[name]

    def build(self, name: str, /, *args: Any, **kwargs: Any) -> R:
        """Call the builder of ``name``; a keyword it does not take is the user's error.

        Raises:
            LandlearnError: unknown name, or options the builder's signature does not accept.
        """
        fn = self.get(name)
        check_options(fn, f"{self.kind} {name!r}", args, kwargs)
        return fn(*args, **kwargs)  # a TypeError from in here is a bug: let it through

    def tags(self, name: str) -> dict[str, Any]:
        """Tags given at registration."""
        self.get(name)
        return self._tags[name]

    def names(self) -> list[str]:
        """Sorted registered names."""
        return sorted(self._items)

    def in_order(self) -> list[str]:
        """Registered names in registration order (e.g. the order augmentations apply)."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        """Whether ``name`` is registered."""
        return name in self._items

    def __len__(self) -> int:
        """How many entries are registered."""
        return len(self._items)
