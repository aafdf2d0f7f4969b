"""The completion engine: documents in, continuations out. Every frontend shares it.

    engine = Engine.from_checkpoint(path=None)
    engine.open(uri, text); engine.edit(uri, start, end, new_text)
    engine.complete(uri, offset, Request(mode="line")) -> [Completion(text, logprob, char_logprobs)]
    engine.complete_text(prefix, Request(...), suffix="")  # no document needed

Context. The state used at offset p is the model read from a zero state over text[start(p):p],
start(p) = max(0, (p // S - 1) * S) with S = context // 2: between S and 2S characters (all of
them near the top of the file). Being a function of the text alone, a completion does not depend
on the order of edits, and `complete(uri, p)` equals `complete_text(text[:p])`. Positions that
share a block [kS, (k+1)S) share the read that starts at (k-1)S, so states are reusable.

Incremental. Per document, states are kept (in a bounded LRU, `DocCache`) every 64 characters
and at line starts, plus the furthest state of the current read and of the read the next block
will use: typing one character at the end costs two model steps; an edit drops only the states after it; a first read of a prefix goes through the
window path (`Net.read`: the batched input projection, then `cell.forward`).

Threads. One lock per engine guards documents and caches; decoding runs outside it, on states
nothing else mutates (cells return new states), so the REPL may ask from a worker thread.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import numpy as np

from completer.doccache import DocCache
from completer.errors import CompleterError
from completer.stops import MODES, Stopper, continues_identifier, finish

DEFAULT_CONTEXT = 512   # W: see README "Completion engine" for how it was chosen
MAX_CHARS = 10_000      # the longest continuation one request may ask for


class Cancelled(CompleterError):
    """The request's CancelToken was cancelled while it was being decoded."""


class CancelToken:
    def __init__(self):
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass(frozen=True)
class Request:
    mode: str = "line"          # char | token | line | block (free: no stop rule, for sampling)
    decoder: str = "greedy"     # a registered decoder name
    temperature: float = 1.0
    top_k: int = 10
    top_p: float = 0.9
    beam: int = 4
    n: int = 1                  # how many continuations (samplers: draws; beam: the n best)
    seed: int | None = None
    max_chars: int = 80
    min_prob: float = 0.0       # drop continuations whose total probability is below this

    def validated(self) -> "Request":
        def bad(what):
            raise CompleterError(f"bad request: {what}")

        if self.mode not in MODES:
            bad(f"mode {self.mode!r} is not one of {', '.join(MODES[:4])}")
        if not isinstance(self.decoder, str) or not self.decoder:
            bad("decoder must be a name")
        for name in ("temperature", "top_p", "min_prob"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                bad(f"{name} must be a number, got {v!r}")
        for name in ("top_k", "beam", "n", "max_chars"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                bad(f"{name} must be a whole number >= 1, got {v!r}")
        if self.temperature < 0:
            bad(f"temperature must be 0 or more, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            bad(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0 <= self.min_prob <= 1:
            bad(f"min_prob must be in [0, 1], got {self.min_prob}")
        if self.max_chars > MAX_CHARS or self.n > 100 or self.beam > 100:
            bad(f"max_chars <= {MAX_CHARS}, n <= 100 and beam <= 100")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)
                                      or self.seed < 0):
            bad(f"seed must be a whole number >= 0, got {self.seed!r}")
        return self


@dataclass
class Completion:
    text: str
    logprob: float                                   # natural log of the text's probability
    char_logprobs: list = field(default_factory=list)

    @property
    def prob(self) -> float:
        return math.exp(self.logprob)


class Net:
    """A CharModel's serving view: per-layer params, the input table and the head, cached once."""

    def __init__(self, model):
        self.cells = model.cells
        self.params = [model.layer_params(l) for l in range(len(model.cells))]
        self.table = model.input_table()                                    # (V, G*H)
        self.head_W = model.params["head.W"]                                  # (H, V)
        self.head_b = model.params["head.b"].copy()
        self.head_b[-1] = -np.inf   # Vocab puts UNK last: never suggest the unknown symbol
        self.zero = model.zero_state(1)

    def step(self, ids, state):
        """ids (B,) -> the state after reading them."""
        xp, new = self.table[ids], []                                       # (B, G*H)
        for l, (cell, p) in enumerate(zip(self.cells, self.params)):
            if l:
                xp = h @ p["Wx"] + p["b"]
            s = cell.step(p, xp, state[l])
            new.append(s)
            h = s[0]                                                        # (B, H)
        return new

    def read(self, state, ids):
        """ids (T,) read from `state` through the window path; the final state."""
        if len(ids) <= 2:  # a window costs more set-up than a step or two
            for t in range(len(ids)):
                state = self.step(ids[t:t + 1], state)
            return state
        xp = self.table[ids][:, None, :]                                    # (T, 1, G*H)
        new = []
        for l, (cell, p) in enumerate(zip(self.cells, self.params)):
            if l:
                xp = hs @ p["Wx"] + p["b"]                                  # (T, 1, G*H)
            hs, s, _ = cell.forward(p, xp, state[l])                        # hs (T, 1, H)
            new.append(s)
        return new

    def logprobs(self, state) -> np.ndarray:
        """(B, V) float32 log-probabilities of the next character (UNK excluded)."""
        z = state[-1][0] @ self.head_W                                      # (B, V)
        z += self.head_b
        z -= z.max(axis=1, keepdims=True)
        z -= np.log(np.exp(z).sum(axis=1, keepdims=True))
        return z


@dataclass
class Hyp:
    """One continuation under construction. `pending` is the last chosen id not yet read."""
    ids: list
    lps: list
    score: float
    state: list
    stopper: Stopper
    pending: int | None = None
    keep: int | None = None      # set when finished: how many of ids the stop rule keeps

    @property
    def done(self) -> bool:
        return self.keep is not None


class Search:
    """The model seen by a decoder for one request (see completer.decoders for the contract)."""

    def __init__(self, net, vocab, state, stopper, cancel):
        self.net, self.vocab, self.cancel = net, vocab, cancel
        self._root = Hyp([], [], 0.0, [tuple(a.copy() for a in s) for s in state], stopper)
        self._chars = [vocab.char(i) for i in range(len(vocab))]

    def root(self) -> Hyp:
        return self._root

    def check(self) -> None:
        if self.cancel is not None and self.cancel.cancelled:
            raise Cancelled("request cancelled")

    def logprobs(self, hyps) -> np.ndarray:
        todo = [h for h in hyps if h.pending is not None]
        if len(todo) == 1:
            h = todo[0]
            h.state, h.pending = self.net.step(np.array([h.pending]), h.state), None
        elif todo:  # one batched step for every beam
            L = len(todo[0].state)
            stacked = [tuple(np.concatenate([h.state[l][k] for h in todo])
                             for k in range(len(todo[0].state[l]))) for l in range(L)]
            new = self.net.step(np.array([h.pending for h in todo]), stacked)
            for b, h in enumerate(todo):
                h.state = [tuple(a[b:b + 1] for a in s) for s in new]
                h.pending = None
        if len(hyps) == 1:
            return self.net.logprobs(hyps[0].state)
        L = len(hyps[0].state)
        top = np.concatenate([h.state[L - 1][0] for h in hyps])
        return self.net.logprobs([(top,)])

    def extend(self, hyp: Hyp, i: int, lp: float) -> Hyp:
        stopper = hyp.stopper.copy()
        keep = stopper.push(self._chars[i])
        return Hyp(hyp.ids + [int(i)], hyp.lps + [float(lp)], hyp.score + float(lp), hyp.state,
                   stopper, pending=int(i), keep=keep)


class Engine:
    def __init__(self, model, vocab, meta=None, context: int = DEFAULT_CONTEXT, cache_states: int = 512):
        if context < 2:
            raise CompleterError(f"context must be at least 2 characters, got {context}")
        self.model, self.vocab, self.meta = model, vocab, dict(meta or {})
        self.net = Net(model)
        self.context = context
        self.block = context // 2                                           # S
        self.cache_states = cache_states
        self._docs: dict[str, DocCache] = {}
        self._scratch = DocCache("", cache_states)                         # complete_text's document
        self._lock = threading.RLock()

    @classmethod
    def from_checkpoint(cls, path=None, **kw) -> "Engine":
        from completer import checkpoint

        resolved = checkpoint.resolve(path)
        model, vocab, meta = checkpoint.load(resolved)
        meta = dict(meta, path=str(resolved))
        return cls(model, vocab, meta, **kw)

    def describe(self) -> dict:
        c = self.model.config
        return {"cell": c.cell, "hidden": c.hidden, "layers": c.layers, "embed": c.embed,
                "params": int(self.model.n_params()), "path": self.meta.get("path"),
                "vocab_size": c.vocab_size, "context": self.context}

    # ---- documents --------------------------------------------------------------------------
    def _doc(self, uri) -> DocCache:
        doc = self._docs.get(uri)
        if doc is None:
            raise CompleterError(f"no open document {uri!r}")
        return doc

    @staticmethod
    def _check_text(text) -> str:
        if not isinstance(text, str):
            raise CompleterError(f"document text must be a string, got {type(text).__name__}")
        return text

    def open(self, uri, text: str) -> None:
        with self._lock:
            self._docs[uri] = DocCache(self._check_text(text), self.cache_states)

    def change(self, uri, text: str) -> None:
        """Replace the whole text; states before the first changed character are kept."""
        with self._lock:
            self._doc(uri).set_text(self._check_text(text))

    def edit(self, uri, start: int, end: int, new_text: str) -> None:
        """Replace text[start:end] by new_text (offsets in code points)."""
        with self._lock:
            doc = self._doc(uri)
            n = len(doc.text)
            if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end <= n):
                raise CompleterError(f"bad edit range {start}..{end} for a document of {n} characters")
            doc.edit(start, end, self._check_text(new_text))

    def close(self, uri) -> None:
        with self._lock:
            self._docs.pop(uri, None)

    def text(self, uri) -> str:
        with self._lock:
            return self._doc(uri).text

    # ---- states -----------------------------------------------------------------------------
    def block_start(self, p: int) -> int:
        return max(0, (p // self.block - 1) * self.block)

    def _state_at(self, doc: DocCache, p: int):
        """The model state after text[block_start(p):p], from the nearest saved state.

        The read that the next block will start from (at block_start(p) + S) is advanced to p
        as well, so typing across a block boundary costs a step, not a window of S characters."""
        start = self.block_start(p)
        state = self._read(doc, start, p)
        ahead = self.block_start(p + self.block)
        if ahead != start:
            self._read(doc, ahead, p)
        return state

    def _read(self, doc: DocCache, start: int, p: int):
        """The state after text[start:p], saving states on the way."""
        pos, state = doc.nearest(start, p)
        if state is None:
            pos, state = start, self.net.zero
        text = doc.text
        if p - pos <= 2:  # typing: a step or two, nothing to save on the way
            if p > pos:
                state = self.net.read(state, self.vocab.encode(text[pos:p]))
            doc.remember(start, p, state, save=(p % 64 == 0 or text[p - 1:p] == "\n"))
            return state
        ids = self.vocab.encode(text[pos:p])
        # save points: every 64 characters and each line start between pos and p
        cuts = set(range((pos // 64 + 1) * 64, p, 64))
        k = text.find("\n", pos, p - 1)
        while k != -1:
            cuts.add(k + 1)
            k = text.find("\n", k + 1, p - 1)
        at = pos
        for cut in sorted(cuts) + [p]:
            state = self.net.read(state, ids[at - pos:cut - pos])
            at = cut
            doc.remember(start, cut, state, save=cut != p or cut % 64 == 0 or text[cut - 1] == "\n")
        return state

    def prepare(self, uri, offset: int) -> None:
        """Read the document up to `offset` now (an editor may call it on each keystroke)."""
        with self._lock:
            doc = self._doc(uri)
            self._check_offset(doc, offset)
            self._state_at(doc, offset)

    @staticmethod
    def _check_offset(doc, offset) -> None:
        n = len(doc.text)
        if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= n:
            raise CompleterError(f"cursor offset {offset!r} is outside the document (0..{n})")

    # ---- completions ------------------------------------------------------------------------
    def complete(self, uri, offset: int, req: Request | None = None, cancel: CancelToken | None = None) -> list:
        req = (req or Request()).validated()
        decoder = self._decoder(req.decoder)
        with self._lock:
            doc = self._doc(uri)
            self._check_offset(doc, offset)
            start = self._start(doc, offset, doc.text[offset:offset + 256], req)
        return self._decode(start, req, decoder, cancel)

    def complete_text(self, prefix: str, req: Request | None = None, cancel: CancelToken | None = None,
                      suffix: str = "") -> list:
        req = (req or Request()).validated()
        decoder = self._decoder(req.decoder)
        self._check_text(prefix)
        self._check_text(suffix)
        with self._lock:
            self._scratch.set_text(prefix)
            start = self._start(self._scratch, len(prefix), suffix, req)
        return self._decode(start, req, decoder, cancel)

    def _decoder(self, name):
        from completer.registry import registry

        cls = registry.get("decoder", name)
        return cls() if isinstance(cls, type) else cls

    def _start(self, doc, offset, suffix, req):
        """Under the lock: (state, context, suffix) to decode from, or None for no suggestion."""
        text = doc.text
        if req.mode != "free" and continues_identifier(text[offset - 1:offset], suffix):
            return None
        state = self._state_at(doc, offset)
        return state, text[self.block_start(offset):offset], suffix

    def _decode(self, start, req, decoder, cancel) -> list:
        """Outside the lock: decoding reads the model and its own copy of the state."""
        if start is None:
            return []
        state, context, suffix = start
        search = Search(self.net, self.vocab, state, Stopper(req.mode, context, req.max_chars), cancel)
        hyps = decoder.decode(search, req, np.random.default_rng(req.seed))
        out, seen = [], set()
        for h in hyps:
            keep = h.keep if h.keep is not None else len(h.ids)
            done = finish(self.vocab.decode(h.ids[:keep]), req.mode, suffix)
            if not done or done in seen:
                continue
            seen.add(done)
            lps = h.lps[:len(done)]
            c = Completion(done, float(sum(lps)), lps)
            if c.prob >= req.min_prob:
                out.append(c)
            if len(out) == req.n:
                break
        return out
