"""A small typed name → builder registry (models, losses), as in timm and smp."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from landlearn.errors import LandlearnError

T = TypeVar("T", bound=Callable[..., Any])

__all__ = ["Registry"]


class Registry(Generic[T]):
    """Name → builder. Unknown names raise ``LandlearnError`` with the nearest known name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._tags: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **tags: Any) -> Callable[[T], T]:
        """Decorator that adds ``fn`` under ``name`` with optional tags (e.g. ``task=...``)."""

        def add(fn: T) -> T:
            if name in self._items:  # duplicate names are our bug, not user input
                raise RuntimeError(f"{self.kind} {name!r} registered twice")
            self._items[name] = fn
            self._tags[name] = dict(tags)
            return fn

        return add

    def get(self, name: str) -> T:
        """The builder for ``name``; raises ``LandlearnError`` naming the nearest match."""
        if name not in self._items:
            near = difflib.get_close_matches(name, list(self._items), n=1)
            tip = f"did you mean {near[0]!r}?" if near else f"known: {', '.join(self.names())}"
            raise LandlearnError(f"unknown {self.kind} {name!r}; {tip}")
        return self._items[name]

    def tags(self, name: str) -> dict[str, Any]:
        """Tags given at registration."""
        self.get(name)
        return self._tags[name]

    def names(self) -> list[str]:
        """Sorted registered names."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
