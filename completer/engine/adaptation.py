"""Dynamic evaluation: the model keeps learning from the text it has already read.

After a window of text has been read (and, in evaluation, scored), one step of plain SGD on that
window's mean cross-entropy moves the weights towards the current file's names and habits
(Krause et al. 2018, "Dynamic Evaluation of Neural Sequence Models"). Only text the user really
typed is learnt from, never the model's own suggestions. The runtime owns this module: it
imports nothing from completer_trainers, so the engine's `--adapt` option can use it.

Interface:
    adapter = Adapter(model, lr=0.3, clip=1.0)   # keeps a copy of the initial weights
    loss, state = adapter.learn(ids, targets, state)
        # ids, targets (T, B) int; state as model.zero_state(B) -> mean loss (nats) of the window
        # under the weights *before* the step, and the final state (carry it on; read with the
        # old weights, as dynamic evaluation does). The model's params change in place.
    adapter.apply(grads)      # the SGD step alone, for a caller that computed its own gradients
    adapter.reset()           # back to the initial weights (a new document, `:reset`)
    adapter.steps             # SGD steps taken since creation or the last reset

The step: g <- grads scaled so that their global L2 norm is at most `clip` (a long run of
surprising text must not wreck the weights); p <- p - lr * g. Windows of 64-128 characters suit
it: shorter windows cost more per character, longer ones adapt later.
"""
from __future__ import annotations

import numpy as np

from completer.errors import CompleterError
from completer.model.network import CharModel

LR = 0.3        # default step size (measured with `completer eval --adapt`)
WINDOW = 128    # characters per step: for `completer eval --adapt` and the engine alike


class Adapter:
    def __init__(self, model, lr: float = LR, clip: float = 1.0):
        if not lr > 0 or not clip > 0:
            raise CompleterError(f"adaptation needs lr > 0 and clip > 0, got lr={lr}, clip={clip}")
        self.model, self.lr, self.clip = model, float(lr), float(clip)
        self.initial = {k: v.copy() for k, v in model.params.items()}
        self.steps = 0

    def apply(self, grads: dict) -> float:
        """One SGD step on the model's params; returns the gradient norm before clipping."""
        norm = float(np.sqrt(sum(float((g * g).sum()) for g in grads.values())))
        scale = self.lr * min(1.0, self.clip / norm) if norm > 0 else 0.0
        if scale and np.isfinite(norm):
            for k, g in grads.items():
                self.model.params[k] -= (scale * g).astype(self.model.params[k].dtype, copy=False)
            self.steps += 1
        return norm

    def learn(self, ids, targets, state):
        """Read a window (T, B), then learn from it: (mean loss in nats before the step, final state)."""
        loss, grads, final = self.model.loss_and_grads(ids, targets, state)
        self.apply(grads)
        return loss, final

    def reset(self) -> None:
        for k, v in self.initial.items():
            self.model.params[k][...] = v
        self.steps = 0


# ---- in the engine: one learner per workspace, one growth tracker per document ----------------
# The engine's opt-in adaptation (`Engine.set_adapt`) follows the user across the workspace: one
# Learner holds the weights learnt from every document's typed text, and they serve every
# document, carrying from file to file (as `completer eval --adapt` carries them), until
# `reset_adaptation` or `set_adapt(False)` gives the shipped weights back. Closing or reopening a
# document keeps them.
#
# Each open document has a DocAdapt that records where the user's latest edit ended (`at`) and how
# much the text has grown since the last learning step (`mark`); once the text is WINDOW
# characters longer, the WINDOW characters before `at` (what was just typed) are due for one SGD
# step of Adapter, the same step `completer eval --adapt` takes. When the text grew by more (a
# paste, or typing faster than the steps run), the growth is taken as the text before `at` and
# learnt window after window, oldest first, at most MAX_WINDOWS of them per burst: a huge paste
# costs a bounded number of steps. Suggestions never enter the document, so they are never learnt
# from; an accepted suggestion is text the user chose, like any other edit.
#
# The weights are copied on the first step (`Learner.learner`, private to the engine's learning
# thread); after each step a snapshot of them becomes the serving `net`, never written again, so
# decoding may read it outside the engine lock while the next step runs. Not thread-safe by
# themselves: the engine's lock guards every field but `learner`/`adapter`.

MIN_WINDOW = 16   # a shorter run of typing (near the top of a file) is not worth a step
MAX_WINDOWS = 8   # steps per burst of growth; older growth is skipped


class Learner:
    def __init__(self):
        self.steps = 0          # SGD steps whose weights serve the workspace
        self.net = None         # the engine's Net over the adapted weights; None = the shipped ones
        self.learner = None     # CharModel over the weights being learnt (learning thread only)
        self.adapter = None

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


class DocAdapt:
    def __init__(self, length: int):
        self.mark = length      # the text's length after the last step, lowered by deletions
        self.at = length        # where the latest edit ended: the user's typing point
        self.queued = False     # a step is waiting for the learning thread

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
