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

Speed: a cell's window passes write into buffers (`workspace`) that its backward hands back
(`release`, called by the model once it has used dxp) for the next window of the same shape, so
the training loop allocates nothing and never faults in fresh pages. A forward whose cache is
never given back (inference) simply gets fresh buffers, and several forwards in flight (dynamic
evaluation, threads) each get their own.
"""
from __future__ import annotations

import numpy as np


class Cell:
    name = "cell"
    gates = 1  # G
    n_states = 1

    def __init__(self, input_size: int, hidden_size: int):
        self.D, self.H = input_size, hidden_size

    def workspace(self, T: int, B: int, dtype, shapes: dict) -> "Workspace":
        """Buffers {name: np.empty(shapes[name], dtype)} for a window of (T, B): a free one of
        this shape if a backward gave one back, else new. The cell's cache should be it."""
        pool = self.__dict__.setdefault("_pool", Pool())
        ws = pool.take((T, B, np.dtype(dtype)), shapes, dtype)
        ws.leased = True
        return ws

    def release(self, cache) -> None:
        """The model is done with this window (dxp used): recycle its buffers. No-op for caches
        that are not a Workspace (a plugin cell need not care)."""
        if isinstance(cache, Workspace):
            cache.leased = False
            self.__dict__["_pool"].give(cache)

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


class Workspace(dict):
    """Named buffers of one window's forward/backward; `leased` while a cache refers to it."""
    key, leased = None, False

    def check(self) -> "Workspace":
        if not self.leased:
            raise RuntimeError("this forward cache was already used by a backward; "
                               "run forward again")
        return self


class Pool:
    """Free workspaces by (T, B, dtype). Appends and pops are atomic, so threads are safe."""

    def __init__(self, keep_shapes: int = 4):
        self.free, self.keep_shapes = {}, keep_shapes

    def take(self, key, shapes: dict, dtype) -> Workspace:
        try:
            return self.free[key].pop()
        except (KeyError, IndexError):
            ws = Workspace((k, np.empty(s, dtype)) for k, s in shapes.items())
            ws.key = key
            return ws

    def give(self, ws: Workspace) -> None:
        if ws.key not in self.free and len(self.free) >= self.keep_shapes:
            self.free = {}  # shapes keep changing (evaluation pieces): drop the stale ones
        self.free.setdefault(ws.key, []).append(ws)


def sigmoid(x, out=None):
    """Logistic function via tanh: no overflow for large |x|, one transcendental pass."""
    out = np.multiply(x, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out
