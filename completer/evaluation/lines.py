"""Line completions for `completer eval`, made by the engine itself, and the gate's figures.

    lines = Lines(engine)                             # completer.engine.Engine (its memory or None)
    suggestions = lines.typed(docs, cuts)             # per cut: Completion or None
    figures = shown_figures(docs, cuts, suggestions, threshold=0.3)

One decoding path: a cut's suggestion is what `Engine.complete` answers there, a greedy line
(Request(mode="line", max_chars=MAX_CHARS)) through the engine's Search, decoders, stop rules
and post-processing, its state read as the engine reads a document, its memory fed as the engine
feeds it. Each file is typed into the engine from the top, up to each cut in turn (one edit per
cut: the text after the cursor is not there yet, as when the file is being written); after its
last cut the rest of the file is typed too, so the memory reads whole files in order.

The gate's figures at a threshold (the ghost text's; None: every non-empty suggestion is shown):
  coverage        share of cut points where a suggestion is shown (%)
  precision       Exact Match among the shown ones (%)
  accepted chars  characters of the matching prefix per shown suggestion (what Tab would keep)
  loops           share of shown suggestions holding a loop: a unit of 2+ characters repeated
                  3+ times in a row that the truth does not have (%)
"""
from __future__ import annotations

import os
import re
import time

import numpy as np

from completer.engine.requests import Request
from completer.evaluation.protocol import MAX_CHARS, TRUTH_CHARS, line_match, rest_of_line

_LOOP = re.compile(r"(?=(\S.+?|.+?\S)\1\1)")    # every start of a unit repeated 3 times in a row
CURVE = tuple(round(0.01 * k, 2) for k in range(31)) + (0.35, 0.4, 0.5, 0.6, 0.7, 0.8)   # fine where defaults lie


def is_loop(text: str, truth: str) -> bool:
    """A unit of 2+ characters (not only spaces) repeated 3+ times in a row in `text` that the
    truth does not repeat as well."""
    for m in _LOOP.finditer(text):
        if m.group(1) * 3 not in truth:
            return True
    return False


def accepted_chars(text: str, truth: str) -> int:
    """Characters of the suggestion that match the truth from its start (what the user keeps)."""
    return len(os.path.commonprefix([text, truth]))


class Lines:
    """An engine that completes the evaluated files' cut points as it would in an editor."""

    def __init__(self, engine, max_chars: int = MAX_CHARS):
        self.engine = engine
        self.req = Request(mode="line", max_chars=max_chars).validated()

    def typed(self, docs, cuts, memory_for=None, log=None) -> list:
        """Per cut, the engine's suggestion (a Completion, or None for no suggestion), the files
        typed in order. memory_for(d): the memory for doc d (set on the engine before its file is
        typed: the cold scenario's fresh memory per file), else the engine's own."""
        engine, req = self.engine, self.req
        out = [None] * len(cuts)
        by_doc: dict = {}
        for c, (d, p) in enumerate(cuts):
            by_doc.setdefault(d, []).append((p, c))
        t = time.perf_counter()
        for d, doc in enumerate(docs):
            if memory_for is not None:
                engine.memory = memory_for(d)
            uri, typed = f"eval:{d}", 0
            engine.open(uri, "")
            for p, c in by_doc.get(d, ()):
                engine.edit(uri, typed, typed, doc.text[typed:p])
                typed = p
                got = engine.complete(uri, p, req)
                out[c] = got[0] if got else None
            if engine.memory is not None:           # the memory reads the rest before the next file
                engine.edit(uri, typed, typed, doc.text[typed:])
                engine.prepare(uri, len(doc.text))
                engine.idle()
            engine.close(uri)
            if log and time.perf_counter() - t > 30:
                log(f"lines: file {d + 1} of {len(docs)}")
                t = time.perf_counter()
        return out

    def at(self, net, state, text: str, p: int, memory):
        """The engine's suggestion at offset p of `text` from a given model state (the adapted
        reading's, which follows the whole file), through the same decoding as Engine.complete."""
        from completer.engine import syntax
        from completer.engine.search import CONTEXT

        engine = self.engine
        ids = engine.vocab.encode(text[max(0, p - CONTEXT):p]) if memory is not None else None
        b = engine.block_start(p)       # as Engine._start: its context, and the string open at b
        start = (state, text[b:p], "", ids, syntax.quote_before(text, b))
        got, _ = engine._decode(start, self.req, engine._decoder(self.req.decoder), None, net, memory,
                                time.perf_counter())
        return got[0] if got else None


# ---- figures -------------------------------------------------------------------------------------
def truths(docs, cuts) -> list[str]:
    return [rest_of_line(docs[d].text, p, TRUTH_CHARS) for d, p in cuts]


def shown_figures(docs, cuts, suggestions, threshold: float | None = None) -> dict:
    """The gate's figures (see the module's docstring) at `threshold`; a suggestion without a
    confidence (no gate) is shown whenever it is not empty."""
    rows = _rows(docs, cuts, suggestions)
    return _figures(rows, threshold)


def _rows(docs, cuts, suggestions):
    """(N, 4): confidence (1 without a gate; -1 without a suggestion), exact, accepted chars, loop."""
    rows = np.zeros((len(cuts), 4))
    for i, (s, truth) in enumerate(zip(suggestions, truths(docs, cuts))):
        if s is None or not s.text:
            rows[i] = (-1, 0, 0, 0)
            continue
        conf = 1.0 if s.confidence is None else s.confidence
        rows[i] = (conf, line_match(s.text, truth)[0], accepted_chars(s.text, truth), is_loop(s.text, truth))
    return rows


def _figures(rows, threshold) -> dict:
    n = len(rows)
    shown = rows[:, 0] >= (threshold if threshold is not None else 0.0)
    k = int(shown.sum())
    mean = lambda col: float(rows[shown, col].mean()) if k else None
    return {"threshold": threshold, "shown": k, "coverage": 100.0 * k / n if n else None,
            "precision": 100.0 * mean(1) if k else None, "accepted_chars": mean(2),
            "loops": 100.0 * mean(3) if k else None}


def curve(docs, cuts, suggestions, thresholds=CURVE) -> list[dict]:
    """The gate's figures at each threshold: the precision/coverage curve."""
    rows = _rows(docs, cuts, suggestions)
    return [_figures(rows, t) for t in thresholds]
