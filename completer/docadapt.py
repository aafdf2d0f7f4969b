"""What one open document has taught its own copy of the weights (the engine's opt-in adaptation).

The engine keeps one DocAdapt per open document while adaptation is on (`Engine.set_adapt`). It
records where the user's latest edit ended (`at`) and how much the text has grown since the last
learning step (`mark`); once the text is WINDOW characters longer, the WINDOW characters before
`at` (what was just typed) are due for one SGD step of `completer.adapt.Adapter`, the same step
`completer eval --adapt` takes. When the text grew by more (a paste, or typing faster than the
steps run), the growth is taken as the text before `at` and learnt window after window, oldest
first, at most MAX_WINDOWS of them per burst: a huge paste costs a bounded number of steps. Suggestions never enter the document, so they are never learnt
from; an accepted suggestion is text the user chose, like any other edit.

The weights are copied on the first step (`learner`, private to the engine's learning thread);
after each step a snapshot of them becomes the document's serving `net`, never written again, so
decoding may read it outside the engine lock while the next step runs. Not thread-safe by itself:
the engine's lock guards every field but `learner`/`adapter`, which only its learning thread uses.
"""
from __future__ import annotations

import numpy as np

from completer.adapt import WINDOW, Adapter
from completer.model import CharModel

MIN_WINDOW = 16   # a shorter run of typing (near the top of a file) is not worth a step
MAX_WINDOWS = 8   # steps per burst of growth; older growth is skipped


class DocAdapt:
    def __init__(self, length: int):
        self.mark = length      # the text's length after the last step, lowered by deletions
        self.at = length        # where the latest edit ended: the user's typing point
        self.queued = False     # a step is waiting for the learning thread
        self.steps = 0          # SGD steps whose weights serve the document
        self.net = None         # the engine's Net over the adapted weights; None = the shipped ones
        self.learner = None     # CharModel over the weights being learnt (learning thread only)
        self.adapter = None

    def due(self, length: int) -> bool:
        """A step is due and not yet queued (the text is now `length` long)."""
        return length - self.mark >= WINDOW and not self.queued

    def edited(self, at: int, length: int) -> bool:
        """Note an edit ending at `at`, the text now `length` long; True if a step is now due."""
        self.at = at
        self.mark = min(self.mark, length)
        return self.due(length)

    def take(self, text: str):
        """The oldest window due, as (a, b): learn to predict text[a:b] from what precedes it;
        None when none is (or it is too short). It counts as learnt from now on."""
        self.queued = False
        n = len(text)
        grown = min(n - self.mark, MAX_WINDOWS * WINDOW)
        if grown < WINDOW:
            return None
        self.mark = n - grown + WINDOW
        b = min(self.at, n) - (grown - WINDOW)   # the growth is taken as the text before `at`
        a = max(1, b - WINDOW)
        return (a, b) if b - a >= MIN_WINDOW else None

    def learn(self, model, lr: float, ids, n_read: int, state) -> dict:
        """One SGD step; returns a snapshot of the new weights.

        ids (N,): text[pos:b] for the window (a, b), whose first n_read = a - 1 - pos characters are
        only read (from `state`, the engine's state after its context up to pos; None = zero)."""
        if self.learner is None:  # copy on first step: the shipped weights are never written
            self.learner = CharModel(model.config, params={k: v.copy() for k, v in model.params.items()})
            self.adapter = Adapter(self.learner, lr)
        self.adapter.lr = lr
        x = np.asarray(ids)[:, None]                                            # (N, 1)
        if state is None:
            state = self.learner.zero_state(1)
        if n_read:
            _, state, _ = self.learner.forward(x[:n_read], state)
        self.adapter.learn(x[n_read:-1], x[n_read + 1:], state)                 # (W, 1) -> next chars
        return {k: v.copy() for k, v in self.learner.params.items()}
