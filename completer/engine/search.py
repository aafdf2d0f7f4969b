"""The model as a decoder sees it for one request: hypotheses, their states, the next distribution.

`Search.logprobs` is the one place a decoder gets probabilities from: the network's, mixed with
the project memory's when the engine has one (completer.memory), so every decoder (greedy, beam,
the samplers, plugins) predicts through the same mixture. See completer.engine.decoders for the contract.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from completer.engine.guard import Guard
from completer.engine.requests import Cancelled, OutOfTime
from completer.engine.stops import Stopper

CONTEXT = 64    # characters before the cursor the memory conditions on (its kernel's CONTEXT)


@dataclass(slots=True)
class Hyp:
    """One continuation under construction. `pending` is the last chosen id not yet read."""
    ids: list
    lps: list
    score: float
    state: list
    stopper: Stopper
    pending: int | None = None
    keep: int | None = None      # set when finished: how many of ids the stop rule keeps
    guard: Guard | None = None   # the repetition guard (completer.engine.guard) of these ids
    looped: bool = False         # finished by the guard: ids[keep:] began a loop

    @property
    def done(self) -> bool:
        return self.keep is not None


class Search:
    """The model seen by a decoder for one request (see completer.engine.decoders for the contract)."""

    def __init__(self, net, vocab, state, stopper, cancel, memory=None, context=None, deadline=None,
                 text: str = ""):
        """memory: a completer.memory.Memory to mix with the network (None: the network alone);
        context: (L,) int32 ids of the text before the cursor, which the memory conditions on
        (extended by each hypothesis's own characters: nothing generated is ever counted);
        deadline: a time.perf_counter() value past which check() raises OutOfTime;
        text: the text before the cursor, for the repetition guard (a repetition it shows is no
        loop)."""
        self.net, self.vocab, self.cancel, self.memory = net, vocab, cancel, memory
        self.deadline, self._checked = deadline, None
        self.latest = None      # the hypothesis extended last: what a request out of time returns
        self._root = Hyp([], [], 0.0, [tuple(a.copy() for a in s) for s in state], stopper, guard=Guard(text))
        self._chars = vocab.symbols
        # (2 * CONTEXT,) int32: [CONTEXT - len(context), CONTEXT) holds the context, what follows a
        # hypothesis's ids (written per prediction: one array, no list joined and converted)
        self._buf = np.zeros(2 * CONTEXT, np.int32)
        ctx = np.asarray(context if memory is not None and context is not None else [], np.int32)[-CONTEXT:]
        self._start = CONTEXT - len(ctx)
        self._buf[self._start:CONTEXT] = ctx
        self.root_mix = None    # (set, inputs, lp) of the first prediction: the mixer learns from it

    def root(self) -> Hyp:
        return self._root

    def check(self) -> None:
        if self.cancel is not None and self.cancel.cancelled:
            raise Cancelled("request cancelled")
        if self.deadline is not None:
            # out of time, or would be after one more character as long as the last one took (a
            # busy machine's characters are slow and uneven: better a character less than late)
            now = time.perf_counter()
            if now + (now - self._checked if self._checked else 0.0) > self.deadline and self.partial():
                raise OutOfTime()   # (only once there is a token to answer with: never empty)
            self._checked = now

    def logprobs(self, hyps) -> np.ndarray:
        todo = [h for h in hyps if h.pending is not None]
        if len(todo) == 1:
            h = todo[0]
            h.state, h.pending = self.net.step([h.pending], h.state), None
        elif todo:  # one batched step for every beam
            L = len(todo[0].state)
            stacked = [tuple(np.concatenate([h.state[l][k] for h in todo])
                             for k in range(len(todo[0].state[l]))) for l in range(L)]
            new = self.net.step(np.array([h.pending for h in todo]), stacked)
            for b, h in enumerate(todo):
                h.state = [tuple(a[b:b + 1] for a in s) for s in new]
                h.pending = None
        if len(hyps) == 1:
            state = hyps[0].state
        else:
            L = len(hyps[0].state)
            state = [(np.concatenate([h.state[L - 1][0] for h in hyps]),)]
        if self.memory is None:
            return self.net.logprobs(state)                                 # (B, V)
        return self._mix(hyps, self.net.logits(state))

    def _mix(self, hyps, z) -> np.ndarray:
        """The network's (B, V) scores (logits) mixed with the memory's, row by row."""
        out = np.empty_like(z)
        for b, h in enumerate(hyps):
            n = len(h.ids)
            if n >= CONTEXT:
                ctx = np.array(h.ids[-CONTEXT:], np.int32)
            else:  # the context before the cursor, then the hypothesis's own characters
                self._buf[CONTEXT:CONTEXT + n] = h.ids
                ctx = self._buf[max(self._start, n):CONTEXT + n]
            out[b], s, inputs = self.memory.mix(ctx, z[b], min(n, CONTEXT))
            if h is self._root and self.root_mix is None:
                self.root_mix = (s, inputs, out[b].copy())
        return out

    def extend(self, hyp: Hyp, i: int, lp: float) -> Hyp:
        """hyp with character i appended; finished when the stop rule ends it, or when the
        repetition guard finds it starting a loop (then cut before the loop, `looped` set)."""
        stopper = hyp.stopper.copy()
        ch = self._chars[i]
        keep = stopper.push(ch)
        looped = False
        guard = hyp.guard
        if guard is not None and guard.n == len(hyp.ids):
            guard = guard.copy()
            cut = guard.push(ch)
            if cut is not None and (keep is None or cut < keep):
                keep, looped = cut, True
        else:   # a hypothesis made outside extend: the engine checks its text once finished
            guard = None
        self.latest = Hyp(hyp.ids + [int(i)], hyp.lps + [float(lp)], hyp.score + float(lp), hyp.state,
                          stopper, pending=int(i), keep=keep, guard=guard, looped=looped)
        return self.latest

    def partial(self) -> Hyp | None:
        """The latest hypothesis cut back to a token boundary (before a name or number it may
        have left half-written), or None if that leaves nothing."""
        h = self.latest
        if h is None:
            return None
        k = len(h.ids) if h.keep is None else h.keep
        chars = self._chars
        if k and (chars[h.ids[k - 1]].isalnum() or chars[h.ids[k - 1]] == "_"):
            while k and (chars[h.ids[k - 1]].isalnum() or chars[h.ids[k - 1]] == "_"):
                k -= 1
        return Hyp(h.ids, h.lps, h.score, h.state, h.stopper, keep=k, guard=h.guard, looped=h.looped) if k else None

