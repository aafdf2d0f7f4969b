"""Project: the files of a workspace read into a Memory, in the background.

    project = Project(memory, [root], log, cache=None)   # cache: a completer.memory.cache.Cache
    project.start()            # a daemon thread; completion keeps working (network alone) meanwhile
    project.wait(timeout)      # tests, `completer complete --project`
    project.reread(path)       # a file saved or changed on disk: learn what changed in it
    project.knows(text)        # True if exactly this text was read (an opened document: not again)

Files are found with completer.discovery's rules (the trainer's: `*.py`, no hidden folders,
virtualenvs, build/dist, binary, non-UTF-8 or oversized files, symlink loops), counted in the log.
At most MAX_CHARS characters are read (a home folder opened as a workspace stays bounded); the
memory's own tables are fixed-size whatever is read (completer.memory.store). Anything that goes
wrong while reading (a folder that vanishes, a permission error) is logged in one line, and
completion goes on with what was read. With a cache (completer.memory.cache), a read whose files
all hash as they did when the cache was written is loaded instead of learnt; otherwise the project
is read and the cache written anew (a corrupt cache costs one log line and a fresh read).
"""
from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

from completer.engine.documents import common_prefix
from completer.memory.store import PREFAULT_AFTER

MAX_CHARS = 64_000_000


def _key(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


class Project:
    def __init__(self, memory, roots, log, max_chars: int = MAX_CHARS, cache=None):
        self.memory, self.roots, self.log, self.max_chars = memory, [Path(r) for r in roots], log, max_chars
        self.cache = cache
        self.from_cache = False
        self.texts: dict[Path, str] = {}       # what was read of each file, for rereads
        self.read_keys: set[str] = set()
        self.files = self.chars = 0
        self.done = threading.Event()
        self._lock = threading.Lock()           # rereads and the first read, one at a time

    def start(self) -> "Project":
        self.memory.roots = list(self.roots)
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
                files, total = [], 0
                for root in self.roots:
                    corpus = discover(root)
                    self.log.info("project memory: %s: %d files, %s characters; skipped %s", root,
                                  len(corpus.files), f"{corpus.chars:,}", corpus.skip_summary())
                    for f in corpus.files:
                        if total + len(f.text) > self.max_chars:
                            self.log.warning("project memory: %s characters at most; the rest is not read",
                                             f"{self.max_chars:,}")
                            break
                        files.append((root / f.path, f.text))
                        total += len(f.text)
                if total >= PREFAULT_AFTER:  # before anything is written (see Memory.prefault)
                    self.memory.prefault()
                hashes = {str(path): _key(text) for path, text in files}
                if self.cache is not None and self._load_cache(hashes):
                    for path, text in files:
                        self._remember(path, text)
                    self.files, self.chars, self.from_cache = len(files), total, True
                else:
                    for path, text in files:
                        self._learn(path, text)
                    self._save_cache(hashes)
                self.log.info("project memory: %d files, %s characters %s in %.1fs", self.files,
                              f"{self.chars:,}", "loaded from the cache" if self.from_cache else "read",
                              time.perf_counter() - t)
        except Exception as exc:  # a workspace that vanishes or cannot be read: the network alone
            self.log.warning("project memory: reading stopped: %s", exc)
        finally:
            self.done.set()

    def _load_cache(self, hashes: dict) -> bool:
        try:
            return self.cache.load(self.memory, hashes)
        except Exception as exc:  # corrupt, truncated, foreign: read the project again
            self.log.warning("project memory: cache %s unusable (%s: %s); reading the project again",
                             self.cache.path, type(exc).__name__, exc)
            return False

    def _save_cache(self, hashes: dict) -> None:
        if self.cache is None:
            return
        try:
            self.cache.save(self.memory, hashes)
        except OSError as exc:
            self.log.warning("project memory: cache not written: %s", exc)
        finally:
            from completer.system import heap

            heap.trim()  # the save's copies (~100 MB for a large project) go back to the OS

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


def read_project(engine, roots, log, cache: bool = True) -> Project:
    """Start reading `roots` into the engine's memory (which must be on), with the cache of this
    model and these roots unless cache=False. The one way frontends read a project."""
    from completer.memory.cache import Cache, model_identity

    store = None
    path = engine.meta.get("path")
    if cache and path:
        store = Cache.for_project(model_identity(path), roots)
    return Project(engine.memory, roots, log, cache=store).start()
