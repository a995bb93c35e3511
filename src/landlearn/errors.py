"""The one user-facing error."""

from __future__ import annotations

import os

__all__ = ["LandlearnError"]


class LandlearnError(Exception):
    """Bad input a user can fix: missing or corrupt file, band count, CRS, unknown name.

    The CLI prints ``error: <path>: <message>`` and exits with code 2.
    """

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None) -> None:
        self.message = message
        self.path = None if path is None else os.fspath(path)
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """The message as one line, prefixed by the path when there is one."""
        text = " ".join(self.message.split())
        return f"{self.path}: {text}" if self.path else text
