"""Message framing: how JSON-RPC bodies are cut out of a byte stream, and written to one.

Two framings carry the same messages:
  LSP       `Content-Length: N\\r\\n` (other headers ignored) `\\r\\n`, then N bytes of UTF-8 JSON;
            N counts bytes, never characters.
  JSON lines one message per line (JSON escapes every newline inside strings, so a line is a message).

A reader's `read()` returns the next body (bytes), a `FrameError` (returned, not raised: the stream
stays usable and the dispatcher answers it with id null), or None at end of input. Nothing is ever
held in memory beyond `max_bytes`: an oversized body, header line or JSON line is read and dropped in
chunks. After a malformed header block the reader resynchronises on the next `Content-Length:`,
even one that starts in the middle of a line (after a body shorter than its header claimed).

Writers serialise whole frames under a lock, so the reader thread's error answers and the worker's
results never interleave on stdout.
"""
from __future__ import annotations

import threading

MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # default cap: ~100x a 2,000-line source file
MAX_HEADER_LINE = 8192
MAX_HEADER_LINES = 64
CHUNK = 64 * 1024
_TOO_LONG = object()
_CONTENT_LENGTH = b"content-length:"


class FrameError:
    """A message that could not be cut out of the stream; the stream itself is still in sync."""

    def __init__(self, reason: str, too_big: bool = False):
        self.reason, self.too_big = reason, too_big

    def __repr__(self):
        return f"FrameError({self.reason!r})"


class _Reader:
    def __init__(self, stream, max_bytes: int = MAX_MESSAGE_BYTES):
        self.stream, self.max_bytes = stream, max_bytes
        self._pushback = b""

    def _readline(self, limit: int):
        """One line (newline kept; without one only at EOF), or _TOO_LONG after discarding it."""
        if self._pushback:
            line, self._pushback = self._pushback, b""
            return line
        line = self.stream.readline(limit + 1)
        if len(line) > limit and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):  # drop the rest of the line, chunk by chunk
                line = self.stream.readline(CHUNK)
            return _TOO_LONG
        return line

    def _discard(self, n: int) -> bool:
        """Skip n bytes without keeping them; False at EOF."""
        while n > 0:
            got = len(self.stream.read(min(n, CHUNK)))
            if not got:
                return False
            n -= got
        return True


class LspReader(_Reader):
    """Reads `Content-Length` framed bodies (the LSP base protocol)."""

    def read(self):
        length, bad, lines = None, None, 0
        while True:
            line = self._readline(MAX_HEADER_LINE)
            if line == b"":
                return None  # EOF, possibly inside a header block: nothing more to answer
            if line is _TOO_LONG:
                bad, lines = bad or "header line too long", lines + 1
                continue
            text = line.rstrip(b"\r\n")
            if not text:
                if lines == 0:
                    continue  # stray blank lines between messages
                break
            start = text.lower().find(_CONTENT_LENGTH)
            if start > 0:  # a header starting mid-line: report what came before, resync on it
                self._pushback = line[start:]
                return FrameError("garbage before a Content-Length header")
            lines += 1
            if lines > MAX_HEADER_LINES:
                bad = bad or "too many header lines"
                continue
            name, sep, value = text.partition(b":")
            if not sep:
                bad = bad or f"malformed header line {_show(text)}"
            elif name.strip().lower() == b"content-length":
                value = value.strip()
                if not (value.isdigit() and len(value) <= 15) or (length is not None and int(value) != length):
                    bad = bad or f"invalid Content-Length {_show(value)}"
                else:
                    length = int(value)
        if length is None:
            return FrameError(bad or "missing Content-Length header")
        if bad or length > self.max_bytes:
            if not self._discard(length):
                return None
            if bad:
                return FrameError(bad)
            return FrameError(f"message of {length} bytes exceeds the cap of {self.max_bytes} bytes", True)
        body = self.stream.read(length)
        if len(body) < length:
            return None  # EOF inside a body
        return body


class JsonLinesReader(_Reader):
    """Reads one body per line; blank lines are skipped."""

    def read(self):
        while True:
            line = self._readline(self.max_bytes)
            if line == b"":
                return None
            if line is _TOO_LONG:
                return FrameError(f"line exceeds the cap of {self.max_bytes} bytes", True)
            line = line.strip()
            if line:
                return line


class _Writer:
    def __init__(self, stream):
        self.stream = stream
        self.lock = threading.Lock()

    def send(self, body: bytes) -> None:
        frame = self.frame(body)
        with self.lock:
            self.stream.write(frame)
            self.stream.flush()


class LspWriter(_Writer):
    @staticmethod
    def frame(body: bytes) -> bytes:
        return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


class JsonLinesWriter(_Writer):
    @staticmethod
    def frame(body: bytes) -> bytes:
        return body + b"\n"  # bodies are ASCII JSON without raw newlines (see jsonrpc.encode)


def _show(raw: bytes) -> str:
    return repr(raw[:40].decode("ascii", "replace"))


def make(jsonl: bool, stdin, stdout, max_bytes: int = MAX_MESSAGE_BYTES):
    """(reader, writer) for the chosen framing over binary streams."""
    if jsonl:
        return JsonLinesReader(stdin, max_bytes), JsonLinesWriter(stdout)
    return LspReader(stdin, max_bytes), LspWriter(stdout)
