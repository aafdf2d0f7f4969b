"""Measure a model on Python files it did not train on: the logic behind `completer eval`.

    docs = read_files(["src/pkg/a.py", "tests/"])
    report = evaluate(model, vocab, docs, train=train_texts(...), adapt=None)

Measures (the protocol of shared/bench/ANCHORS.md, so the figures compare):
- bpc, top1, top5: every character of every file is predicted from the file before it, read from
  the zero state as the engine reads a file. Files are cut into segments of SEGMENT
  characters read side by side as one batch, each after the WARMUP characters before it (read,
  not scored): window forwards of the whole batch, no Python loop per character.
- line completion: CUTS cut points drawn with seed 0 uniformly over the characters of all files,
  skipping cuts whose rest of line is blank; greedy generation from the cut up to MAX_CHARS
  characters or a newline; Exact Match = generated == truth after stripping trailing whitespace;
  Edit Similarity = difflib ratio x 100. The state at a cut is read in the pass above, so its
  context is the file before the cut (at least its last WARMUP characters; ANCHORS found context
  beyond 2,000 characters changes no figure).
- keystrokes saved: whole lines sampled with seed 0 (blank ones skipped) until KEYSTROKE_CHARS
  characters, typed one keystroke at a time; wherever the greedy line suggestion matches the rest
  of the line for 2 or more characters, the matching prefix is accepted for one keystroke;
  saved = 1 - keystrokes / characters. A greedy suggestion from the true context matches exactly
  as far as the model's guesses are right one after another, so the replay reads the guesses
  of the pass above instead of decoding. Suggestions, like the engine's, never contain UNK.
- references: lzma (xz -9e) and bz2 (-9) bits per character given the training corpus as
  context, 8 x (len(compress(train + files)) - len(compress(train))) / characters, and a
  Kneser-Ney character n-gram (completer.evaluation.ngram, order NGRAM_ORDER unless asked) trained on the
  same corpus: its bits per character, and its greedy line completion at the same cut points
  (context = the file before the cut), scored as the model's.
- with adaptation (completer.engine.adaptation): files are read one after another by one stream; each window
  of ADAPT_WINDOW characters is scored, cut points in it are completed, then the weights take an
  SGD step on it. The weights carry over from file to file, the recurrent state does not.
"""
from __future__ import annotations

import bz2
import difflib
import lzma
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from completer.discovery import discover
from completer.engine.adaptation import WINDOW as ADAPT_WINDOW  # characters per SGD step with adaptation
from completer.errors import CompleterError

CUTS = 1000             # line-completion cut points
SEED = 0
MAX_CHARS = 80          # a line suggestion: up to this many characters or a newline
TRUTH_CHARS = 2000      # a rest of line is scored on at most this many characters (see line_scores)
KEYSTROKE_CHARS = 20_000
SEGMENT = 8192          # characters scored per stream of the batched pass
WARMUP = 2000           # characters read before a segment, unscored (the protocol's context)
WINDOW = 256            # time steps per forward of the batched pass
NGRAM_ORDER = 8


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


# ---- reading with the model --------------------------------------------------------------------
def _head(model, state):
    """Logits (B, V) of the next character from a state."""
    return state[-1][0] @ model.params["head.W"] + model.params["head.b"]


def _take(state, rows):
    return [tuple(a[rows] for a in layer) for layer in state]


def _stack(states):
    return [tuple(np.concatenate([s[l][k] for s in states]) for k in range(len(states[0][l])))
            for l in range(len(states[0]))]


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


def greedy_lines(model, vocab, state, max_chars: int = MAX_CHARS, table=None) -> list[str]:
    """Greedy continuation of B states up to max_chars or a newline (never UNK), batched."""
    B = state[0][0].shape[0]
    out = [[] for _ in range(B)]
    newline = vocab.id("\n")
    table = model.input_table() if table is None else table
    active = np.arange(B)
    logits = _head(model, state)
    for step in range(max_chars):
        logits[:, vocab.unk] = -np.inf
        c = logits.argmax(axis=-1)                                      # (A,)
        keep = c != newline
        for i, ch in zip(active[keep], c[keep]):
            out[i].append(int(ch))
        active, c = active[keep], c[keep]
        if not len(active) or step == max_chars - 1:
            break
        logits, state = model.step(c, _take(state, keep), table)
    return [vocab.decode(o) for o in out]


@dataclass
class Pass:
    """One reading of the files: per-character arrays per document, one completion per cut."""
    bits: list          # bits of each character
    hit1: list          # top-1 right
    hit5: list          # top-5 right
    suggest: list       # the suggestion's first character right (what keystrokes replay)
    completions: list

    @classmethod
    def empty(cls, docs, cuts):
        z = lambda dtype: [np.zeros(len(d.text), dtype) for d in docs]
        return cls(z(float), z(bool), z(bool), z(bool), [None] * len(cuts))

    def put(self, d, start, stats):
        """Store per-character stats (each (n,)) of doc d from offset start."""
        for full, part in zip((self.bits, self.hit1, self.hit5, self.suggest), stats):
            full[d][start:start + len(part)] = part


def _first_char(model, vocab, pass_, d, text):
    """A file's first character is predicted from the zero state, as the engine reads a file."""
    logits = _head(model, model.zero_state(1))[None]                    # (1, 1, V)
    tgt = vocab.encode(text[:1]).astype(np.int64)[None]                 # (1, 1)
    pass_.put(d, 0, [a[:, 0] for a in _window_stats(logits, tgt, vocab.unk)])


def read_static(model, vocab, docs, cuts, segment=SEGMENT, warmup=WARMUP, window=WINDOW, memory=None) -> Pass:
    """Score every character; complete every cut. Segments of all files read as one batch.

    A file is read from the zero state (the engine's convention); the state at offset p has read
    text[b0:p] and predicts text[p]. Stream b reads text[b0:e-1] and scores text[s:e].
    With a memory, the network's log-probabilities and the states at the cuts of this same pass
    are then mixed with it (read_memory): the batched network, the memory in order."""
    streams = []                              # (doc, first scored offset, end, first read offset)
    for d, doc in enumerate(docs):
        for s in range(0, len(doc.text), segment):
            streams.append((d, s, min(s + segment, len(doc.text)), max(0, s - warmup)))
    B, T = len(streams), max(e - 1 - b0 for _, _, e, b0 in streams)
    x = np.zeros((T, B), np.int64)            # (T, B) inputs, padded at the end
    y = np.zeros((T, B), np.int64)            # (T, B) targets: y[t] follows x[t]
    ids = [vocab.encode(doc.text).astype(np.int64) for doc in docs]
    for b, (d, s, e, b0) in enumerate(streams):
        x[:e - 1 - b0, b], y[:e - 1 - b0, b] = ids[d][b0:e - 1], ids[d][b0 + 1:e]
    out = Pass.empty(docs, cuts)
    stops = {}                                # local boundary -> [(stream, cut index)]
    cut_states = [None] * len(cuts)
    for c, (d, p) in enumerate(cuts):
        b = next(i for i, (dd, s, e, _) in enumerate(streams) if dd == d and s <= p < e)
        stops.setdefault(p - streams[b][3], []).append((b, c))
    zero = model.zero_state(1)
    for b, c in stops.pop(0, ()):             # cuts at the top of a file
        cut_states[c] = zero
    state, table = model.zero_state(B), model.input_table()
    bounds = sorted(set(range(0, T, window)) | set(stops) | {T})
    stats = [np.zeros((T, B)), np.zeros((T, B), bool), np.zeros((T, B), bool), np.zeros((T, B), bool)]
    lps = [np.zeros((len(i), len(vocab)), np.float32) for i in ids] if memory is not None else None
    for t0, t1 in zip(bounds[:-1], bounds[1:]):
        logits, state, _ = model.forward(x[t0:t1], state, table=table)  # (t, B, V)
        for full, part in zip(stats, _window_stats(logits, y[t0:t1], vocab.unk)):
            full[t0:t1] = part
        for b, c in stops.get(t1, ()):
            cut_states[c] = _take(state, slice(b, b + 1))
        if lps is not None:  # local t predicts text[b0 + 1 + t]: keep the scored offsets s..e-1
            for b, (d, s_, e, b0) in enumerate(streams):
                lo, hi = max(t0, s_ - 1 - b0, 0), min(t1, e - 1 - b0)
                if lo < hi:
                    lps[d][b0 + 1 + lo:b0 + 1 + hi] = _log_softmax(logits[lo - t0:hi - t0, b])
    if lps is not None:
        for d, i in enumerate(ids):
            lps[d][:1] = _log_softmax(_head(model, zero))
        return read_memory(model, vocab, docs, cuts, memory, lps, cut_states)
    for b, (d, s, e, b0) in enumerate(streams):
        # local t predicts text[b0 + 1 + t]; scored offsets s..e-1 (offset 0 apart)
        lo = max(s, 1)
        out.put(d, lo, [a[lo - 1 - b0:e - 1 - b0, b] for a in stats])
    for d, doc in enumerate(docs):
        _first_char(model, vocab, out, d, doc.text)
    if cuts:
        out.completions = greedy_lines(model, vocab, _stack(cut_states), table=table)
    return out


def _log_softmax(logits) -> np.ndarray:
    """(T, V) float32 log-probabilities, UNK included (scoring a text must give every character mass)."""
    z = logits.astype(np.float64)
    z -= z.max(axis=-1, keepdims=True)
    return (z - np.log(np.exp(z).sum(axis=-1, keepdims=True))).astype(np.float32)


def greedy_mixed(net, vocab, memory, state, ctx, max_chars: int = MAX_CHARS) -> str:
    """Greedy line through the network mixed with the memory, as the engine's Search mixes them
    (net: its completer.engine.Net, UNK excluded); ctx the ids before the cut: the memory
    conditions on the generated characters and counts none."""
    newline, out = vocab.id("\n"), []
    ctx = list(ctx[-64:])
    for step in range(max_chars):
        mixed, _, _ = memory.mix(np.array(ctx[-64:], np.int32), net.logits(state)[0])
        c = int(np.argmax(mixed))
        if c == newline:
            break
        out.append(c)
        ctx.append(c)
        if step < max_chars - 1:
            state = net.step(np.array([c]), state)
    return vocab.decode(out)


def read_memory(model, vocab, docs, cuts, memory, lps, cut_states) -> Pass:
    """The memory's pass over the files in order, given the network's log-probabilities of every
    character (lps, per doc (n, V)) and its state at every cut: each character is predicted by the
    mixture, then read by the memory (the mixer learns from it first); a cut is completed with
    what the memory read up to it and no further."""
    from completer.engine.net import Net

    out, net = Pass.empty(docs, cuts), Net(model)
    by_doc = {}
    for c, (d, p) in enumerate(cuts):
        by_doc.setdefault(d, []).append((p, c))
    for d, doc in enumerate(docs):
        ids = vocab.encode(doc.text).astype(np.int32)
        prev = 0
        for p, c in by_doc.get(d, []) + [(len(ids), None)]:
            lo = max(0, prev - 64)
            out.put(d, prev, list(memory.score(ids[lo:p], prev - lo, lps[d][prev:p]).T))
            if c is not None:
                out.completions[c] = greedy_mixed(net, vocab, memory, cut_states[c], ids[max(0, p - 64):p])
            prev = p
    return out


def read_sequential(model, vocab, docs, cuts, adapter=None, memory=None, window=ADAPT_WINDOW) -> Pass:
    """Files read one after another by one stream, in windows of `window` characters: each window
    is scored, cut points in it are completed; with an adapter the weights then take an SGD step on
    it (carried from file to file); with a memory (completer.memory) every prediction is the
    mixture, and the memory reads each character once it has been predicted (the mixer learns from
    it first), so a cut is completed with what the memory has read up to the cut and no further."""
    out = Pass.empty(docs, cuts)
    by_doc = {}
    for c, (d, p) in enumerate(cuts):
        by_doc.setdefault(d, {})[p] = c       # boundary p: the state after text[:p]
    table = model.input_table()

    from completer.engine.net import Net

    nets = []                                 # the serving view of the current weights, when needed

    def complete(state, ids, p, table):
        if memory is None:
            return greedy_lines(model, vocab, state, table=table)[0]
        if not nets:
            nets.append(Net(model))
        return greedy_mixed(nets[0], vocab, memory, state, ids[max(0, p - 64):p])

    for d, doc in enumerate(docs):
        ids = vocab.encode(doc.text).astype(np.int32)
        x, y = ids[:-1, None].astype(np.int64), ids[1:, None].astype(np.int64)   # (T, 1)
        T = len(x)
        stops = by_doc.get(d, {})
        state = model.zero_state(1)
        if 0 in stops:
            out.completions[stops[0]] = complete(state, ids, 0, table)
        first = _head(model, state)[None]                                   # (1, 1, V)
        if memory is None:
            _first_char(model, vocab, out, d, doc.text)
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
                    lo = max(0, t0 + 1 - 64)
                    lp = _log_softmax(logits[:, 0])
                    cut = t1 in stops
                    stats = memory.score(ids[lo:t1 + 1 - cut], t0 + 1 - lo, lp[:len(lp) - cut])
                    out.put(d, t0 + 1, list(stats.T))
                if t1 in stops:
                    out.completions[stops[t1]] = complete(state, ids, t1, table)
                    if memory is not None:  # now the character at the cut
                        lo = max(0, t1 - 64)
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


def summarize(docs, cuts, lines, p: Pass) -> dict:
    chars = sum(len(d.text) for d in docs)
    bits = np.concatenate(p.bits)
    r = {"bpc": float(bits.mean()), "top1": 100.0 * float(np.concatenate(p.hit1).mean()),
         "top5": 100.0 * float(np.concatenate(p.hit5).mean()), "chars": chars}
    if cuts:
        em, es, ci = line_scores(docs, cuts, p.completions)
        r.update(line_em=em, line_es=es, line_em_ci95=ci, cuts=len(cuts))
    else:
        r.update(line_em=None, line_es=None, line_em_ci95=None, cuts=0)
    typed = sum(e - s for _, s, e in lines)
    keys = sum(keystrokes(p.suggest[d][s:e]) for d, s, e in lines)
    r.update(keystrokes_saved=1.0 - keys / typed if typed else None, keystroke_chars=typed)
    return r


MEASURES = ("bpc", "top1", "top5", "line_em", "line_es", "keystrokes_saved")


def evaluate(model, vocab, docs, train=None, adapt=None, ngram_order=NGRAM_ORDER, log=None,
             memory=None, project=None) -> dict:
    """The full report. train: training texts for the references (None: references are None);
    adapt: an Adapter (completer.engine.adaptation) to measure with dynamic evaluation as well;
    memory: a function returning a new, empty completer.memory.Memory, to measure the network
    mixed with it as well (None: the network alone); project: texts the memory reads first (the
    editor scenario: the rest of the project), else it starts empty and reads the files as typed.

    The top-level measures are the last configuration measured (memory, adapted, if asked);
    `runs` holds every configuration: network, adapted, memory, memory+adapted."""
    log = log or (lambda msg: None)
    t_start = time.perf_counter()
    if not docs or not any(d.text for d in docs):
        raise CompleterError("nothing to evaluate: no non-empty files")
    cuts = cut_points(docs)
    lines = keystroke_lines(docs)
    runs = {}

    def run(name, read):
        t = time.perf_counter()
        runs[name] = summarize(docs, cuts, lines, read())
        log(f"{name}: {runs[name]['chars']:,} characters, {len(cuts)} cut points in {time.perf_counter() - t:.1f}s")

    def fresh_memory():
        mem = memory()
        t = time.perf_counter()
        for text in project or ():
            mem.learn_text(text)
        if project:
            log(f"memory read {mem.chars:,} characters of the project in {time.perf_counter() - t:.1f}s")
        return mem

    run("network", lambda: read_static(model, vocab, docs, cuts))
    if adapt is not None:
        run("adapted", lambda: read_sequential(model, vocab, docs, cuts, adapter=adapt))
        adapt.reset()
    if memory is not None:
        run("memory", lambda: read_static(model, vocab, docs, cuts, memory=fresh_memory()))
        if adapt is not None:
            run("memory+adapted", lambda: read_sequential(model, vocab, docs, cuts, adapter=adapt,
                                                        memory=fresh_memory()))
            adapt.reset()
    report = dict(runs[list(runs)[-1]])
    report["runs"] = {name: {k: r[k] for k in MEASURES} for name, r in runs.items()}
    if adapt is not None:
        report["static"] = report["runs"]["memory" if memory is not None else "network"]
        report["adapt"] = {"lr": adapt.lr, "clip": adapt.clip, "window": ADAPT_WINDOW}
    report.update(memory=memory is not None, project_chars=sum(len(t) for t in project or ()))
    report.update(lzma_bpc=None, bz2_bpc=None, zpaq_bpc=None, ngram_bpc=None, ngram_line_em=None, ngram_line_es=None,
                  ngram_line_em_ci95=None, ngram_order=ngram_order)
    if train:
        from completer.evaluation.ngram import NGram

        t = time.perf_counter()
        train_text, test_text = "".join(train), "".join(d.text for d in docs)
        report["lzma_bpc"] = compressed_bpc(train_text, test_text, "lzma")
        report["bz2_bpc"] = compressed_bpc(train_text, test_text, "bz2")
        import shutil

        if shutil.which("zpaq"):  # context mixing: what the memory is measured against (ANCHORS)
            report["zpaq_bpc"] = compressed_bpc(train_text, test_text, "zpaq")
        else:
            log("zpaq -method 5 reference skipped: no zpaq program (Debian: apt-get install zpaq)")
        lm = NGram.train(train, ngram_order)
        report["ngram_bpc"] = lm.bpc([d.text for d in docs])
        if cuts:
            # the n-gram reads the last order - 1 characters: no copy of each file's whole prefix
            completions = lm.greedy_lines([docs[d].text[max(0, pos - ngram_order):pos] for d, pos in cuts], MAX_CHARS)
            em, es, ci = line_scores(docs, cuts, completions)
            report.update(ngram_line_em=em, ngram_line_es=es, ngram_line_em_ci95=ci)
        report["train_chars"] = len(train_text)
        log(f"references on {len(train_text):,} training characters in {time.perf_counter() - t:.1f}s")
    report["seconds"] = time.perf_counter() - t_start
    return report
