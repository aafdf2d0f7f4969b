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
        H, H2, Wh, bn = self.H, 2 * self.H, p["Wh"], p["bn"]
        ws = self.workspace(T, B, xp.dtype, {
            "hs": (T + 1, B, H), "acts": (T, B, 3 * H),            # acts: r, z, n
            "hpn": (T, B, H), "hp": (B, 3 * H),                     # hpn = hp_n + bn, needed by grad_r
            "dxp": (T, B, 3 * H), "dhp": (T, B, 3 * H), "dh": (B, H), "dh_next": (B, H),
            "dhz": (B, H), "tmp": (B, H), "drz": (B, 2 * H)})
        hs, acts, hpn, hp = ws["hs"], ws["acts"], ws["hpn"], ws["hp"]
        hs[0] = state[0]
        for t in range(T):
            a = acts[t]                                             # (B, 3H)
            np.matmul(hs[t], Wh, out=hp)
            np.add(xp[t, :, :H2], hp[:, :H2], out=a[:, :H2])
            sigmoid(a[:, :H2], out=a[:, :H2])
            r, z, n = a[:, :H], a[:, H:H2], a[:, H2:]
            np.add(hp[:, H2:], bn, out=hpn[t])
            np.multiply(r, hpn[t], out=n)
            n += xp[t, :, H2:]
            np.tanh(n, out=n)
            np.subtract(hs[t], n, out=hs[t + 1])                    # h' = n + z * (h - n)
            hs[t + 1] *= z
            hs[t + 1] += n
        return hs[1:], (hs[T].copy(),), ws

    def backward(self, p, cache, dhs, dstate):
        ws = cache.check()
        hs, acts, hpn, dxp, dhp = ws["hs"], ws["acts"], ws["hpn"], ws["dxp"], ws["dhp"]
        dh, dh_next, dhz, tmp, drz = ws["dh"], ws["dh_next"], ws["dhz"], ws["tmp"], ws["drz"]
        T, B, H = dhs.shape
        H2 = 2 * H
        WhT = np.ascontiguousarray(p["Wh"].T)                       # (3H, H), once per window
        dh_next[...] = dstate[0]
        for t in reversed(range(T)):
            a, dx = acts[t], dxp[t]
            r, z, n = a[:, :H], a[:, H:H2], a[:, H2:]
            grad_ar, grad_az, grad_an = dx[:, :H], dx[:, H:H2], dx[:, H2:]
            np.add(dhs[t], dh_next, out=dh)
            np.multiply(dh, z, out=dhz)                             # the direct path h -> h'
            # grad_an = dh * (1 - z) * (1 - n^2)
            np.subtract(dh, dhz, out=grad_an)
            np.multiply(n, n, out=tmp)
            np.subtract(1.0, tmp, out=tmp)
            grad_an *= tmp
            np.multiply(grad_an, r, out=dhp[t, :, H2:])             # through r * (hp_n + bn)
            # grad_ar = grad_an * (hp_n + bn) * r(1 - r);  grad_az = dh * (h - n) * z(1 - z)
            np.multiply(grad_an, hpn[t], out=grad_ar)
            np.subtract(hs[t], n, out=grad_az)
            grad_az *= dh
            np.multiply(a[:, :H2], a[:, :H2], out=drz)
            np.subtract(a[:, :H2], drz, out=drz)
            dx[:, :H2] *= drz
            dhp[t, :, :H2] = dx[:, :H2]
            np.matmul(dhp[t], WhT, out=dh_next)
            dh_next += dhz
        dWh = hs[:T].reshape(T * B, H).T @ dhp.reshape(T * B, 3 * H)
        dbn = dhp[:, :, H2:].sum(axis=(0, 1))
        return dxp, {"Wh": dWh, "bn": dbn}, (dh_next.copy(),)
