"""Which files of a repository are source text: the discovery rules `completer train` (and `completer
eval DIR`) share. Runtime module: it imports nothing from completer_trainers.

`discover(root, include=(), max_bytes=MAX_FILE_BYTES) -> Corpus` walks `root` for `*.py` files (plus
any `include` globs, matched against the repo-relative path or the file name) and reads each as
UTF-8 text, skipping what a user would not want to learn from and counting why:
  directories: `.git` and every hidden folder, virtualenvs (any folder with a `pyvenv.cfg`, and
               `venv`/`env`), `site-packages`, `node_modules`, `build`, `dist`, `__pycache__`,
               `*.egg-info`, symlink loops (a directory already walked), unreadable ones;
  files:       anything but a regular file (a FIFO, socket or device would block or never end),
               binary (a NUL byte), not UTF-8, larger than `max_bytes` (default 1 MB), empty,
               unreadable, or a symlink to a file already taken.
Text is decoded as UTF-8 (a BOM is dropped) with `\\r\\n` turned into `\\n`, as an editor shows it.

`walk(root, skip, ...)` is the same walk as a generator, one file read at a time, for readers that
must stay bounded in memory (the project memory's: it stops once it has enough, and with
`contained=True` never leaves the folder through a symbolic link nor enters /proc or /sys).
The walk is iterative (an explicit stack, not recursion), so depth is bounded only by the file
system's path length, not by Python's recursion limit. File names that are not valid UTF-8 keep
the operating system's bytes as surrogate escapes (`os.fsdecode`); `display(path)` makes one printable.
"""
from __future__ import annotations

import fnmatch
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from completer.errors import CompleterError

MAX_FILE_BYTES = 1_000_000
SKIP_DIRS = {"site-packages": "site-packages", "node_modules": "node_modules", "build": "build/dist",
             "dist": "build/dist", "__pycache__": "__pycache__", "venv": "virtualenv", "env": "virtualenv"}


@dataclass
class SourceFile:
    path: str   # repo-relative, with "/" separators (undecodable bytes as surrogate escapes)
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

    def skip_counts(self) -> dict[str, int]:
        """{reason: number of files skipped for it}."""
        return {r: len(v) for r, v in sorted(self.skipped.items())}

    def skip_summary(self) -> str:
        """'3 files (1 binary, 2 empty), 2 directories (2 hidden)' or 'nothing'."""
        parts = []
        for one, many, d in (("file", "files", self.skipped), ("directory", "directories", self.skipped_dirs)):
            n = sum(len(v) for v in d.values())
            if n:
                reasons = ", ".join(f"{len(v)} {r}" for r, v in sorted(d.items()))
                parts.append(f"{n} {one if n == 1 else many} ({reasons})")
        return ", ".join(parts) or "nothing"


def display(path: str) -> str:
    """A path as printable text: undecodable bytes of its name shown as \\xNN."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _dir_skip_reason(name: str, path: str) -> str | None:
    if name.startswith("."):
        return "hidden"
    if name.endswith(".egg-info"):
        return "egg-info"
    if name in SKIP_DIRS:
        return SKIP_DIRS[name]
    if os.path.isfile(os.path.join(path, "pyvenv.cfg")):
        return "virtualenv"
    return None


def _wanted(rel: str, name: str, include) -> bool:
    if name.endswith(".py"):
        return True
    return any(fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(name, g) for g in include)


def read_source(path, max_bytes: int = MAX_FILE_BYTES) -> tuple[str | None, str | None]:
    """(text, None) or (None, reason) for one file. Only a regular file is opened (O_NONBLOCK, so
    that even a FIFO swapped in after the check cannot block the open)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError:
        return None, "unreadable"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, "not a regular file"
        if st.st_size > max_bytes:
            return None, "too large"
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)
    except OSError:
        return None, "unreadable"
    finally:
        os.close(fd)
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


def discover(root, include=(), max_bytes: int = MAX_FILE_BYTES) -> Corpus:
    """Every usable source file under `root`, sorted by path, and what was skipped and why."""
    skipped, skipped_dirs = {}, {}

    def skip(reason, rel, is_dir):
        (skipped_dirs if is_dir else skipped).setdefault(reason, []).append(rel)

    files = [SourceFile(rel, text) for _, rel, text in walk(root, skip, include, max_bytes)]
    files.sort(key=lambda f: f.path)
    return Corpus(Path(root).expanduser(), files, skipped, skipped_dirs)


# pseudo file systems: no source there, and walking them is slow (/proc) or endless (/sys's links)
VIRTUAL_FS = {"proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "securityfs", "debugfs", "tracefs",
              "pstore", "bpf", "mqueue", "hugetlbfs", "configfs", "fusectl", "binfmt_misc", "autofs",
              "efivarfs", "rpc_pipefs", "nsfs"}


def _virtual_mounts() -> set:
    try:
        with open("/proc/self/mounts", "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return set()
    out = set()
    for line in lines:
        parts = line.split()
        if len(parts) > 2 and parts[2].decode("ascii", "replace") in VIRTUAL_FS:
            out.add(os.fsdecode(parts[1].replace(b"\\040", b" ")))
    return out


def _inside(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip(os.sep) + os.sep)


def walk(root, skip, include=(), max_bytes: int = MAX_FILE_BYTES, contained: bool = False):
    """Yield (path, repo-relative path, text) for each usable source file under `root`, one at a
    time, reading each only when it is reached (a caller that stops iterating stops the walk, and
    at most one file's text is held here). skip(reason, rel, is_dir) is told what is left out.
    contained=True (the project reader): never leave `root` through a symbolic link (a link whose
    target lies outside is skipped, "outside the folder"), and never enter a pseudo file system
    (/proc, /sys, ...: "system"); a directory reached through a link is walked once."""
    root = Path(root).expanduser()
    if not root.exists():
        raise CompleterError(f"no such directory: {display(str(root))}")
    if not root.is_dir():
        raise CompleterError(f"not a directory: {display(str(root))}")
    include = list(include or [])
    top = os.path.realpath(root) if contained else None
    virtual = _virtual_mounts() if contained else set()
    # (dev, ino) of the directories walked: every one (loops through links), or when contained,
    # only those reached through a link (a loop needs one; a walk of / meets ~10^5 directories)
    seen_dirs, seen_files = set(), set()
    stack = [(str(root), "", True)]                             # (path, repo-relative path, via a link)
    while stack:
        path, rel, linked = stack.pop()
        try:
            if linked or not contained:
                st = os.stat(path)
                if (st.st_dev, st.st_ino) in seen_dirs:
                    skip("symlink loop", rel, True)
                    continue
                seen_dirs.add((st.st_dev, st.st_ino))
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            skip("unreadable", rel or ".", True)
            continue
        subdirs = []
        for e in entries:
            erel = f"{rel}/{e.name}" if rel else e.name
            try:
                is_dir = e.is_dir()  # follows symlinks; a broken link is neither dir nor file
                is_link = contained and e.is_symlink()
            except OSError:
                is_dir = is_link = False
            if is_link and not _inside(os.path.realpath(e.path), top):
                if is_dir or _wanted(erel, e.name, include):
                    skip("outside the folder", erel, is_dir)
                continue
            if is_dir:
                reason = _dir_skip_reason(e.name, e.path)
                if not reason and contained and e.path in virtual:
                    reason = "system"
                if reason:
                    skip(reason, erel, True)
                else:
                    subdirs.append((e.path, erel, is_link))
                continue
            if not _wanted(erel, e.name, include):
                continue
            try:
                st = os.stat(e.path)
            except OSError:
                skip("unreadable", erel, False)
                continue
            if not stat.S_ISREG(st.st_mode):
                skip("not a regular file", erel, False)
                continue
            if (st.st_dev, st.st_ino) in seen_files:
                skip("duplicate (symlink)", erel, False)
                continue
            seen_files.add((st.st_dev, st.st_ino))
            text, reason = read_source(e.path, max_bytes)
            if reason:
                skip(reason, erel, False)
            else:
                yield e.path, erel, text
        stack.extend(reversed(subdirs))                         # depth first, in name order
