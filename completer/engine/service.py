"""The completion engine (`completer.engine.Engine`): documents in, continuations out. Every frontend shares it.

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

Memory (opt-in here, on in every frontend: `Engine.from_checkpoint(..., memory=True)` or
`engine.set_memory(True)`). Every prediction mixes the network with the project memory
(completer.memory) in `Search.logprobs`. Before a completion at offset p, the memory reads the
document's text before p's line that it has not read yet (`DocCache.feed`, as typed: whole lines; an edit
before what it read moves its mark back), and the mixer learns from its previous prediction in
that document once the real character is known. The line being typed is context, never history:
had the memory read it, every model in it (n-gram and match models alike) would find the text
just typed in its history and continue it with itself (`def add(a, b` -> `add(a, badd(a, b...`,
the first suggestions of every new project). Decoding conditions the memory on the generated
characters and counts none (and the match models never follow an occurrence that agrees with
generated characters only: Search passes their number). With memory on a completion depends on what the memory has read, not on the text
alone; off, everything is as if it never existed.

Adaptation: see completer.engine.learning (the Engine's `set_adapt` and its learning thread).
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from contextlib import nullcontext

import numpy as np

from completer.engine import syntax
from completer.engine.documents import DocCache, common_prefix
from completer.engine.gate import features as gate_features
from completer.engine.guard import cut_loop
from completer.engine.learning import Learning
from completer.engine.net import Net
from completer.engine.requests import CancelToken, Cancelled, Completion, OutOfTime, Request
from completer.engine.search import CONTEXT, Search
from completer.engine.stops import Stopper, continues_identifier, finish
from completer.errors import CompleterError

DEFAULT_CONTEXT = 512   # W: see docs/engine.md for how it was chosen
log = logging.getLogger("completer.engine")


def _received(cancel) -> float:
    """When a request came, for its budget: its CancelToken's making (serve makes it as it reads
    the message, so a wait in the queue or for the lock counts), else now."""
    return getattr(cancel, "created", None) or time.perf_counter()


class Engine(Learning):
    def __init__(self, model, vocab, meta=None, context: int = DEFAULT_CONTEXT, cache_states: int = 512,
                 adapt: bool = False, adapt_lr: float | None = None, memory=None):
        if context < 2:
            raise CompleterError(f"context must be at least 2 characters, got {context}")
        self.model, self.vocab, self.meta = model, vocab, dict(meta or {})
        self.net = Net(model, vocab)
        self.memory = memory    # a completer.memory.Memory mixed into every prediction, or None
        self.gate = None        # a completer.engine.gate.Gate: each Completion's confidence, or None
        self.context = context
        self.block = context // 2                                           # S
        self.cache_states = cache_states
        self._docs: dict[str, DocCache] = {}
        self._scratch = DocCache("", cache_states)                         # complete_text's document
        self._lock = threading.RLock()
        # adaptation: uri -> DocAdapt while on; a queue of uris for the learning thread
        self.adapt, self.adapt_lr = False, None
        self._adapted: dict = {}                # uri -> DocAdapt: each document's growth
        self._learner = None                    # the workspace's Learner while adaptation is on
        self._queue: collections.deque = collections.deque()
        self._learning = False                  # the learning thread runs (it ends when idle)
        self._idle = threading.Condition(self._lock)
        self.set_adapt(adapt, adapt_lr)

    @classmethod
    def from_checkpoint(cls, path=None, memory: bool = False, **kw) -> "Engine":
        """memory=True: a new, empty project memory with the checkpoint's starting mixer weights."""
        from completer.model import checkpoint

        resolved = checkpoint.resolve(path)
        model, vocab, meta = checkpoint.load(resolved)
        meta = dict(meta, path=str(resolved))
        engine = cls(model, vocab, meta, **kw)
        engine.load_gate()
        if memory:
            engine.set_memory(True)
        return engine

    def set_memory(self, on: bool) -> None:
        """Mix the project memory in (a new, empty one with the checkpoint's starting weights,
        unless one is already there) or serve the network alone (the memory is dropped)."""
        if not on:
            self.memory = None
            return
        if self.memory is None:
            from completer.memory import Memory
            from completer.memory.store import load_weights, weights_path

            path = self.meta.get("path")
            self.memory = Memory(self.vocab, weights=load_weights(weights_path(path)) if path else None)

    def load_gate(self) -> None:
        """The confidence gate shipped beside the checkpoint (NAME.gate.json), if there is one."""
        from completer.engine.gate import Gate, gate_path

        path = self.meta.get("path")
        self.gate = Gate.load(gate_path(path)) if path else None

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

    def open(self, uri, text: str, read: bool = False) -> None:
        """read=True: the memory has read this text already (a project file as it is on disk),
        so only what is typed from now on is fed to it."""
        with self._lock:
            self._docs[uri] = DocCache(self._check_text(text), self.cache_states)
            if read:
                self._docs[uri].fed = len(text)
            if self.adapt:  # its typed text will be learnt, into the workspace's weights
                self._adapted[uri] = self._new_adapt(len(text))

    def change(self, uri, text: str) -> None:
        """Replace the whole text; states before the first changed character are kept."""
        with self._lock:
            doc = self._doc(uri)
            old = doc.text
            doc.set_text(self._check_text(text))
            if self._adapted and text != old:  # the edit ends where the common suffix begins
                e = common_prefix(old, text)
                n = min(len(old), len(text)) - e
                tail = common_prefix(old[len(old) - n:][::-1], text[len(text) - n:][::-1])
                self._note_edit(uri, len(text) - tail)

    def edit(self, uri, start: int, end: int, new_text: str) -> None:
        """Replace text[start:end] by new_text (offsets in code points)."""
        with self._lock:
            doc = self._doc(uri)
            n = len(doc.text)
            if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end <= n):
                raise CompleterError(f"bad edit range {start}..{end} for a document of {n} characters")
            doc.edit(start, end, self._check_text(new_text))
            if self.memory is not None:  # a line it ends is the memory's to read, in the next pause
                doc.due = start + len(new_text)
            if self._adapted:
                self._note_edit(uri, start + len(new_text))

    def drop_prefix(self, uri, n: int) -> None:
        """Forget a document's first n characters (a REPL's oldest context, so that it stays
        bounded): its states go (their offsets moved), and what the memory read of the rest
        stays read, so nothing is counted twice."""
        with self._lock:
            doc = self._doc(uri)
            n = max(0, min(int(n), len(doc.text)))
            if not n:
                return
            new = self._docs[uri] = DocCache(doc.text[n:], self.cache_states)
            new.fed = max(0, doc.fed - n)
            if uri in self._adapted:
                self._adapted[uri] = self._new_adapt(len(new.text))

    def close(self, uri) -> None:
        with self._lock:
            self._docs.pop(uri, None)
            self._adapted.pop(uri, None)

    def text(self, uri) -> str:
        with self._lock:
            return self._doc(uri).text

    # ---- states -----------------------------------------------------------------------------
    def block_start(self, p: int) -> int:
        return max(0, (p // self.block - 1) * self.block)

    def _state_at(self, doc: DocCache, p: int, net=None, ahead: bool = True):
        """The model state after text[block_start(p):p], from the nearest saved state.

        The read that the next block will start from (at block_start(p) + S) is advanced to p
        as well, so typing across a block boundary costs a step, not a window of S characters;
        with ahead=False (a keystroke's prepare and completion) that step waits for `idle`."""
        start = self.block_start(p)
        net = net or self.net
        state = self._read(doc, start, p, net)
        nxt = self.block_start(p + self.block)
        if nxt != start:
            if ahead:
                self._read(doc, nxt, p, net)
                doc.behind = None
            else:
                doc.behind = (nxt, p)
        return state

    def idle(self) -> None:
        """What a frontend runs while the user pauses (serve: when no message waits; the REPLs:
        after each suggestion): the reads the next blocks start from catch up with the cursors,
        and the memory reads the lines that `prepare` left to it.
        A keystroke then costs one model step on the way to its suggestion instead of two."""
        with self._lock:
            for uri, doc in self._docs.items():
                if doc.behind is not None:
                    nxt, p = doc.behind
                    doc.behind = None
                    if p <= len(doc.text) and self.block_start(p + self.block) == nxt:
                        self._read(doc, nxt, p, self._net(uri))
                if doc.due is not None and self.memory is not None:
                    doc.feed(self.memory, doc.due, self.vocab)

    def _read(self, doc: DocCache, start: int, p: int, net):
        """The state after text[start:p] read by `net`, saving states on the way."""
        pos, state = doc.nearest(start, p)
        if state is None:
            pos, state = start, net.start
        text = doc.text
        if p - pos <= 2:  # typing: a step or two, nothing to save on the way
            if p > pos:
                state = net.read(state, self.vocab.encode(text[pos:p]))
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
            state = net.read(state, ids[at - pos:cut - pos])
            at = cut
            doc.remember(start, cut, state, save=cut != p or cut % 64 == 0 or text[cut - 1] == "\n")
        return state

    def prepare(self, uri, offset: int) -> None:
        """Read the document up to `offset` now (an editor may call it on each keystroke). The memory
        reading a line it finished waits for `idle` or the next completion (see docs/benchmarks.md)."""
        with self._lock:
            doc = self._doc(uri)
            self._check_offset(doc, offset)
            self._state_at(doc, offset, self._net(uri), ahead=False)
            if self.memory is not None:
                doc.due = offset

    @staticmethod
    def _check_offset(doc, offset) -> None:
        n = len(doc.text)
        if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= n:
            raise CompleterError(f"cursor offset {offset!r} is outside the document (0..{n})")

    # ---- completions ------------------------------------------------------------------------
    def complete(self, uri, offset: int, req: Request | None = None, cancel: CancelToken | None = None) -> list:
        req = (req or Request()).validated()
        decoder = self._decoder(req.decoder)
        received = _received(cancel)
        memory = self.memory
        with self._predicting(memory):
            with self._lock:
                doc = self._doc(uri)
                self._check_offset(doc, offset)
                net = self._net(uri)
                if memory is not None:
                    doc.feed(memory, offset, self.vocab)
                start = self._start(doc, offset, doc.text[offset:offset + 256], req, net)
            out, search = self._decode(start, req, decoder, cancel, net, memory, received)
        if search is not None and search.root_mix is not None:
            with self._lock:
                if self._docs.get(uri) is doc and doc.seen == offset:
                    doc.pending = (offset, search.root_mix)
        return out

    def complete_text(self, prefix: str, req: Request | None = None, cancel: CancelToken | None = None,
                      suffix: str = "") -> list:
        req = (req or Request()).validated()
        decoder = self._decoder(req.decoder)
        received = _received(cancel)
        self._check_text(prefix)
        self._check_text(suffix)
        memory = self.memory
        with self._predicting(memory):
            with self._lock:
                self._scratch.set_text(prefix)
                if memory is not None:
                    self._scratch.feed(memory, len(prefix), self.vocab)
                start = self._start(self._scratch, len(prefix), suffix, req, self.net)
            return self._decode(start, req, decoder, cancel, self.net, memory, received)[0]

    @staticmethod
    def _predicting(memory):
        """A completion runs: a project read in the background pauses meanwhile (Memory.predicting)."""
        return nullcontext() if memory is None else memory.predicting()

    def _decoder(self, name):
        from completer.registry import registry

        from completer.engine.decoders import Decoder

        obj = registry.get("decoder", name)
        decoder = obj() if isinstance(obj, type) else obj
        if not isinstance(decoder, Decoder):  # a plugin that breaks the contract is named, not fatal
            raise CompleterError(f"decoder {name!r} is not a completer.engine.decoders.Decoder")
        return decoder

    def _start(self, doc, offset, suffix, req, net):
        """Under the lock: (state, context, suffix) to decode from, or None for no suggestion."""
        text = doc.text
        if req.mode != "free" and continues_identifier(text[offset - 1:offset], suffix):
            return None
        state = self._state_at(doc, offset, net, ahead=doc is self._scratch)
        ids = self.vocab.encode(text[max(0, offset - CONTEXT):offset]) if self.memory is not None else None
        start = self.block_start(offset)
        # the string open where the context begins, for the stop rule and the syntax check
        begin = syntax.quote_before(text, start) if req.mode != "free" else (None, 0)
        return state, text[start:offset], suffix, ids, begin

    def _decode(self, start, req, decoder, cancel, net, memory, received):
        """Outside the lock: decoding reads the model and its own copy of the state (and the
        memory, which only `DocCache.feed` writes). -> (completions, the Search or None).
        With req.budget_ms, past `received` + budget the decoder is stopped (Search.check) and
        the continuation so far answers, cut back to a token boundary: while typing, a shorter
        suggestion now beats a whole line after the next keystroke (a busy machine's case)."""
        if start is None:
            return [], None
        state, context, suffix, ids, begin = start
        if memory is not None and not memory.chars:
            # an empty memory has nothing to add: its mixture only flattened the network's (a fresh
            # REPL's `for i in range(` -> `10):` at 0.69 nats a character instead of 0.43, and the
            # gate then hid it)
            memory = None
        deadline = received + req.budget_ms / 1000 if req.budget_ms else None
        search = Search(net, self.vocab, state, Stopper(req.mode, context, req.max_chars, begin), cancel,
                        memory=memory, context=ids, deadline=deadline, text=context)
        cut = False
        try:
            rng = None if decoder.deterministic else np.random.default_rng(req.seed)
            hyps = decoder.decode(search, req, rng)
        except OutOfTime:
            cut, partial = True, search.partial()
            hyps = [partial] if partial is not None else []
        except CompleterError:
            raise
        except Exception as exc:  # a failing plugin decoder is reported by name, never a traceback
            log.exception("decoder %s failed", req.decoder)
            raise CompleterError(f"decoder {req.decoder!r} failed: {type(exc).__name__}: {exc}") from None
        out, seen = [], set()
        line_ends = not suffix.split("\n", 1)[0].strip()   # nothing after the cursor on its line
        for h in hyps:
            keep = h.keep if h.keep is not None else len(h.ids)
            text = self.vocab.decode(h.ids[:keep])
            if h.guard is None or h.guard.n != len(h.ids):
                # not extended through Search.extend (a plugin's own hypotheses): the guard's
                # rule once, on the finished text, so that no loop reaches a client either way
                text = cut_loop(context, text)
            if req.mode in ("line", "block"):   # never a line left worse than the user's own
                text = syntax.check(context, text, line_ends and not cut and len(text) < req.max_chars, begin)
            done = finish(text, req.mode, suffix)
            if not done or done in seen:
                continue
            seen.add(done)
            lps = h.lps[:len(done)]
            c = Completion(done, float(sum(lps)), lps, cut=cut)
            c.features = gate_features(c, search.root_mix, req.mode, h.ids[0], h.looped,
                                       memory.chars if memory is not None else 0)   # ~10 us
            if self.gate is not None:
                c.confidence = self.gate.prob(c.features)
            if c.prob >= req.min_prob:
                out.append(c)
            if len(out) == req.n:
                break
        return out, search
