"""Vanilla (Elman) recurrent cell: h' = tanh(xp + h @ Wh), xp = x @ Wx + b."""
from __future__ import annotations

import numpy as np

from completer.cells.base import Cell


class RNN(Cell):
    name = "rnn"
    gates = 1
    n_states = 1

    def init_params(self, rng, dtype=np.float32):
        p = super().init_params(rng, dtype)
        p["Wh"] = self.uniform(rng, (self.H, self.H), dtype)
        return p

    def step(self, p, xp, state):
        return (np.tanh(xp + state[0] @ p["Wh"]),)

    def forward(self, p, xp, state):
        T, B, H = xp.shape
        Wh = p["Wh"]
        hs = np.empty((T + 1, B, H), xp.dtype)
        hs[0] = state[0]
        for t in range(T):
            np.matmul(hs[t], Wh, out=hs[t + 1])
            hs[t + 1] += xp[t]
            np.tanh(hs[t + 1], out=hs[t + 1])
        return hs[1:], (hs[T].copy(),), hs

    def backward(self, p, cache, dhs, dstate):
        hs = cache
        T, B, H = dhs.shape
        WhT = np.ascontiguousarray(p["Wh"].T)
        dxp = np.empty_like(dhs)                                    # (T, B, H)
        dh_next = dstate[0]
        for t in reversed(range(T)):
            np.add(dhs[t], dh_next, out=dxp[t])
            dxp[t] *= 1.0 - hs[t + 1] * hs[t + 1]                   # grad_a = dh * tanh'
            dh_next = dxp[t] @ WhT
        dWh = hs[:T].reshape(T * B, H).T @ dxp.reshape(T * B, H)
        return dxp, {"Wh": dWh}, (dh_next,)
