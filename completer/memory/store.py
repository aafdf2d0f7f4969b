"""Memory: the compiled kernel (completer.memory._kernel) seen through the model's vocabulary.

Sizes (SIZES, every table allocated once, so memory stays bounded; pages are mapped as they are
first written, so a small project costs little):
    order 16          the n-gram's highest order
    low_log2 14       2^14 buckets of 62 followers for orders 1-2 (4 MiB)
    high_log2 19      2^19 buckets of 14 followers for orders 3-16, shared (32 MiB)
    history_log2 23   the last 2^23 characters read, for the match models (16 MiB)
    match_log2 21     2^21 positions per match model, 8 per key (6 x 8 MiB)
About 100 MiB at most; `Memory(vocab, high_log2=21, ...)` changes them. Past the history's size the
oldest text is forgotten by the match models; the n-gram's buckets replace their least used.

Starting weights: the mixer's weights at start (SETS x INPUTS float32) are learnt offline, by
reading a corpus through the network and the memory (`completer eval ... --save-mixer`, see docs/memory.md), and
ship beside the checkpoint as NAME.mixer.json; without that file the kernel's defaults are used.
"""
from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from completer.errors import CompleterError
from completer.memory import _kernel

SIZES = {"order": 16, "low_log2": 14, "high_log2": 19, "history_log2": 23, "match_log2": 21}
CONTEXT = _kernel.CONTEXT      # characters before the cursor a prediction looks at
INPUTS, SETS = _kernel.INPUTS, _kernel.SETS
CHUNK = 256                    # characters per kernel call while reading: a prediction waits ~1 ms for one
PAUSE = 0.1                    # seconds a background read waits at most for predictions to end


def char_class(c: str) -> int:
    """The kernel's character classes: which chars make identifiers, and what the mixer's weights
    may depend on (0 other, 1 letter, 2 digit, 3 _, 4 space or tab, 5 newline, 6 opener, 7 closer)."""
    if c.isascii() and c.isalpha():
        return 1
    if c.isascii() and c.isdigit():
        return 2
    return {"_": 3, " ": 4, "\t": 4, "\n": 5, "(": 6, "[": 6, "{": 6, ")": 7, "]": 7, "}": 7,
            "'": 7, '"': 7}.get(c, 0)


def weights_path(checkpoint) -> Path:
    p = Path(checkpoint)
    return p.with_name(p.name.removesuffix(".safetensors") + ".mixer.json")


def load_weights(path) -> np.ndarray | None:
    """The starting weights beside a checkpoint, or None; a malformed file is a CompleterError."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        w = np.asarray(raw["weights"], np.float32)
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise CompleterError(f"{path}: not a mixer weights file ({type(exc).__name__})") from None
    if w.shape != (SETS, INPUTS) or not np.isfinite(w).all():
        raise CompleterError(f"{path}: mixer weights must be {SETS} x {INPUTS} finite numbers")
    return w


def save_weights(path, weights: np.ndarray, meta: dict) -> None:
    from completer.model.checkpoint import atomic_write

    rows = ",\n  ".join(json.dumps(r) for r in np.asarray(weights, np.float64).round(5).tolist())
    rest = "".join(f",\n {json.dumps(k)}: {json.dumps(v)}" for k, v in meta.items())
    atomic_write(Path(path), f'{{"weights": [\n  {rows}]{rest}\n}}\n'.encode())


PREFAULT_AFTER = 32_768        # a project this large has its tables mapped as huge pages first


class Memory:
    def __init__(self, vocab, weights=None, **sizes):
        self.vocab = vocab
        self.V = len(vocab)
        self.sizes = {**SIZES, **sizes}
        self.roots: list = []       # the project folders read into it (completer.memory.project)
        # True while a project reader fills it for its cache: the engine feeds it no typed text
        # meanwhile (DocCache.feed), so that the cache holds only what was read from disk
        self.reading = False
        # predictions first: while one runs (Engine.complete) a background read (the project
        # reader's learn(background=True)) pauses between chunks, instead of taking the tables'
        # mutex back after each of the decoder's characters (a line's 40 mix calls each waited for
        # a 256-character chunk: keystrokes of 70-90 ms while a workspace was read)
        self._predicting = 0
        self._quiet = threading.Condition()
        classes = bytes(char_class(vocab.char(i)) if i != vocab.unk else 0 for i in range(self.V))
        self.kernel = _kernel.Memory(self.V, vocab.unk, classes, **self.sizes)
        self._prefaulted = False
        if weights is not None:
            self.kernel.set_weights(np.ascontiguousarray(weights, np.float32))

    @property
    def chars(self) -> int:
        """Characters read so far."""
        return self.kernel.chars

    @property
    def weights(self) -> np.ndarray:
        return np.frombuffer(self.kernel.get_weights(), np.float32).reshape(SETS, INPUTS).copy()

    @contextmanager
    def predicting(self):
        """While this runs, background reads pause (see __init__); the frontends' completions."""
        with self._quiet:
            self._predicting += 1
        try:
            yield
        finally:
            with self._quiet:
                self._predicting -= 1
                if not self._predicting:
                    self._quiet.notify_all()

    def pause(self) -> None:
        """A background reader's turn to wait: until no prediction runs (PAUSE seconds at most,
        so a frontend that completes without a break slows reading but never stops it)."""
        if self._predicting:
            with self._quiet:
                self._quiet.wait_for(lambda: not self._predicting, PAUSE)

    def learn(self, ids: np.ndarray, start: int = 0, background: bool = False) -> None:
        """Count ids[start:] (int32), ids[:start] being their context only; in chunks, so that a
        prediction from another thread never waits long for the tables (the kernel reads without
        the GIL, holding only the tables' mutex); background: pause before each chunk while a
        prediction runs."""
        ids = np.ascontiguousarray(ids, np.int32)
        for a in range(start, len(ids), CHUNK):
            if background:
                self.pause()
            lo = max(0, a - CONTEXT)
            self.kernel.learn(ids[lo:a + CHUNK], a - lo)

    def prefault(self) -> None:
        """Map the tables as huge pages now, once (the kernel's prefault: 16-124 ms, off the GIL);
        the project reader calls it, on its own thread, before it reads a project of
        PREFAULT_AFTER characters or more. Worth it there: each character's learn then costs 9-13
        us instead of 33-40 beside the network's step (TLB misses). Not for a REPL's few lines
        (the tables' 100 MiB become resident), nor once the tables are written: merging their
        small pages stalled predictions by up to 80 ms (serve's p99 31 ms against 17-19 without)."""
        if not self._prefaulted:
            self._prefaulted = True
            self.kernel.prefault()

    def learn_text(self, text: str, context: str = "", background: bool = False) -> None:
        self.learn(self.vocab.encode(context[-CONTEXT:] + text), len(context[-CONTEXT:]), background)

    def mix(self, ctx: np.ndarray, net_lp: np.ndarray, generated: int = 0):
        """(lp (V,) float32, the weight sets chosen (packed), inputs (INPUTS, V)) after ctx (int32
        ids, the last CONTEXT used), whose last `generated` ids a decoder chose: the match models
        never follow an occurrence that agrees with those only (see the kernel's match_predict)."""
        inputs = np.empty((INPUTS, self.V), np.float32)
        out = np.empty(self.V, np.float32)
        s = self.kernel.mix(ctx, np.ascontiguousarray(net_lp, np.float32), inputs, out, generated)
        return out, s, inputs

    def update(self, s: int, inputs: np.ndarray, lp: np.ndarray, y: int) -> None:
        self.kernel.update(s, inputs, lp, int(y))

    def score(self, ids: np.ndarray, start: int, net_lp: np.ndarray) -> np.ndarray:
        """Predict ids[start:] (mixing with net_lp (n - start, V)), learn from each: (n - start, 4)
        float32 of bits, top-1 hit, top-5 hit, suggestion right (what `completer eval` measures)."""
        stats = np.empty((len(ids) - start, 4), np.float32)
        self.kernel.score(np.ascontiguousarray(ids, np.int32), start,
                          np.ascontiguousarray(net_lp, np.float32), stats)
        return stats

