"""The contract every recurrent cell fulfils, built-in or plugin.

Shapes: T steps, B streams, D input features, H hidden units, G blocks of the input projection
(1 for RNN, 3 for GRU, 4 for LSTM, your choice for a plugin).

Every cell has an input projection `xp = x @ Wx + b` of shape (T, B, G*H). The model computes it
for a whole window in one product (for the first layer, as a gather from an embedding x Wx
table), so a cell only implements the recurrence on top of `xp`:

  init_params(rng, dtype) -> {"Wx": (D, G*H), "b": (G*H,), **recurrent params}
  param_shapes()          -> {name: shape} of init_params's arrays, without making them
  step(p, xp, state)                      xp (B, G*H)          -> state
  forward(p, xp, state)                   xp (T, B, G*H)       -> hs (T, B, H), state, cache
  backward(p, cache, dhs, dstate)         dhs (T, B, H)        -> dxp (T, B, G*H), grads, dstate0

`state` is a tuple of (B, H) arrays whose first item is the output h (LSTM: (h, c)). `grads`
holds the gradients of the recurrent params only; the model derives Wx's and b's from dxp.
All math follows the dtype of the params: float32 in use, float64 in the gradient check.

Shapes without allocation: a checkpoint's config may lie (hidden 60000 would be a 53 GiB matrix),
so the loader asks `param_shapes()`, which never builds the arrays at the real size: init_params
runs on tiny probes of (D, H), each dimension of each parameter is solved as a + b*D + c*H, and
the rule is checked on two more probes. Every shipped cell's shapes are affine in D and H; a
plugin cell whose are not (or whose probe fails) is built once at full size instead, with zeros.

Speed: a cell's window passes write into buffers (`workspace`) that its backward hands back
(`release`, called by the model once it has used dxp) for the next window of the same shape, so
the training loop allocates nothing and never faults in fresh pages. A forward whose cache is
never given back (inference) simply gets fresh buffers, and several forwards in flight (dynamic
evaluation, threads) each get their own.
"""
from __future__ import annotations

import numpy as np


_PROBES = ((2, 3), (5, 3), (2, 7))   # (D, H): solve each dimension as a + b*D + c*H
_CHECKS = ((7, 11), (13, 4))         # (D, H): the rule must predict these
_RULES: dict = {}                    # cell class -> its rule (or None), learnt once


class _ZerosRng:
    """Stands in for a numpy Generator where only the shapes of the draws matter."""

    def uniform(self, low=0.0, high=1.0, size=None):
        return np.zeros(size, np.float32)

    def standard_normal(self, size=None, dtype=np.float64):
        return np.zeros(size, np.float32)


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

    @classmethod
    def shape_rule(cls) -> dict | None:
        """{param: ((a, b, c) per dimension)} with dimension = a + b*D + c*H, learnt from
        init_params on tiny probes; None if the shapes are not affine in (D, H)."""
        if cls not in _RULES:
            _RULES[cls] = cls._learn_rule()
        return _RULES[cls]

    @classmethod
    def _learn_rule(cls) -> dict | None:
        def shapes(cell):  # no random draws: numpy.random's import alone costs a start 23 ms
            try:
                params = cell.init_params(_ZerosRng())
            except AttributeError:  # a plugin cell drawing with another Generator method
                params = cell.init_params(np.random.default_rng(0))
            return {k: np.shape(v) for k, v in params.items()}

        try:
            probe = {dh: shapes(cls(*dh)) for dh in _PROBES + _CHECKS}
        except Exception:  # a plugin that cannot be built that small: shapes at full size
            return None
        (s0, s1, s2), base = (probe[dh] for dh in _PROBES), probe[_PROBES[0]]
        (d0, h0), (d1, _), (_, h2) = _PROBES
        rule = {}
        for k, shape in base.items():
            if any(k not in s or len(s[k]) != len(shape) for s in probe.values()):
                return None
            dims = []
            for i, n0 in enumerate(shape):
                b, rb = divmod(s1[k][i] - n0, d1 - d0)
                c, rc = divmod(s2[k][i] - n0, h2 - h0)
                if rb or rc:
                    return None
                dims.append((n0 - b * d0 - c * h0, b, c))
            rule[k] = tuple(dims)
        for (d, h) in _CHECKS:
            if set(probe[(d, h)]) != set(rule) or any(
                    probe[(d, h)][k] != tuple(a + b * d + c * h for a, b, c in dims) for k, dims in rule.items()):
                return None
        return rule

    def param_shapes(self) -> dict:
        """{name: shape} of init_params's arrays at this cell's (D, H), none of them allocated
        (unless the cell's shapes are not affine in D and H: then built once, as zeros)."""
        rule = self.shape_rule()
        if rule is not None:
            return {k: tuple(a + b * self.D + c * self.H for a, b, c in dims) for k, dims in rule.items()}
        try:
            params = self.init_params(_ZerosRng(), np.float32)
        except AttributeError:  # a plugin cell drawing with another Generator method
            params = self.init_params(np.random.default_rng(0), np.float32)
        return {k: np.shape(v) for k, v in params.items()}

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
