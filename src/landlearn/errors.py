"""The one user-facing error."""

from __future__ import annotations

import os
import unicodedata

__all__ = ["LandlearnError", "escape"]

# Characters ``str.splitlines`` breaks on that are not category Cc.
_LINE_BREAKS = frozenset("\u2028\u2029")


def _escaped(ch: str) -> str | None:
    """The escape of one character that must not reach a terminal as is, or None."""
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte of a file name (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if 0xD800 <= code <= 0xDFFF or ch in _LINE_BREAKS or unicodedata.category(ch) == "Cc":
        return repr(ch)[1:-1]  # \n, \r, \t, \x1b, \u2028, \ud800 ...
    return None


def escape(text: str, keep_whitespace: bool = False) -> str:
    r"""``text`` with control characters, line breaks and undecodable bytes escaped (``\\n``).

    With ``keep_whitespace`` plain spaces, tabs and newlines are kept (a message's own line
    breaks, joined later); in a path every one of them is escaped.
    """
    out = []
    for ch in text:
        esc = None if keep_whitespace and ch in " \t\n" else _escaped(ch)
        out.append(ch if esc is None else esc)
    return "".join(out)


class LandlearnError(Exception):
    """Bad input a user can fix: missing or corrupt file, band count, CRS, unknown name.

    The CLI prints ``error: <path>: <message>`` and exits with code 2.
    """

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None) -> None:
        self.message = message
        self.path = None if path is None else os.fspath(path)
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """The message as one line, prefixed by the path when there is one.

        Control characters in the path and message are escaped, so a file name holding a
        newline can neither split the error nor add a second ``error:`` line.
        """
        text = " ".join(escape(self.message, keep_whitespace=True).split())
        if not self.path:
            return text
        return f"{escape(self.path)}: {text}"
