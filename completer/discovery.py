"""Which files of a folder are source text: the one discovery rule of `train` and `eval`.

`discover(root)` walks a folder for `*.py` files (plus any `include` globs) and reads each as
UTF-8 text, skipping what a user would not want to learn from or be measured on, counting why:
  directories: `.git` and every hidden folder, virtualenvs (any folder with a `pyvenv.cfg`, and
               `venv`/`env`), `site-packages`, `node_modules`, `build`, `dist`, `__pycache__`,
               `*.egg-info`, and symlink loops (a directory already walked);
  files:       binary (a NUL byte), not UTF-8, larger than `max_bytes` (default 1 MB), empty,
               unreadable, or a symlink to a file already taken.
Text is decoded as UTF-8 (a BOM is dropped) with `\\r\\n` turned into `\\n`, as an editor shows it.

It lives in the runtime package because `completer eval` (serving side, which never imports
completer_trainers) must see a folder exactly as `completer train` does; completer_trainers.corpus
re-exports it.
"""
from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path

from completer.errors import CompleterError

MAX_FILE_BYTES = 1_000_000
SKIP_DIRS = {"site-packages": "site-packages", "node_modules": "node_modules", "build": "build/dist",
             "dist": "build/dist", "__pycache__": "__pycache__", "venv": "virtualenv", "env": "virtualenv"}


@dataclass
class SourceFile:
    path: str   # repo-relative, with "/" separators
    text: str


@dataclass
class Corpus:
    root: Path
    files: list[SourceFile]
    skipped: dict[str, list[str]] = field(default_factory=dict)       # reason -> file paths
    skipped_dirs: dict[str, list[str]] = field(default_factory=dict)  # reason -> directory paths

    @property
    def chars(self) -> int:
        return sum(len(f.text) for f in self.files)

    def skip_summary(self) -> str:
        """'3 files (1 binary, 2 empty), 2 directories (2 hidden)' or 'nothing'."""
        parts = []
        for one, many, d in (("file", "files", self.skipped), ("directory", "directories", self.skipped_dirs)):
            n = sum(len(v) for v in d.values())
            if n:
                reasons = ", ".join(f"{len(v)} {r}" for r, v in sorted(d.items()))
                parts.append(f"{n} {one if n == 1 else many} ({reasons})")
        return ", ".join(parts) or "nothing"


def _dir_skip_reason(entry: os.DirEntry) -> str | None:
    name = entry.name
    if name.startswith("."):
        return "hidden"
    if name.endswith(".egg-info"):
        return "egg-info"
    if name in SKIP_DIRS:
        return SKIP_DIRS[name]
    if os.path.isfile(os.path.join(entry.path, "pyvenv.cfg")):
        return "virtualenv"
    return None


def _wanted(rel: str, name: str, include) -> bool:
    if name.endswith(".py"):
        return True
    return any(fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(name, g) for g in include)


def read_source(path, max_bytes: int = MAX_FILE_BYTES) -> tuple[str | None, str | None]:
    """(text, None) or (None, reason) for one file."""
    try:
        size = os.stat(path).st_size
        if size > max_bytes:
            return None, "too large"
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError:
        return None, "unreadable"
    if len(data) > max_bytes:
        return None, "too large"
    if b"\0" in data:
        return None, "binary"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None, "not UTF-8"
    text = text.replace("\r\n", "\n")
    if not text.strip():
        return None, "empty"
    return text, None


def discover(repo, include=None, max_bytes: int = MAX_FILE_BYTES) -> Corpus:
    """Every usable source file under `repo`, sorted by path, and what was skipped and why."""
    root = Path(repo).expanduser()
    if not root.exists():
        raise CompleterError(f"no such directory: {root}")
    if not root.is_dir():
        raise CompleterError(f"not a directory: {root}")
    include = list(include or [])
    files, skipped, skipped_dirs = [], {}, {}
    seen_dirs, seen_files = set(), set()

    def skip(d, reason, rel):
        d.setdefault(reason, []).append(rel)

    def walk(path: str, rel: str):
        try:
            st = os.stat(path)
        except OSError:
            return skip(skipped_dirs, "unreadable", rel or ".")
        if (st.st_dev, st.st_ino) in seen_dirs:
            return skip(skipped_dirs, "symlink loop", rel)
        seen_dirs.add((st.st_dev, st.st_ino))
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError:
            return skip(skipped_dirs, "unreadable", rel or ".")
        for e in entries:
            erel = f"{rel}/{e.name}" if rel else e.name
            try:
                is_dir = e.is_dir()  # follows symlinks; a broken link is neither dir nor file
            except OSError:
                is_dir = False
            if is_dir:
                reason = _dir_skip_reason(e)
                if reason:
                    skip(skipped_dirs, reason, erel)
                else:
                    walk(e.path, erel)
                continue
            if not _wanted(erel, e.name, include):
                continue
            try:
                st = os.stat(e.path)
            except OSError:
                skip(skipped, "unreadable", erel)
                continue
            if (st.st_dev, st.st_ino) in seen_files:
                skip(skipped, "duplicate (symlink)", erel)
                continue
            seen_files.add((st.st_dev, st.st_ino))
            text, reason = read_source(e.path, max_bytes)
            if reason:
                skip(skipped, reason, erel)
            else:
                files.append(SourceFile(erel, text))

    walk(str(root), "")
    files.sort(key=lambda f: f.path)
    return Corpus(root, files, skipped, skipped_dirs)
