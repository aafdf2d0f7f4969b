"""The Engine's workspace learning (mixed into `completer.engine.Engine`; its state is made in
Engine.__init__: _adapted, _learner, _queue, _learning, _idle under the engine's lock).

Adaptation (opt-in: `Engine(..., adapt=True, adapt_lr=...)` or `engine.set_adapt(True, lr)`).
Dynamic evaluation across the workspace (completer.engine.adaptation): each time a document's text
has grown by WINDOW (128) characters, the 128 characters before the latest edit take one SGD step
(Adapter, as `completer eval --adapt`) on the workspace's copy of the weights, which then serve
every document: what was learnt in one file carries to the next, as eval measures it. A learning
thread runs the step (about 20 ms at H=256) outside the lock, then swaps the weights in under
it; edits only note the growth (off: one empty-dict test). `reset_adaptation()` or
`set_adapt(False)` give the shipped weights back and drop the states read with the adapted ones;
closing or reopening a document keeps them. Cached states are kept across a step: as in dynamic
evaluation (Krause et al. 2018), the recurrent state read under the old weights carries on and
what follows is read with the new ones; the steps are small (clipped), and re-reading up to 2S
characters per step would cost more than the step. So with adaptation on a completion depends on
the workspace's history, not on its text alone.
"""
from __future__ import annotations

import logging
import math
import threading

from completer.engine.net import Net
from completer.errors import CompleterError

log = logging.getLogger("completer.engine")


class Learning:
    def set_adapt(self, on: bool, lr: float | None = None) -> None:
        """Learn (on) or stop learning (off) each document's typed text; lr None = completer.engine.adaptation.LR.
        The one call a frontend makes. Off gives every document the shipped weights back."""
        from completer.engine.adaptation import LR

        lr = LR if lr is None else lr
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < math.inf:
            raise CompleterError(f"the adaptation learning rate must be a number > 0, got {lr!r}")
        with self._lock:
            if on and not self.adapt:
                self._start_adapt()
            elif not on:
                self._drop_adapt()
            self.adapt, self.adapt_lr = bool(on), float(lr)

    def reset_adaptation(self, uri=None) -> None:
        """The shipped weights again for the workspace (`:reset`); text typed so far stays unlearnt.
        uri: a document that must be open (frontends name the one the user is in), or None."""
        with self._lock:
            if uri is not None:
                self._doc(uri)
            if self.adapt:
                self._drop_adapt()
                self._start_adapt()

    def adapt_steps(self, uri=None) -> int:
        """How many SGD steps the workspace's current weights took (0: the shipped weights)."""
        with self._lock:
            if uri is not None:
                self._doc(uri)
            return self._learner.steps if self._learner is not None else 0

    def wait_adaptation(self, timeout: float | None = None) -> bool:
        """Block until no learning step is queued or running (tests, benchmarks); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._learning, timeout)

    @staticmethod
    def _new_adapt(length: int):
        from completer.engine.adaptation import DocAdapt

        return DocAdapt(length)

    def _start_adapt(self) -> None:
        """Under the lock: a new learner, the shipped weights to start from, every document tracked."""
        from completer.engine.adaptation import Learner

        self._learner = Learner()
        self._adapted = {uri: self._new_adapt(len(doc.text)) for uri, doc in self._docs.items()}

    def _drop_adapt(self) -> None:
        """Under the lock: forget the adapted weights and every state they read."""
        learner, self._learner, self._adapted = self._learner, None, {}
        self._queue.clear()
        if learner is not None and learner.net is not None:
            for doc in self._docs.values():
                doc.invalidate(0)  # what remains, at offset 0, is the zero state

    def _net(self, uri=None) -> Net:
        learner = self._learner
        return self.net if learner is None or learner.net is None else learner.net

    def _note_edit(self, uri, at: int) -> None:
        """Under the lock, after an edit ending at `at`: queue a learning step when one is due."""
        ad = self._adapted.get(uri)
        if ad is None or not ad.edited(at, len(self._docs[uri].text)):
            return
        ad.queued = True
        self._queue.append(uri)
        if not self._learning:
            self._learning = True
            threading.Thread(target=self._learn_loop, name="completer-adapt", daemon=True).start()

    def _learn_loop(self) -> None:
        """The learning thread: queued steps one at a time, outside the lock; ends when idle."""
        from completer.model.network import CharModel

        while True:
            with self._lock:
                if not self._queue:
                    self._learning = False
                    self._idle.notify_all()
                    return
                uri = self._queue.popleft()
                try:
                    job = self._learn_job(uri)
                except Exception:  # never leave _learning set with no thread to clear it
                    log.exception("preparing an adaptation step failed for %s", uri)
                    continue
            if job is None:
                continue
            learner, ids, n_read, state = job
            try:
                params = learner.learn(self.model, self.adapt_lr, ids, n_read, state)
                net = Net(CharModel(self.model.config, params=params), self.vocab, cells=self.model.cells)
            except Exception:  # a failed step must not stop serving: the workspace keeps its weights
                log.exception("adaptation step failed for %s", uri)
                continue
            with self._lock:
                if self._learner is learner:  # not reset or switched off meanwhile
                    learner.net, learner.steps = net, learner.steps + 1

    def _learn_job(self, uri):
        """Under the lock: (Learner, ids, n_read, state) for the document's due window, or None."""
        ad, doc = self._adapted.get(uri), self._docs.get(uri)
        if ad is None or doc is None or self._learner is None:
            return None
        window = ad.take(doc.text)
        if ad.due(len(doc.text)):  # more growth than one window: the next one after this
            ad.queued = True
            self._queue.append(uri)
        if window is None:
            return None
        a, b = window
        start = self.block_start(a - 1)  # the context the engine itself reads before text[a]
        pos, state = doc.nearest(start, a - 1)
        return self._learner, self.vocab.encode(doc.text[pos:b]), a - 1 - pos, state
