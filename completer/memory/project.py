"""Project: the files of a workspace read into a Memory, in the background.

    project = Project(memory, [root], log)
    project.start()            # a daemon thread; completion keeps working (network alone) meanwhile
    project.wait(timeout)      # tests, `completer complete --project`
    project.reread(path)       # a file saved or changed on disk: learn what changed in it
    project.knows(text)        # True if exactly this text was read (an opened document: not again)

Files are found with completer.discovery's rules (the trainer's: `*.py`, no hidden folders,
virtualenvs, build/dist, binary, non-UTF-8 or oversized files, symlink loops), counted in the log.
At most MAX_CHARS characters are read (a home folder opened as a workspace stays bounded); the
memory's own tables are fixed-size whatever is read (completer.memory.store). Anything that goes
wrong while reading (a folder that vanishes, a permission error) is logged in one line, and
completion goes on with what was read.
"""
from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

from completer.engine.documents import common_prefix

MAX_CHARS = 64_000_000


def _key(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


class Project:
    def __init__(self, memory, roots, log, max_chars: int = MAX_CHARS):
        self.memory, self.roots, self.log, self.max_chars = memory, [Path(r) for r in roots], log, max_chars
        self.texts: dict[Path, str] = {}       # what was read of each file, for rereads
        self.read_keys: set[str] = set()
        self.files = self.chars = 0
        self.done = threading.Event()
        self._lock = threading.Lock()           # rereads and the first read, one at a time

    def start(self) -> "Project":
        threading.Thread(target=self._read_all, name="completer-project", daemon=True).start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)

    def knows(self, text: str) -> bool:
        return _key(text) in self.read_keys

    def _read_all(self) -> None:
        from completer.discovery import discover

        t = time.perf_counter()
        try:
            with self._lock:
                for root in self.roots:
                    corpus = discover(root)
                    for f in corpus.files:
                        if self.chars + len(f.text) > self.max_chars:
                            self.log.warning("project memory: stopped at %s characters (the limit)", f"{self.chars:,}")
                            return
                        self._learn(root / f.path, f.text)
                    self.log.info("project memory: %s: %d files, %s characters in %.1fs; skipped %s", root,
                                  len(corpus.files), f"{corpus.chars:,}", time.perf_counter() - t,
                                  corpus.skip_summary())
        except Exception as exc:  # a workspace that vanishes or cannot be read: the network alone
            self.log.warning("project memory: reading stopped: %s", exc)
        finally:
            self.done.set()

    def _learn(self, path: Path, text: str) -> None:
        self.memory.learn_text(text)
        self.files += 1
        self.chars += len(text)
        self._remember(path, text)

    def _remember(self, path: Path, text: str) -> None:
        self.texts[path] = text
        self.read_keys.add(_key(text))

    def reread(self, path) -> None:
        """Learn the part of a file that differs from what was read of it (the whole file if new)."""
        from completer.discovery import read_source

        path = Path(path)
        text, reason = read_source(path)
        if text is None:
            self.log.info("project memory: %s not read again (%s)", path, reason)
            return
        with self._lock:
            old = self.texts.get(path, "")
            if text == old:
                return
            a = common_prefix(old, text)
            n = min(len(old), len(text)) - a
            b = len(text) - common_prefix(old[len(old) - n:][::-1], text[len(text) - n:][::-1])
            self.memory.learn_text(text[a:b], context=text[:a])
            self.chars += b - a
            self._remember(path, text)
