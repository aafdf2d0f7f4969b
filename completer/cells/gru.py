"""Gated recurrent unit (Cho et al. 2014), in the cuDNN/PyTorch form: reset applied after the
recurrent product, so each step needs one (B, H) @ (H, 3H) product. Blocks ordered r, z, n.

  hp = h @ Wh                       (B, 3H)
  r = sigmoid(xp_r + hp_r)          z = sigmoid(xp_z + hp_z)
  n = tanh(xp_n + r * (hp_n + bn))  h' = (1 - z) * n + z * h
"""
from __future__ import annotations

import numpy as np

from completer.cells.base import Cell, sigmoid


class GRU(Cell):
    name = "gru"
    gates = 3
    n_states = 1

    def init_params(self, rng, dtype=np.float32):
        p = super().init_params(rng, dtype)
        p["Wh"] = self.uniform(rng, (self.H, 3 * self.H), dtype)
        p["bn"] = np.zeros(self.H, dtype)
        return p

    def step(self, p, xp, state):
        (h,) = state
        H = self.H
        hp = h @ p["Wh"]                                            # (B, 3H)
        rz = sigmoid(xp[:, :2 * H] + hp[:, :2 * H])
        r, z = rz[:, :H], rz[:, H:]
        n = np.tanh(xp[:, 2 * H:] + r * (hp[:, 2 * H:] + p["bn"]))
        return (n + z * (h - n),)

    def forward(self, p, xp, state):
        T, B, _ = xp.shape
        H, Wh, bn = self.H, p["Wh"], p["bn"]
        hs = np.empty((T + 1, B, H), xp.dtype)
        acts = np.empty_like(xp)                                    # (T, B, 3H): r, z, n
        hpn = np.empty((T, B, H), xp.dtype)                         # hp_n + bn, needed by grad_r
        hp = np.empty((B, 3 * H), xp.dtype)
        hs[0] = state[0]
        for t in range(T):
            a = acts[t]
            np.matmul(hs[t], Wh, out=hp)
            np.add(xp[t, :, :2 * H], hp[:, :2 * H], out=a[:, :2 * H])
            sigmoid(a[:, :2 * H], out=a[:, :2 * H])
            r, z, n = a[:, :H], a[:, H:2 * H], a[:, 2 * H:]
            np.add(hp[:, 2 * H:], bn, out=hpn[t])
            np.multiply(r, hpn[t], out=n)
            n += xp[t, :, 2 * H:]
            np.tanh(n, out=n)
            np.subtract(hs[t], n, out=hs[t + 1])
            hs[t + 1] *= z
            hs[t + 1] += n
        return hs[1:], (hs[T].copy(),), (hs, acts, hpn)

    def backward(self, p, cache, dhs, dstate):
        hs, acts, hpn = cache
        T, B, H = dhs.shape
        WhT = np.ascontiguousarray(p["Wh"].T)                       # (3H, H)
        dxp = np.empty_like(acts)                                   # (T, B, 3H)
        dhp = np.empty_like(acts)                                   # grads of h @ Wh, per step
        dh_next = dstate[0].copy()
        for t in reversed(range(T)):
            a = acts[t]
            r, z, n = a[:, :H], a[:, H:2 * H], a[:, 2 * H:]
            dh = dhs[t] + dh_next
            grad_an = dh * (1.0 - z) * (1.0 - n * n)
            dxp[t, :, 2 * H:] = grad_an
            np.multiply(grad_an, r, out=dhp[t, :, 2 * H:])
            np.multiply(grad_an * hpn[t], r * (1.0 - r), out=dxp[t, :, :H])          # grad_ar
            np.multiply(dh * (hs[t] - n), z * (1.0 - z), out=dxp[t, :, H:2 * H])     # grad_az
            dhp[t, :, :2 * H] = dxp[t, :, :2 * H]
            dh_next = dh * z + dhp[t] @ WhT
        dWh = hs[:T].reshape(T * B, H).T @ dhp.reshape(T * B, 3 * H)
        dbn = dhp[:, :, 2 * H:].sum(axis=(0, 1))
        return dxp, {"Wh": dWh, "bn": dbn}, (dh_next,)
