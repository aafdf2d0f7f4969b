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
        a = h @ p["Wh"]                                             # (B, 4H)
        a += xp                     # in place, here and below: at batch 1 each temporary costs
        self._gates(a)              # more than the arithmetic (same operations, same results)
        c = a[:, H:2 * H] * c
        c += a[:, :H] * a[:, 3 * H:]
        h = np.tanh(c)
        h *= a[:, 2 * H:3 * H]
        return h, c

    def forward(self, p, xp, state):
        T, B, _ = xp.shape
        H, H3, Wh = self.H, 3 * self.H, p["Wh"]
        ws = self.workspace(T, B, xp.dtype, {
            "hs": (T + 1, B, H), "cs": (T + 1, B, H),              # [0] = incoming state
            "tanh_c": (T, B, H), "acts": (T, B, 4 * H),             # acts: i, f, o, g activations
            "dxp": (T, B, 4 * H), "dh": (B, H), "dc": (B, H), "tmp": (B, H), "dgate": (B, 4 * H),
            "da_T": (4 * H, B), "dh_next_T": (H, B)})
        hs, cs, tanh_c, acts, tmp = ws["hs"], ws["cs"], ws["tanh_c"], ws["acts"], ws["tmp"]
        hs[0], cs[0] = state
        for t in range(T):
            a = acts[t]                                             # (B, 4H)
            np.matmul(hs[t], Wh, out=a)
            a += xp[t]
            sigmoid(a[:, :H3], out=a[:, :H3])
            np.tanh(a[:, H3:], out=a[:, H3:])
            np.multiply(a[:, H:2 * H], cs[t], out=cs[t + 1])       # c' = f * c + i * g
            np.multiply(a[:, :H], a[:, H3:], out=tmp)
            cs[t + 1] += tmp
            np.tanh(cs[t + 1], out=tanh_c[t])
            np.multiply(a[:, 2 * H:H3], tanh_c[t], out=hs[t + 1])  # h' = o * tanh(c')
        return hs[1:], (hs[T].copy(), cs[T].copy()), ws

    def backward(self, p, cache, dhs, dstate):
        ws = cache.check()
        hs, cs, tanh_c, acts, dxp = ws["hs"], ws["cs"], ws["tanh_c"], ws["acts"], ws["dxp"]
        dh, dc, tmp, dgate = ws["dh"], ws["dc"], ws["tmp"], ws["dgate"]
        da_T, dh_next_T = ws["da_T"], ws["dh_next_T"]                # (4H, B), (H, B)
        T, B, H = dhs.shape
        H3, Wh = 3 * H, p["Wh"]
        # The recurrent product runs transposed, dh_next^T (H, B) = Wh (H, 4H) @ da^T (4H, B):
        # OpenBLAS does this shape ~20% faster than da @ Wh^T at H=512, B=32, which pays for
        # the (B, 4H) -> (4H, B) copy of da (measured: -12 ms per LSTM-512 window, the forward
        # gains nothing from the same trick). dh_next is a (B, H) view of dh_next_T.
        dh_next = dh_next_T.T
        dh_next[...], dc[...] = dstate
        for t in reversed(range(T)):
            a, da = acts[t], dxp[t]                                 # (B, 4H)
            i, f, o, g = a[:, :H], a[:, H:2 * H], a[:, 2 * H:H3], a[:, H3:]
            np.add(dhs[t], dh_next, out=dh)
            # dc += dh * o * tanh'(c'): the path through h' on top of the carried dc
            np.multiply(tanh_c[t], tanh_c[t], out=tmp)
            np.subtract(1.0, tmp, out=tmp)
            tmp *= o
            tmp *= dh
            dc += tmp
            # gradients w.r.t. the activations, then times the local derivatives in one pass
            np.multiply(dh, tanh_c[t], out=da[:, 2 * H:H3])         # d o
            np.multiply(dc, g, out=da[:, :H])                       # d i
            np.multiply(dc, cs[t], out=da[:, H:2 * H])              # d f
            np.multiply(dc, i, out=da[:, H3:])                      # d g
            np.multiply(a[:, :H3], a[:, :H3], out=dgate[:, :H3])    # sigmoid' = s - s^2
            np.subtract(a[:, :H3], dgate[:, :H3], out=dgate[:, :H3])
            np.multiply(g, g, out=dgate[:, H3:])                    # tanh' = 1 - g^2
            np.subtract(1.0, dgate[:, H3:], out=dgate[:, H3:])
            da *= dgate                                             # grad_ai, grad_af, grad_ao, grad_ag
            dc *= f
            np.copyto(da_T, da.T)
            np.matmul(Wh, da_T, out=dh_next_T)
        # all T weight gradients as one product: (H, T*B) @ (T*B, 4H)
        dWh = hs[:T].reshape(T * B, H).T @ dxp.reshape(T * B, 4 * H)
        return dxp, {"Wh": dWh}, (np.ascontiguousarray(dh_next), dc.copy())
