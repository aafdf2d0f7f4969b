"""LSP positions <-> offsets into a Python str (code points, what the engine indexes by).

An LSP position is (line, character). Lines end at "\\n", "\\r\\n" or "\\r". `character` counts
units of the negotiated position encoding: UTF-16 code units (the default: a character outside
the Basic Multilingual Plane counts 2), UTF-8 bytes, or UTF-32 code points (= str indices).
As the specification asks, a character past the end of its line means the end of the line and
a line past the end of the document means the end of the document; a position inside a
multi-unit character rounds down to that character's start.

`LineIndex(text)` finds every line start once (a vectorised scan) and `edited` updates it for an
edit without rescanning, so each conversion costs one line's worth of work, not a walk over the
document.
"""
from __future__ import annotations

import numpy as np

from completer.errors import CompleterError

ENCODINGS = ("utf-16", "utf-8", "utf-32")


class PositionError(CompleterError):
    pass


def _width(ch: str, encoding: str) -> int:
    cp = ord(ch)
    if encoding == "utf-16":
        return 2 if cp > 0xFFFF else 1
    return 1 if cp < 0x80 else 2 if cp < 0x800 else 3 if cp < 0x10000 else 4  # utf-8


def units(text: str, encoding: str) -> int:
    """Length of `text` in the encoding's units."""
    if encoding == "utf-32" or text.isascii():
        return len(text)
    if encoding == "utf-16":
        return len(text.encode("utf-16-le", "surrogatepass")) // 2
    return len(text.encode("utf-8", "surrogatepass"))


class LineIndex:
    def __init__(self, text: str):
        self.text = text
        cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)   # (N,)
        nl, cr = cps == 10, cps == 13
        cr[:-1] &= ~nl[1:]                                  # a "\r" ends a line only when alone
        self.starts = np.concatenate(([0], np.flatnonzero(nl | cr) + 1)).astype(np.int64)   # (lines,)

    @classmethod
    def _of(cls, text: str, starts: np.ndarray) -> "LineIndex":
        index = cls.__new__(cls)
        index.text, index.starts = text, starts
        return index

    def edited(self, start: int, end: int, new_text: str, text: str) -> "LineIndex":
        """The index of `text` = this text with [start, end) replaced by new_text, in O(lines)
        array work instead of a rescan (typing must stay cheap on long files)."""
        old = self.text
        if "\r" in new_text or old[start - 1:start] == "\r" or old[end:end + 1] == "\r":
            return LineIndex(text)  # a CR next to the edit may join or split a CRLF: rescan
        keep = int(np.searchsorted(self.starts, start, side="right"))   # lines starting at or before start
        tail = int(np.searchsorted(self.starts, end, side="right"))     # lines starting after end shift
        new = [start + i + 1 for i, ch in enumerate(new_text) if ch == "\n"] if "\n" in new_text else []
        delta = len(new_text) - (end - start)
        starts = np.concatenate((self.starts[:keep], np.array(new, np.int64), self.starts[tail:] + delta))
        return self._of(text, starts)

    @property
    def lines(self) -> int:
        return len(self.starts)

    def line_text(self, line: int) -> tuple[int, str]:
        """(start offset, content of the line without its terminator)."""
        start = int(self.starts[line])
        end = int(self.starts[line + 1]) if line + 1 < len(self.starts) else len(self.text)
        return start, self.text[start:end].rstrip("\r\n")  # a line holds at most one terminator

    def offset(self, line, character, encoding: str = "utf-16") -> int:
        """The str offset of an LSP position."""
        for name, v in (("line", line), ("character", character)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise PositionError(f"position {name} must be a non-negative integer, got {v!r}")
        if line >= len(self.starts):
            return len(self.text)
        start, seg = self.line_text(line)
        if encoding == "utf-32" or seg.isascii():
            return start + min(character, len(seg))
        used = 0
        for i, ch in enumerate(seg):
            used += _width(ch, encoding)
            if used > character:
                return start + i
        return start + len(seg)

    def position(self, offset: int, encoding: str = "utf-16") -> dict:
        """The LSP position of a str offset."""
        offset = max(0, min(offset, len(self.text)))
        line = int(np.searchsorted(self.starts, offset, side="right")) - 1
        start = int(self.starts[line])
        return {"line": line, "character": units(self.text[start:offset], encoding)}
