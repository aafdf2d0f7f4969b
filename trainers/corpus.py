"""The training corpus: which files of a repository are used, and how they split.

`discover(repo)` (completer.discovery, re-exported here: `completer eval` reads folders by the same
rule) walks a repository for `*.py` files and reads each as UTF-8 text, skipping binary, non-UTF-8,
too large and empty files, hidden folders, virtualenvs and the like, and counting why.

`split(files, val_fraction, seed, heldout)` divides whole files (never one cut text stream):
held-out files (repo-relative paths) are set aside entirely, then files of the rest, in an order drawn
from the seed, go to validation until it holds about `val_fraction` of the characters (at least one
file, and at least one left to train on). `digest(...)` fingerprints the corpus and its split so a run
can check that `--resume` sees the same data.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from completer.discovery import MAX_FILE_BYTES, SKIP_DIRS, Corpus, SourceFile, discover, read_source  # noqa: F401
from completer.errors import CompleterError


def split(files: list[SourceFile], val_fraction: float = 0.1, seed: int = 0, heldout=(), val_paths=()):
    """(train, val, held): whole files. val_paths names the validation files; else val_fraction
    of the characters in seeded whole files (at least one), or none at all when it is 0."""
    by_path = {f.path: f for f in files}
    heldout = [Path(h).as_posix() for h in heldout]  # "./a/b.py" -> "a/b.py"
    val_paths = [Path(v).as_posix() for v in val_paths]
    for flag, paths in (("--heldout", heldout), ("--val-files", val_paths)):
        missing = [h for h in paths if h not in by_path]
        if missing:
            raise CompleterError(f"{flag} {missing[0]}: not a usable file of the corpus "
                                 f"(give a path relative to REPO_DIR)")
    held_set, val_set = set(heldout), set(val_paths)
    if held_set & val_set:
        raise CompleterError(f"{sorted(held_set & val_set)[0]} is given both to --heldout and to --val-files")
    held = [by_path[h] for h in sorted(held_set)]
    rest = [f for f in sorted(files, key=lambda f: f.path) if f.path not in held_set]
    if val_paths or val_fraction == 0:
        train = [f for f in rest if f.path not in val_set]
        if not train:
            raise CompleterError("no file is left to train on besides the held-out and validation files")
        return train, [by_path[v] for v in sorted(val_set)], held
    if len(rest) < 2:
        raise CompleterError(f"need at least 2 usable files besides held-out ones (one to train, one to "
                             f"validate), found {len(rest)}")
    # files in a seeded order join validation until it holds val_fraction of the characters,
    # passing over any file that would overshoot 1.5x (one huge file must not take it all)
    target = val_fraction * sum(len(f.text) for f in rest)
    order = np.random.default_rng(seed).permutation(len(rest)).tolist()
    val_idx, val_chars = [], 0
    for i in order:
        if val_chars >= target or len(val_idx) == len(rest) - 1:
            break
        if val_chars + len(rest[i].text) <= 1.5 * target:
            val_idx.append(i)
            val_chars += len(rest[i].text)
    if not val_idx:  # every file alone overshoots: the smallest one
        val_idx = [min(order, key=lambda i: len(rest[i].text))]
    val = [f for i, f in enumerate(rest) if i in val_idx]
    train = [f for i, f in enumerate(rest) if i not in val_idx]
    return train, val, held


def digest(train: list[SourceFile], val: list[SourceFile]) -> str:
    """sha256 over every file's path and text and which side of the split it is on."""
    h = hashlib.sha256()
    for side, group in (("train", train), ("val", val)):
        for f in sorted(group, key=lambda f: f.path):
            h.update(f"{side}\0{f.path}\0".encode())
            h.update(hashlib.sha256(f.text.encode("utf-8", "surrogatepass")).digest())
    return h.hexdigest()
