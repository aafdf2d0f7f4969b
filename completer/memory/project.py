"""Project: the files of a workspace read into a Memory, in the background.

    project = Project(memory, [root], log, cache=None)   # cache: a completer.memory.cache.Cache
    project.start()            # a daemon thread; completion keeps working meanwhile
    project.wait(timeout)      # until the read and every queued reread are done (tests, `complete --project`)
    project.reread(path)       # a file saved or changed on disk: queued, never waited for
    project.knows(text)        # True if exactly this text was read (an opened document: not again)

Files are found with completer.discovery's rules (the trainer's: `*.py`, no hidden folders,
virtualenvs, build/dist, binary, non-UTF-8 or oversized files), walked with `contained=True`: a
symbolic link that leaves the workspace is not followed, nor /proc or /sys. Bounded in memory
whatever the workspace (a home folder, or /): files are read one at a time as the walk reaches
them, and the walk stops once MAX_CHARS characters are read; what is kept per file is its path and
a hash, plus the texts of the most recent files up to KEEP_CHARS (a reread of one of those learns
only what changed; of another, the whole file). The memory's tables are fixed-size whatever is read
(completer.memory.store).

One worker thread at a time does all the reading: the first read, then the rereads queued while it
ran, then it ends (a later reread starts another). `reread` only queues the path (deduplicated, at
most MAX_PENDING), so the thread that answers requests never waits for a read: a storm of saves
during the first read costs nothing there. A reread only learns files inside the workspace.

With a cache (completer.memory.cache) that exists, the files are first only hashed; if they all
hash as they did when the cache was written, it is loaded instead of learnt. Otherwise the project
is learnt and the cache written anew, before the memory learns any typed text: the project sets
`memory.reading` for that time and the engine holds typed text back (DocCache.feed) until it is
cleared, so the cache holds only what was read from disk. Anything that goes wrong (a folder that
vanishes, a permission error, a refused cache) is logged in one line, and completion goes on with
what was read. An empty workspace reads nothing and logs one debug line.
"""
from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict

from completer.engine.documents import common_prefix
from completer.memory.store import PREFAULT_AFTER

MAX_CHARS = 64_000_000     # characters read at most (then the walk stops)
KEEP_CHARS = 4_000_000     # texts kept for rereads' differences (the most recent files)
MAX_PENDING = 10_000       # rereads queued at most


def _key(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def _inside(path: str, tops) -> bool:
    return any(path == t or path.startswith(t.rstrip(os.sep) + os.sep) for t in tops)


class Project:
    def __init__(self, memory, roots, log, max_chars: int = MAX_CHARS, cache=None):
        self.memory, self.log, self.max_chars, self.cache = memory, log, max_chars, cache
        self.roots = [os.fspath(r) for r in roots]
        self.from_cache = False
        self.keys: dict[str, str] = {}             # path -> key of the text read (every file)
        self.texts: OrderedDict[str, str] = OrderedDict()   # path -> text, the latest KEEP_CHARS
        self._kept = 0
        self.read_keys: set[str] = set()
        self.files = self.chars = 0
        self.done = threading.Event()               # the first read is over
        self._cv = threading.Condition()            # _pending and _busy
        self._pending: dict[str, None] = {}         # rereads queued, in order, once each
        self._busy = False                          # a worker thread runs
        self._dropped = False

    # ---- the frontends' side: never waits for a read ---------------------------------------
    def start(self) -> "Project":
        self.memory.roots = list(self.roots)
        if self.cache is not None:
            self.memory.reading = True              # typed text waits for the cache (see above)
        with self._cv:
            self._busy = True
        threading.Thread(target=self._run, name="completer-project", daemon=True).start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: self.done.is_set() and not self._busy, timeout)

    def knows(self, text: str) -> bool:
        return _key(text) in self.read_keys

    def reread(self, path) -> None:
        """Queue a file saved or changed on disk; the worker learns what changed in it."""
        path = os.fspath(path)
        with self._cv:
            if path not in self._pending and len(self._pending) >= MAX_PENDING:
                if not self._dropped:
                    self._dropped = True
                    self.log.warning("project memory: %d files wait to be read again; more are ignored",
                                     MAX_PENDING)
                return
            self._pending[path] = None
            if not self._busy:
                self._busy = True
                threading.Thread(target=self._drain, name="completer-reread", daemon=True).start()

    # ---- the worker --------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._read_all()
        except Exception as exc:  # a workspace that vanishes or cannot be read: the network alone
            self.log.warning("project memory: reading stopped: %s", exc)
        finally:
            self.memory.reading = False
            self.done.set()
            self._drain()

    def _drain(self) -> None:
        while True:
            with self._cv:
                if not self._pending:
                    self._busy = self._dropped = False
                    self._cv.notify_all()
                    return
                path = next(iter(self._pending))
                del self._pending[path]
            try:
                self._reread(path)
            except Exception as exc:  # one file's trouble never stops the worker
                self.log.warning("project memory: %r not read again: %s", path, exc)

    def _walk(self):
        """(path, text) of each file to read, one at a time, MAX_CHARS in all; one line per root."""
        from completer.discovery import display, walk

        total = 0
        for root in self.roots:
            skipped: dict[str, int] = {}

            def skip(reason, rel, is_dir, skipped=skipped):
                skipped[reason] = skipped.get(reason, 0) + 1

            files = chars = 0
            try:
                for path, _, text in walk(root, skip, contained=True):
                    self.memory.pause()     # a prediction's decoder waits for no file's Python work
                    if total + len(text) > self.max_chars:
                        self.log.warning("project memory: %s characters at most; the rest is not read",
                                         f"{self.max_chars:,}")
                        return
                    files, chars, total = files + 1, chars + len(text), total + len(text)
                    yield path, text
            finally:
                reasons = ", ".join(f"{n} {r}" for r, n in sorted(skipped.items())) or "nothing"
                (self.log.info if files else getattr(self.log, "debug", self.log.info))(
                    "project memory: %s: %d files, %s characters; skipped %s", display(root), files,
                    f"{chars:,}", reasons)

    def _read_all(self) -> None:
        t = time.perf_counter()
        if self.cache is not None and self.cache.exists():
            # hash first (nothing learnt), then load the cache, or learn the files surveyed
            survey = [(path, _key(text), len(text)) for path, text in self._walk()]
            hashes = {path: key for path, key, _ in survey}
            if survey and self._load_cache(hashes):
                self.keys.update(hashes)
                self.read_keys.update(hashes.values())
                self.files, self.chars, self.from_cache = len(survey), sum(n for _, _, n in survey), True
                self._done_line(t)
                return
            del survey
            hashes = self._learn_all(self._reread_all(hashes))
        else:
            hashes = self._learn_all(self._walk())
        if hashes:
            self._save_cache(hashes)
            self._done_line(t)

    def _reread_all(self, hashes):
        from completer.discovery import read_source

        for path in hashes:
            text, _ = read_source(path)
            if text is not None:
                yield path, text

    def _learn_all(self, source) -> dict:
        """Learn every (path, text); -> {path: key} of what was learnt. The tables become huge
        pages first once PREFAULT_AFTER characters are due (see Memory.prefault): until then the
        texts wait (at most PREFAULT_AFTER characters and one file)."""
        waiting, due, hashes = [], 0, {}
        for path, text in source:
            if waiting is not None:
                waiting.append((path, text))
                due += len(text)
                if due < PREFAULT_AFTER:
                    continue
                self.memory.prefault()
                batch, waiting = waiting, None
            else:
                batch = [(path, text)]
            for p, x in batch:
                hashes[p] = self._learn(p, x)
        for p, x in waiting or ():
            hashes[p] = self._learn(p, x)
        return hashes

    def _done_line(self, t: float) -> None:
        self.log.info("project memory: %d files, %s characters %s in %.1fs", self.files, f"{self.chars:,}",
                      "loaded from the cache" if self.from_cache else "read", time.perf_counter() - t)

    def _load_cache(self, hashes: dict) -> bool:
        from completer.memory.cache import CacheRefused

        try:
            return self.cache.load(self.memory, hashes)
        except (CacheRefused, OSError) as exc:
            self.log.warning("project memory: cache %s refused (%s); reading the project again",
                             self.cache.path, exc)
        except Exception as exc:  # anything else the file made the reader raise
            self.log.warning("project memory: cache %s refused (%s: %s); reading the project again",
                             self.cache.path, type(exc).__name__, exc)
        return False

    def _save_cache(self, hashes: dict) -> None:
        if self.cache is None:
            return
        try:
            self.cache.save(self.memory, hashes)
        except Exception as exc:  # a full disk, a read-only home: the next start reads again
            self.log.warning("project memory: cache not written: %s", exc)
        finally:
            from completer.system import heap

            heap.trim()  # the save's copies go back to the OS

    def _learn(self, path: str, text: str) -> str:
        self.memory.learn_text(text, background=True)
        self.files += 1
        self.chars += len(text)
        return self._remember(path, text)

    def _remember(self, path: str, text: str) -> str:
        key = self.keys[path] = _key(text)
        self.read_keys.add(key)
        old = self.texts.pop(path, None)
        self._kept += len(text) - (len(old) if old is not None else 0)
        self.texts[path] = text
        while self._kept > KEEP_CHARS and len(self.texts) > 1:
            _, dropped = self.texts.popitem(last=False)
            self._kept -= len(dropped)
        return key

    def _reread(self, path: str) -> None:
        """Learn the part of a file that differs from what was read of it (the whole file if new,
        or if its text was not kept)."""
        from completer.discovery import read_source

        tops = [os.path.realpath(r) for r in self.roots]
        if not _inside(os.path.realpath(path), tops):
            getattr(self.log, "debug", self.log.info)("project memory: %r is outside the workspace", path)
            return
        text, reason = read_source(path)
        if text is None:
            self.log.info("project memory: %s not read again (%s)", path, reason)
            return
        if self.keys.get(path) == _key(text):
            return
        if path not in self.keys:
            self.files += 1
        old = self.texts.get(path, "")
        a = common_prefix(old, text)
        n = min(len(old), len(text)) - a
        b = len(text) - common_prefix(old[len(old) - n:][::-1], text[len(text) - n:][::-1])
        self.memory.learn_text(text[a:b], context=text[:a], background=True)
        self.chars += b - a
        self._remember(path, text)


def read_project(engine, roots, log, cache: bool = True) -> Project:
    """Start reading `roots` into the engine's memory (which must be on), with the cache of this
    model and these roots unless cache=False. The one way frontends read a project."""
    from completer.memory.cache import Cache, model_identity

    store = None
    path = engine.meta.get("path")
    if cache and path:
        try:
            store = Cache.for_project(model_identity(path), roots)
        except (OSError, ValueError) as exc:
            log.warning("project memory: no cache (%s)", exc)
    return Project(engine.memory, roots, log, cache=store).start()

