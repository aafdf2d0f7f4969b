"""Decoders: how a continuation is chosen. Built-ins greedy, temperature, top-k, top-p, beam.

Every decoder is a registered component (entry-point group `completer.decoders`, built-ins
included); the engine looks it up by the request's `decoder` name and calls `decode` once per
request. The contract (a plugin subclasses `Decoder`):

  decode(search, req, rng) -> list[Hyp]
      search  a `Search` over the model for this request: `search.root()` is the hypothesis of
              the empty continuation; `search.logprobs(hyps)` -> (B, V) float32 log-probabilities
              of the next character of each live hypothesis (one batched model step);
              `search.extend(hyp, i, lp)` -> a new Hyp with character id `i` (log-prob `lp`)
              appended and `.done` set when the mode's stop rule ends it, or when the
              repetition guard does (`.looped`: it began a loop, and is cut before it; see
              completer.engine.guard: a search may prune such hypotheses); `search.check()`
              raises Cancelled if the request was cancelled, OutOfTime past its budget
              (call it once per character and let both propagate: the engine answers an
              OutOfTime with the hypothesis extended last, `search.partial()`).
      req     the validated `Request` (temperature, top_k, top_p, beam, n, max_chars ...)
      rng     a numpy Generator seeded from req.seed; None for a decoder that declares
              `deterministic = True` (it draws nothing, and numpy.random's import and a
              generator's seeding cost 23 ms at the first request, 27 us at every other)
      returns finished hypotheses, best first; the engine turns them into Completions
              (post-processing, deduplication, the min_prob filter, at most req.n).

A sampler only overrides `choose(lp, req, rng) -> int`: the base `decode` draws req.n
continuations one character at a time with it. A search (beam) overrides `decode`.
Decoders never touch model states; `Search` steps the model, on copies of the document's state.
"""
from __future__ import annotations

import numpy as np


class Decoder:
    name = "decoder"
    deterministic = False  # True: one continuation whatever req.n (greedy)

    def choose(self, lp: np.ndarray, req, rng) -> int:
        """The next character id, given the (V,) log-probabilities."""
        raise NotImplementedError

    def decode(self, search, req, rng) -> list:
        out = []
        for _ in range(1 if self.deterministic else req.n):
            hyp = search.root()
            while not hyp.done:
                search.check()
                lp = search.logprobs([hyp])[0]
                i = self.choose(lp, req, rng)
                hyp = search.extend(hyp, i, lp[i])
            out.append(hyp)
        return out


def _sample(lp: np.ndarray, temperature: float, rng) -> int:
    """Draw from softmax(lp / temperature); temperature 0 is argmax."""
    if temperature < 1e-6:  # below this lp / T overflows; the limit is argmax anyway
        return int(np.argmax(lp))
    z = lp / temperature
    p = np.exp(z - z.max())
    c = np.cumsum(p)
    return int(min(np.searchsorted(c, rng.random() * c[-1], side="right"), len(c) - 1))


class Greedy(Decoder):
    """The most probable character at every step."""
    name = "greedy"
    deterministic = True

    def choose(self, lp, req, rng):
        return int(lp.argmax())


class Temperature(Decoder):
    """Sample from the distribution sharpened (T < 1) or flattened (T > 1) by req.temperature."""
    name = "temperature"

    def choose(self, lp, req, rng):
        return _sample(lp, req.temperature, rng)


class TopK(Decoder):
    """Sample (with temperature) among the req.top_k most probable characters."""
    name = "top-k"

    def choose(self, lp, req, rng):
        k = min(req.top_k, lp.shape[0])
        top = np.argpartition(-lp, k - 1)[:k]
        return int(top[_sample(lp[top], req.temperature, rng)])


class TopP(Decoder):
    """Nucleus sampling: among the fewest most probable characters whose mass reaches req.top_p."""
    name = "top-p"

    def choose(self, lp, req, rng):
        order = np.argsort(-lp)
        p = np.exp(lp[order])
        keep = int(np.searchsorted(np.cumsum(p), req.top_p * p.sum())) + 1
        top = order[:keep]
        return int(top[_sample(lp[top], req.temperature, rng)])


class Beam(Decoder):
    """Beam search of width req.beam; returns the req.n most probable finished continuations.

    A hypothesis's score is its total log-probability including the character that ended it
    (e.g. the newline of a line), so it ranks whole continuations. The search stops once n are
    finished and no live hypothesis can still beat the n-th (scores only fall). A hypothesis the
    repetition guard ended (`looped`: it began a loop) is pruned; cut before its loop, it answers
    only if no other finishes."""
    name = "beam"
    deterministic = True

    def decode(self, search, req, rng):
        width, n = req.beam, req.n
        live, finished, pruned = [search.root()], [], []
        while live:
            search.check()
            lp = search.logprobs(live)                              # (B, V)
            scores = np.array([h.score for h in live])[:, None] + lp
            flat = scores.ravel()
            k = min(width, flat.size)
            best = np.argpartition(-flat, k - 1)[:k]
            best = best[np.argsort(-flat[best])]
            V = lp.shape[1]
            nxt = []
            for j in best:
                b, i = divmod(int(j), V)
                h = search.extend(live[b], i, lp[b, i])
                (pruned if getattr(h, "looped", False) else finished if h.done else nxt).append(h)
            live = nxt
            finished.sort(key=lambda h: -h.score)
            if len(finished) >= n and (not live or live[0].score <= finished[n - 1].score):
                break
        return finished or sorted(pruned, key=lambda h: -h.score)[:n]
