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
        ws = self.workspace(T, B, xp.dtype, {"hs": (T + 1, B, H), "dxp": (T, B, H), "deriv": (T, B, H),
                                              "dh_next": (B, H)})
        hs = ws["hs"]                                               # hs[0] = incoming h
        hs[0] = state[0]
        for t in range(T):
            np.matmul(hs[t], Wh, out=hs[t + 1])
            hs[t + 1] += xp[t]
            np.tanh(hs[t + 1], out=hs[t + 1])
        return hs[1:], (hs[T].copy(),), ws

    def backward(self, p, cache, dhs, dstate):
        ws = cache.check()
        hs, dxp, deriv, dh_next = ws["hs"], ws["dxp"], ws["deriv"], ws["dh_next"]
        T, B, H = dhs.shape
        WhT = np.ascontiguousarray(p["Wh"].T)
        np.multiply(hs[1:], hs[1:], out=deriv)                      # tanh' = 1 - h'^2, whole window
        np.subtract(1.0, deriv, out=deriv)
        dh_next[...] = dstate[0]
        for t in reversed(range(T)):
            np.add(dhs[t], dh_next, out=dxp[t])
            dxp[t] *= deriv[t]                                      # grad_a = dh * tanh'
            np.matmul(dxp[t], WhT, out=dh_next)
        dWh = hs[:T].reshape(T * B, H).T @ dxp.reshape(T * B, H)
        return dxp, {"Wh": dWh}, (dh_next.copy(),)
