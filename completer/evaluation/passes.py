"""Reading the evaluated files with the model: per-character figures (bits, top-1, top-5, whether
the suggestion's next character is right), the network alone or mixed with the project memory.

    p = read_static(model, vocab, docs)                         # the network alone
    p = read_static(model, vocab, docs, memory=lambda d: mem)   # mixed: mem reads the files in order
    p = read_sequential(model, vocab, docs, cuts, complete, adapter=Adapter(model))   # --adapt

read_static cuts files into segments of SEGMENT characters, each read after the WARMUP characters
before it (read, not scored), and reads BATCH segments side by side: window forwards, no Python
loop per character. Memory is bounded whatever the number of files: one batch's forward caches and
(with the memory) its log-probabilities, plus a few bytes per character of figures.
Line completions are not made here: they go through the engine (completer.evaluation.lines).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from completer.engine.adaptation import WINDOW as ADAPT_WINDOW  # characters per SGD step with adaptation
from completer.model.start import repeat, start_state

SEGMENT = 8192          # characters scored per stream of the batched pass
WARMUP = 2000           # characters read before a segment, unscored (the protocol's context)
WINDOW = 256            # time steps per forward of the batched pass
BATCH = 8               # segments read side by side: (WINDOW, BATCH, 4H) float32 caches and, with
                        # the memory, (BATCH, SEGMENT, V) log-probabilities (34 MB at V = 131) at most.
                        # Reading 1.1 M characters of 58 files with the memory peaked at 298 MB RSS
                        # with 8, 425 MB with 16 (LSTM-512; the goal: under 400 MB for eval whole)
CONTEXT = 64            # characters before a prediction the memory looks at (its kernel's CONTEXT)


def _head(model, state):
    """Logits (B, V) of the next character from a state."""
    return state[-1][0] @ model.params["head.W"] + model.params["head.b"]


def _window_stats(logits, targets, unk):
    """Per position: bits, top-1 hit, top-5 hit, and whether the suggestion (the most likely
    character other than UNK, which is never suggested) is right. logits (T, B, V), targets (T, B)."""
    z = logits.astype(np.float64)
    m = z.max(axis=-1, keepdims=True)
    lse = m[..., 0] + np.log(np.exp(z - m).sum(axis=-1))              # (T, B)
    zt = np.take_along_axis(z, targets[..., None], axis=-1)             # (T, B, 1)
    rank = (z > zt).sum(axis=-1)                                        # (T, B) strictly better
    suggest = np.delete(z, unk, axis=-1).argmax(axis=-1)                # (T, B) ids < unk
    return (lse - zt[..., 0]) / math.log(2), rank == 0, rank < 5, suggest == targets


def _log_softmax(logits) -> np.ndarray:
    """(T, V) float32 log-probabilities, UNK included (scoring a text must give every character mass)."""
    z = logits.astype(np.float64)
    z -= z.max(axis=-1, keepdims=True)
    return (z - np.log(np.exp(z).sum(axis=-1, keepdims=True))).astype(np.float32)


@dataclass
class Pass:
    """One reading of the files: per-character arrays per document (what the figures need), and
    one completion per cut (the engine's Completion or None, and its text)."""
    bits: list          # bits of each character, float32
    hit1: list          # top-1 right
    hit5: list          # top-5 right
    suggest: list       # the suggestion's first character right (what keystrokes replay)
    suggestions: list   # per cut: the engine's Completion, or None (no suggestion)

    @classmethod
    def empty(cls, docs, cuts=()):
        z = lambda dtype: [np.zeros(len(d.text), dtype) for d in docs]
        return cls(z(np.float32), z(bool), z(bool), z(bool), [None] * len(cuts))

    @property
    def completions(self) -> list:
        return [s.text if s is not None else "" for s in self.suggestions]

    def put(self, d, start, stats):
        """Store per-character stats (each (n,)) of doc d from offset start."""
        for full, part in zip((self.bits, self.hit1, self.hit5, self.suggest), stats):
            full[d][start:start + len(part)] = part


def _first_char(model, vocab, start, pass_, d, text):
    """A file's first character is predicted from the start state, as the engine reads a file."""
    logits = _head(model, start)[None]                                  # (1, 1, V)
    tgt = vocab.encode(text[:1]).astype(np.int64)[None]                 # (1, 1)
    pass_.put(d, 0, [a[:, 0] for a in _window_stats(logits, tgt, vocab.unk)])


def read_static(model, vocab, docs, segment=SEGMENT, warmup=WARMUP, window=WINDOW, memory=None,
                batch=BATCH) -> Pass:
    """Score every character, BATCH segments at a time.

    A file is read from the start state (the engine's, completer.model.start); stream b reads text[b0:e-1] and
    scores text[s:e] (b0 = s - warmup). memory: None (the network alone), or a function of the
    document index returning the completer.memory.Memory that mixes with the network on it; the
    memory scores the segments in file order (each character predicted by the mixture, then read)."""
    streams = []                              # (doc, first scored offset, end, first read offset)
    for d, doc in enumerate(docs):
        for s in range(0, len(doc.text), segment):
            streams.append((d, s, min(s + segment, len(doc.text)), max(0, s - warmup)))
    out = Pass.empty(docs)
    table, start = model.input_table(), start_state(model, vocab)
    first_lp = _log_softmax(_head(model, start)) if memory is not None else None   # (1, V)
    for g in range(0, len(streams), batch):
        group = streams[g:g + batch]
        B, T = len(group), max(e - 1 - b0 for _, _, e, b0 in group)
        x = np.zeros((T, B), np.int64)        # (T, B) inputs, padded at the end
        y = np.zeros((T, B), np.int64)        # (T, B) targets: y[t] follows x[t]
        ids = {}
        for b, (d, s, e, b0) in enumerate(group):
            chunk = vocab.encode(docs[d].text[b0:e]).astype(np.int64)
            x[:e - 1 - b0, b], y[:e - 1 - b0, b] = chunk[:-1], chunk[1:]
        stats = [np.zeros((T, B), np.float32), np.zeros((T, B), bool), np.zeros((T, B), bool), np.zeros((T, B), bool)]
        # with the memory: each stream's log-probabilities of its scored offsets s..e-1, (e - s, V)
        lps = [np.zeros((e - s, len(vocab)), np.float32) for _, s, e, _ in group] if memory is not None else None
        state = repeat(start, B)
        for t0 in range(0, T, window):
            t1 = min(t0 + window, T)
            logits, state, _ = model.forward(x[t0:t1], state, table=table)  # (t, B, V)
            if lps is None:
                for full, part in zip(stats, _window_stats(logits, y[t0:t1], vocab.unk)):
                    full[t0:t1] = part
                continue
            for b, (d, s, e, b0) in enumerate(group):  # local t predicts text[b0 + 1 + t]
                lo, hi = max(t0, s - 1 - b0, 0), min(t1, e - 1 - b0)
                if lo < hi:
                    lps[b][b0 + 1 + lo - s:b0 + 1 + hi - s] = _log_softmax(logits[lo - t0:hi - t0, b])
            del logits
        for b, (d, s, e, b0) in enumerate(group):
            if lps is None:  # scored offsets s..e-1 (offset 0 apart: the zero state's)
                lo = max(s, 1)
                out.put(d, lo, [a[lo - 1 - b0:e - 1 - b0, b] for a in stats])
                if s == 0:
                    _first_char(model, vocab, start, out, d, docs[d].text)
                continue
            if s == 0:
                lps[b][0] = first_lp[0]
            lo = max(0, s - CONTEXT)
            ctx = vocab.encode(docs[d].text[lo:e]).astype(np.int32)
            out.put(d, s, list(memory(d).score(ctx, s - lo, lps[b]).T))
        del lps, stats, x, y
    return out


def read_sequential(model, vocab, docs, cuts, complete, adapter=None, memory=None, window=ADAPT_WINDOW) -> Pass:
    """Files read one after another by one stream, in windows of `window` characters: each window
    is scored, cut points in it are completed; with an adapter the weights then take an SGD step on
    it (carried from file to file); with a memory (completer.memory) every prediction is the
    mixture, and the memory reads each character once it has been predicted (the mixer learns from
    it first), so a cut is completed with what the memory has read up to the cut and no further.

    complete(net, state, d, p, memory) -> the engine's Completion (or None) at offset p of doc d from
    `state` (the stream's, read from the top of the file), through completer.engine.Net `net`
    holding the current weights (completer.evaluation.lines.Lines.at)."""
    from completer.engine.net import Net

    out = Pass.empty(docs, cuts)
    by_doc = {}
    for c, (d, p) in enumerate(cuts):
        by_doc.setdefault(d, {})[p] = c       # boundary p: the state after text[:p]
    table = model.input_table()
    nets = []                                 # the serving view of the current weights, when needed

    def at(state, d, p):
        if not nets:
            nets.append(Net(model, vocab))
        out.suggestions[stops[p]] = complete(nets[0], state, d, p, memory)

    for d, doc in enumerate(docs):
        ids = vocab.encode(doc.text).astype(np.int32)
        x, y = ids[:-1, None].astype(np.int64), ids[1:, None].astype(np.int64)   # (T, 1)
        T = len(x)
        stops = by_doc.get(d, {})
        state = start_state(model, vocab)
        if 0 in stops:
            at(state, d, 0)
        first = _head(model, state)[None]                                   # (1, 1, V)
        if memory is None:
            _first_char(model, vocab, state, out, d, doc.text)
        else:
            out.put(d, 0, list(memory.score(ids[:1], 0, _log_softmax(first[0])).T))
        for w0 in range(0, T, window):
            w1 = min(w0 + window, T)
            bounds = sorted({w0, w1} | {t for t in stops if w0 < t < w1})
            pieces = []
            for t0, t1 in zip(bounds[:-1], bounds[1:]):
                logits, state, cache = model.forward(x[t0:t1], state, table=table)  # (t, 1, V)
                # logits[k] predicts ids[t0 + 1 + k]; a cut at t1 is completed before ids[t1] is read
                if memory is None:
                    out.put(d, t0 + 1, [a[:, 0] for a in _window_stats(logits, y[t0:t1], vocab.unk)])
                else:
                    lo = max(0, t0 + 1 - CONTEXT)
                    lp = _log_softmax(logits[:, 0])
                    cut = t1 in stops
                    stats = memory.score(ids[lo:t1 + 1 - cut], t0 + 1 - lo, lp[:len(lp) - cut])
                    out.put(d, t0 + 1, list(stats.T))
                if t1 in stops:
                    at(state, d, t1)
                    if memory is not None:  # now the character at the cut
                        lo = max(0, t1 - CONTEXT)
                        out.put(d, t1, list(memory.score(ids[lo:t1 + 1], t1 - lo, lp[-1:]).T))
                pieces.append((t1 - t0, logits, cache, y[t0:t1]))
            if adapter is None:
                continue
            # one SGD step on the window's mean loss: backward piece by piece, carrying d(state)
            grads, dstate = {}, None
            for n, logits, cache, tgt in reversed(pieces):
                _, dlogits = model.softmax_xent(logits, tgt)
                g, dstate = model.backward(cache, dlogits * (n / (w1 - w0)), dstate)
                for k, v in g.items():
                    grads[k] = grads[k] + v if k in grads else v
            adapter.apply(grads)
            table = model.input_table()       # the weights of the next window
            nets.clear()
    return out
