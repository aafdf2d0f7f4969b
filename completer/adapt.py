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
