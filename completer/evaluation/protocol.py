"""The protocol of `completer eval` (shared/bench/ANCHORS.md): the files, the samples and the scores.

    docs = read_files(["src/pkg/a.py", "tests/"])
    cuts = cut_points(docs)                  # (doc, offset): where a line is completed
    lines = keystroke_lines(docs)            # whole lines typed one keystroke at a time
    em, es, ci95 = line_scores(docs, cuts, completions)

See completer.evaluation.evaluate for what is measured and how.
"""
from __future__ import annotations

import bz2
import difflib
import lzma
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from completer.discovery import discover
from completer.errors import CompleterError

CUTS = 1000             # line-completion cut points
SEED = 0
MAX_CHARS = 80          # a line suggestion: up to this many characters or a newline
TRUTH_CHARS = 2000      # a rest of line is scored on at most this many characters (see line_scores)
KEYSTROKE_CHARS = 20_000
COLD_CHARS = 2000       # --cold: each file's first characters


@dataclass
class Doc:
    path: str
    text: str


# ---- inputs ----------------------------------------------------------------------------------
def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CompleterError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise CompleterError(f"{path}: cannot read: {exc.strerror or exc}") from None


def read_files(paths, log=None) -> list[Doc]:
    """The files to evaluate: files as given, folders as `completer train` reads them
    (completer.discovery: binary, non-UTF-8, empty... files skipped, and `log`ged with counts)."""
    docs = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            corpus = discover(p)
            if not corpus.files:
                raise CompleterError(f"{p}: no usable source files (skipped {corpus.skip_summary()})")
            if log:
                log(f"{p}: {len(corpus.files)} files, skipped {corpus.skip_summary()}")
            docs += [Doc(str(corpus.root / f.path), f.text) for f in corpus.files]
        elif p.is_file():
            text = _read(p)
            if not text:
                raise CompleterError(f"{p}: the file is empty")
            docs.append(Doc(str(p), text))
        else:
            raise CompleterError(f"{p}: no such file or folder")
    seen, unique = set(), []
    for d in docs:  # a file named twice (or inside a named folder) counts once
        key = Path(d.path).resolve()
        if key not in seen:
            seen.add(key)
            unique.append(d)
    return unique


def train_texts(corpus, exclude: list[Doc]) -> list[str]:
    """Every file of the training corpus folder (as `completer train` reads it) except the evaluated ones."""
    root = Path(corpus).expanduser()
    if not root.is_dir():
        raise CompleterError(f"{root}: the training corpus must be a folder")
    skip = {Path(d.path).resolve() for d in exclude}
    texts = [f.text for f in discover(root).files if (root / f.path).resolve() not in skip]
    if not texts:
        raise CompleterError(f"{root}: no Python files left to train the references on")
    return texts


# ---- the protocol's samples and scores ---------------------------------------------------------
def cut_points(docs: list[Doc], n: int = CUTS, seed: int = SEED) -> list[tuple[int, int]]:
    """(doc index, offset) pairs, sorted: uniform over characters whose rest of line is not blank."""
    eligible = []
    for d, doc in enumerate(docs):
        text = doc.text
        start = 0
        for line in text.split("\n"):
            # offset j in the line is eligible while line[j:] has a non-blank character
            last = len(line.rstrip())
            if last:
                eligible.append(np.stack([np.full(last, d), start + np.arange(last)], axis=1))
            start += len(line) + 1
    if not eligible:
        return []
    eligible = np.concatenate(eligible)
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(len(eligible), size=min(n, len(eligible)), replace=False))
    return [(int(d), int(p)) for d, p in eligible[picks]]


def rest_of_line(text: str, pos: int, limit: int | None = None) -> str:
    """text from pos to the end of its line, or to `limit` characters if the line goes on."""
    stop = len(text) if limit is None else min(len(text), pos + limit)
    end = text.find("\n", pos, stop)
    return text[pos:stop] if end < 0 else text[pos:end]


def line_match(generated: str, truth: str) -> tuple[bool, float]:
    """(Exact Match, Edit Similarity 0-100) of one completion, trailing whitespace stripped."""
    g, t = generated.rstrip(), truth.rstrip()
    return g == t, difflib.SequenceMatcher(None, g, t).ratio() * 100.0


def keystroke_lines(docs: list[Doc], min_chars: int = KEYSTROKE_CHARS, seed: int = SEED):
    """(doc index, start, end) of whole non-blank lines, in a seeded order, until min_chars."""
    lines = []
    for d, doc in enumerate(docs):
        start = 0
        for line in doc.text.split("\n"):
            if line.strip():
                lines.append((d, start, start + len(line)))
            start += len(line) + 1
    order = np.random.default_rng(seed).permutation(len(lines))
    picked, total = [], 0
    for i in order:
        if total >= min_chars:
            break
        picked.append(lines[i])
        total += lines[i][2] - lines[i][1]
    return picked


def keystrokes(hits, max_chars: int = MAX_CHARS) -> int:
    """Keystrokes to type a line, given whether the greedy guess at each of its characters is right.

    At each point the suggestion matches the rest of the line for as many characters as the guesses
    stay right (at most max_chars); 2 or more are accepted with one keystroke, otherwise one
    character is typed."""
    n, q, keys = len(hits), 0, 0
    while q < n:
        m = 0
        while q + m < n and m < max_chars and hits[q + m]:
            m += 1
        q += m if m >= 2 else 1
        keys += 1
    return keys


def compressed_bpc(train: str, test: str, compressor: str) -> float:
    """Bits per character of `test` that a compressor needs after seeing `train`."""
    if compressor == "lzma":
        size = lambda s: len(lzma.compress(s.encode("utf-8"), preset=9 | lzma.PRESET_EXTREME))
    elif compressor == "bz2":
        size = lambda s: len(bz2.compress(s.encode("utf-8"), compresslevel=9))
    elif compressor == "zpaq":
        size = _zpaq_size
    else:
        raise CompleterError(f"unknown compressor {compressor!r}")
    return 8.0 * (size(train + test) - size(train)) / len(test)


def _zpaq_size(text: str) -> int:
    """Bytes of a zpaq -method 5 archive (context mixing, one thread) holding `text` as one file."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "text", Path(tmp) / "text.zpaq"
        src.write_bytes(text.encode("utf-8"))
        run = subprocess.run(["zpaq", "a", str(out), str(src), "-method", "5", "-threads", "1"],
                             capture_output=True, timeout=600)
        if run.returncode != 0 or not out.is_file():
            raise CompleterError(f"zpaq failed: {run.stderr.decode(errors='replace').strip()[-200:]}")
        return out.stat().st_size


# ---- the report ---------------------------------------------------------------------------------
def line_scores(docs, cuts, completions) -> tuple[float, float, float]:
    """(Exact Match %, Edit Similarity, 95% half-interval of EM in points) of one completion per cut.

    The truth is the rest of the line, cut at TRUTH_CHARS: difflib costs O(len(truth)) per cut, so a
    minified file's one 400 kB line made scoring ~20x slower per character than the reading itself.
    No line of ordinary code reaches the cap, so no figure changes; past it EM is False either way (a
    suggestion has at most MAX_CHARS) and ES, at most 2 x 80 / 2,000 = 8 either way, is a little higher."""
    scores = [line_match(g, rest_of_line(docs[d].text, pos, TRUTH_CHARS)) for g, (d, pos) in zip(completions, cuts)]
    em = float(np.mean([s[0] for s in scores]))
    ci95 = 100.0 * 1.96 * math.sqrt(em * (1 - em) / len(scores))
    return 100.0 * em, float(np.mean([s[1] for s in scores])), ci95


def cold_docs(docs: list[Doc], n: int = COLD_CHARS) -> list[Doc]:
    """The cold-start scenario's files: each file's first n characters (a new project each)."""
    return [Doc(d.path, d.text[:n]) for d in docs if d.text[:n].strip()]
