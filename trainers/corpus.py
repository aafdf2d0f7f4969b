"""The training corpus: which files of a repository are used (completer.discovery), and how they split.

Discovery lives in the runtime package (`completer/discovery.py`: `completer eval DIR` uses the same
rules); this module re-exports it for the trainer.

`split(files, val_fraction, seed, heldout)` divides whole files (never one cut text stream):
held-out files (repo-relative paths) are set aside entirely, then files of the rest, in an order drawn
from the seed, go to validation until it holds about `val_fraction` of the characters (at least one
file, and at least one left to train on). `digest(...)` fingerprints the corpus and its split so a run
can check that `--resume` sees the same data.

Several repositories (`completer train DIR DIR ...`, or `--corpus FILE` listing folders with
weights) make one corpus by `discover_many`: each file's path is prefixed with its folder's name
(`flask-3.0.3/src/flask/app.py`), and a folder's weight W makes its training files appear W times
per epoch (`weights`; its validation files count once).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from completer.model.vocab import UNK, Vocab

from completer.discovery import MAX_FILE_BYTES, Corpus, SourceFile, discover, display, read_source  # noqa: F401
from completer.errors import CompleterError

def read_manifest(path) -> list[tuple[Path, int]]:
    """[(folder, weight)] of a corpus file: one folder per line (relative to the file's own folder),
    optionally followed by xWEIGHT; `#` comments. As written by `python -m completer_trainers.fetch`."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CompleterError(f"--corpus {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    out = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        weight = 1
        if len(parts) == 2 and parts[1][:1] == "x" and parts[1][1:].isdigit() and int(parts[1][1:]) >= 1:
            weight = int(parts[1][1:])
        elif len(parts) != 1:
            raise CompleterError(f"--corpus {path}:{n}: expected FOLDER [xWEIGHT], got {line!r}")
        folder = Path(parts[0]).expanduser()
        out.append((folder if folder.is_absolute() else path.parent / folder, weight))
    if not out:
        raise CompleterError(f"--corpus {path}: lists no folder")
    return out


def discover_many(sources, include=(), max_bytes: int = MAX_FILE_BYTES) -> tuple[Corpus, dict]:
    """(corpus, weights {path: weight > 1}) of [(folder, weight)]. One folder of weight 1 is the
    plain `discover` (repo-relative paths); otherwise every path starts with its folder's name."""
    sources = [(Path(d).expanduser(), int(w)) for d, w in sources]
    if len(sources) == 1 and sources[0][1] == 1:
        return discover(sources[0][0], include, max_bytes), {}
    names = [d.resolve().name for d, _ in sources]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise CompleterError(f"two corpus folders are both named {dup[0]!r}: give each repository once "
                             f"(a weight xN repeats it)")
    files, skipped, skipped_dirs, weights = [], {}, {}, {}
    for (d, w), name in zip(sources, names):
        c = discover(d, include, max_bytes)
        for f in c.files:
            files.append(SourceFile(f"{name}/{f.path}", f.text))
            if w > 1:
                weights[files[-1].path] = w
        for src, dst in ((c.skipped, skipped), (c.skipped_dirs, skipped_dirs)):
            for reason, paths in src.items():
                dst.setdefault(reason, []).extend(f"{name}/{p}" for p in paths)
    return Corpus(sources[0][0], files, skipped, skipped_dirs), weights


def split(files: list[SourceFile], val_fraction: float = 0.1, seed: int = 0, heldout=(), val_paths=(),
          val_chars: int | None = None):
    """(train, val, held): whole files. val_paths names the validation files; else val_fraction
    of the characters (but at most about val_chars) in seeded whole files (at least one), or none
    at all when it is 0. Files beyond the cap train: a large corpus's 10% would otherwise sit idle."""
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
    limit = 1.5 * target
    if val_chars is not None:   # validation reads at most val_chars: whole files within it
        target, limit = min(target, val_chars), min(limit, val_chars)
    order = np.random.default_rng(seed).permutation(len(rest)).tolist()
    val_idx, val_chars = [], 0
    for i in order:
        if val_chars >= target or len(val_idx) == len(rest) - 1:
            break
        if val_chars + len(rest[i].text) <= limit:
            val_idx.append(i)
            val_chars += len(rest[i].text)
    if not val_idx:  # every file alone overshoots: the smallest one
        val_idx = [min(order, key=lambda i: len(rest[i].text))]
    val = [f for i, f in enumerate(rest) if i in val_idx]
    train = [f for i, f in enumerate(rest) if i not in val_idx]
    return train, val, held


def digest(train: list[SourceFile], val: list[SourceFile], weights: dict | None = None) -> str:
    """sha256 over every file's path and text and which side of the split it is on (and the
    weights of the training files read more than once per epoch)."""
    h = hashlib.sha256()
    for path, w in sorted((weights or {}).items()):
        h.update(f"weight\0{path}\0{w}\0".encode("utf-8", "surrogateescape"))
    for side, group in (("train", train), ("val", val)):
        for f in sorted(group, key=lambda f: f.path):
            h.update(f"{side}\0{f.path}\0".encode("utf-8", "surrogateescape"))
            h.update(hashlib.sha256(f.text.encode("utf-8", "surrogatepass")).digest())
    return h.hexdigest()


def char_counts(text: str) -> dict:
    """{character: occurrences} of text (one pass of numpy over its code points)."""
    cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)
    counts = np.bincount(cps)
    nz = np.flatnonzero(counts)
    return {chr(int(c)): int(counts[c]) for c in nz}


def capped_vocab(counts: dict, size: int | None = None, min_count: int = 1, base=None) -> tuple[Vocab, int, int]:
    """(vocabulary, characters left out, their occurrences) for training text's character counts.

    Characters seen fewer than min_count times are left out; then, most frequent first (ties by
    code point), at most size - 1 characters are kept (the last symbol is the unknown one). With
    base (a Vocab to fine-tune), its characters all stay and new ones join only while there is room:
    the cap never grows a vocabulary beyond it, nor shrinks the one being fine-tuned."""
    kept = set(base.chars) if base is not None else set()
    ranked = sorted((c for c, n in counts.items() if n >= min_count and c not in kept and c != UNK),
                    key=lambda c: (-counts[c], c))
    room = len(ranked) if size is None else max(0, size - 1 - len(kept))
    kept |= set(ranked[:room])
    vocab = Vocab(kept)
    out = [c for c in counts if c not in kept]
    return vocab, len(out), sum(counts[c] for c in out)
