"""Long short-term memory cell (Hochreiter & Schmidhuber 1997), gates ordered i, f, o, g.

  a = xp + h @ Wh            (B, 4H)   xp = x @ Wx + b, computed by the model
  i, f, o = sigmoid(a[:3H])  g = tanh(a[3H:])
  c' = f * c + i * g         h' = o * tanh(c')
"""
from __future__ import annotations

import numpy as np

from completer.cells.base import Cell, sigmoid


class LSTM(Cell):
    name = "lstm"
    gates = 4
    n_states = 2

    def init_params(self, rng, dtype=np.float32):
        p = super().init_params(rng, dtype)
        p["Wh"] = self.uniform(rng, (self.H, 4 * self.H), dtype)
        p["b"][self.H:2 * self.H] = 1.0  # forget-gate bias 1: remember by default at the start
        return p

    def _gates(self, a):
        """In place: a (B, 4H) pre-activations -> [i, f, o | g] activations."""
        H3 = 3 * self.H
        sigmoid(a[:, :H3], out=a[:, :H3])
        np.tanh(a[:, H3:], out=a[:, H3:])
        return a

    def step(self, p, xp, state):
        h, c = state
        H = self.H
        a = self._gates(xp + h @ p["Wh"])                           # (B, 4H)
        c = a[:, H:2 * H] * c + a[:, :H] * a[:, 3 * H:]
        return a[:, 2 * H:3 * H] * np.tanh(c), c

    def forward(self, p, xp, state):
        T, B, _ = xp.shape
        H, Wh = self.H, p["Wh"]
        hs = np.empty((T + 1, B, H), xp.dtype)                      # hs[0] = incoming h
        cs = np.empty((T + 1, B, H), xp.dtype)
        tanh_c = np.empty((T, B, H), xp.dtype)
        acts = np.empty_like(xp)                                    # (T, B, 4H) gate activations
        hs[0], cs[0] = state
        for t in range(T):
            a = acts[t]
            np.matmul(hs[t], Wh, out=a)
            a += xp[t]
            self._gates(a)
            np.multiply(a[:, H:2 * H], cs[t], out=cs[t + 1])
            cs[t + 1] += a[:, :H] * a[:, 3 * H:]
            np.tanh(cs[t + 1], out=tanh_c[t])
            np.multiply(a[:, 2 * H:3 * H], tanh_c[t], out=hs[t + 1])
        cache = (hs, cs, tanh_c, acts)
        return hs[1:], (hs[T].copy(), cs[T].copy()), cache

    def backward(self, p, cache, dhs, dstate):
        hs, cs, tanh_c, acts = cache
        T, B, H = dhs.shape
        WhT = np.ascontiguousarray(p["Wh"].T)                       # (4H, H)
        dxp = np.empty_like(acts)                                   # (T, B, 4H)
        dh_next, dc = dstate[0].copy(), dstate[1].copy()
        for t in reversed(range(T)):
            a, da = acts[t], dxp[t]
            i, f, o, g = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
            dh = dhs[t] + dh_next
            # dc accumulates the path through tanh(c') on top of the carried dc
            dc += dh * o * (1.0 - tanh_c[t] * tanh_c[t])
            np.multiply(dh * tanh_c[t], o * (1.0 - o), out=da[:, 2 * H:3 * H])  # grad_ao
            np.multiply(dc * g, i * (1.0 - i), out=da[:, :H])                   # grad_ai
            np.multiply(dc * cs[t], f * (1.0 - f), out=da[:, H:2 * H])          # grad_af
            np.multiply(dc * i, 1.0 - g * g, out=da[:, 3 * H:])                 # grad_ag
            dc *= f
            dh_next = da @ WhT
        # all T weight gradients as one product: (H, T*B) @ (T*B, 4H)
        dWh = hs[:T].reshape(T * B, H).T @ dxp.reshape(T * B, 4 * H)
        return dxp, {"Wh": dWh}, (dh_next, dc)
