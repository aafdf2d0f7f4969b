"""The contract every recurrent cell fulfils, built-in or plugin.

Shapes: T steps, B streams, D input features, H hidden units, G blocks of the input projection
(1 for RNN, 3 for GRU, 4 for LSTM, your choice for a plugin).

Every cell has an input projection `xp = x @ Wx + b` of shape (T, B, G*H). The model computes it
for a whole window in one product (for the first layer, as a gather from an embedding x Wx
table), so a cell only implements the recurrence on top of `xp`:

  init_params(rng, dtype) -> {"Wx": (D, G*H), "b": (G*H,), **recurrent params}
  step(p, xp, state)                      xp (B, G*H)          -> state
  forward(p, xp, state)                   xp (T, B, G*H)       -> hs (T, B, H), state, cache
  backward(p, cache, dhs, dstate)         dhs (T, B, H)        -> dxp (T, B, G*H), grads, dstate0

`state` is a tuple of (B, H) arrays whose first item is the output h (LSTM: (h, c)). `grads`
holds the gradients of the recurrent params only; the model derives Wx's and b's from dxp.
All math follows the dtype of the params: float32 in use, float64 in the gradient check.

Speed: a cell's window passes write into buffers kept on the cell (`workspace`) and reused by
every window of the same shape, so the hot loop allocates nothing and never faults in fresh
pages. A cache therefore stays valid only until the next forward of the same shape; backward
checks that (`check_cache`) instead of silently reading overwritten buffers.
"""
from __future__ import annotations

import numpy as np


class Cell:
    name = "cell"
    gates = 1  # G
    n_states = 1

    def __init__(self, input_size: int, hidden_size: int):
        self.D, self.H = input_size, hidden_size
        self._workspaces = {}

    def workspace(self, T: int, B: int, dtype, shapes: dict) -> dict:
        """Buffers {name: array of shapes[name]} for windows of (T, B), reused across windows.

        The dict also holds "gen", bumped on every call: caches record it, see check_cache."""
        key = (T, B, np.dtype(dtype))
        ws = self._workspaces.get(key)
        if ws is None:
            if len(self._workspaces) >= 4:  # e.g. training + evaluation shapes; drop stale ones
                self._workspaces.clear()
            ws = self._workspaces[key] = {k: np.empty(s, dtype) for k, s in shapes.items()}
            ws["gen"] = 0
        ws["gen"] += 1
        return ws

    @staticmethod
    def check_cache(ws: dict, gen: int) -> None:
        if ws["gen"] != gen:
            raise RuntimeError("this forward cache was overwritten by a later forward of the same "
                               "shape; call backward before the next forward")

    def uniform(self, rng, shape, dtype):
        bound = 1.0 / np.sqrt(self.H)  # PyTorch's default for recurrent layers
        return rng.uniform(-bound, bound, size=shape).astype(dtype)

    def init_params(self, rng, dtype=np.float32) -> dict:
        D, GH = self.D, self.gates * self.H
        return {"Wx": self.uniform(rng, (D, GH), dtype), "b": np.zeros(GH, dtype)}

    def zero_state(self, B: int, dtype=np.float32) -> tuple:
        return tuple(np.zeros((B, self.H), dtype) for _ in range(self.n_states))

    def step(self, p, xp, state):
        raise NotImplementedError

    def forward(self, p, xp, state):
        raise NotImplementedError

    def backward(self, p, cache, dhs, dstate):
        raise NotImplementedError


def sigmoid(x, out=None):
    """Logistic function via tanh: no overflow for large |x|, one transcendental pass."""
    out = np.multiply(x, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out
