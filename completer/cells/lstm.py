"""Long short-term memory cell (Hochreiter & Schmidhuber 1997), gates ordered i, f, o, g.

  a = xp + h @ Wh            (B, 4H)   xp = x @ Wx + b, computed by the model
  i, f, o = sigmoid(a[:3H])  g = tanh(a[3H:])
  c' = f * c + i * g         h' = o * tanh(c')

The window passes keep every per-step array feature-major, (4H, B) and (H, B), one contiguous
block per step, (T, 4H, B) for the window, and turn the recurrent product around:
a^T (4H, B) = Wh^T (4H, H) @ h^T (H, B). OpenBLAS runs that shape much faster than the
batch-major h @ Wh at the batches training uses (one thread, H=512: 428 vs 730 us at B=16, the
share of one of two MPI ranks; 747 vs 1047 us at B=32), and the backward's product Wh @ da^T
needs da^T anyway. What is measured per window (B=16, one thread): forward 104 -> 70 ms, backward
115 -> 107 ms; `mpirun -n 2` training 16.4k -> 19.9k chars/s. The model still sees batch-major
arrays: xp is read, and hs and dxp are written, transposed per step, which costs less than the
products gain. Results are bit-identical to the batch-major loop. (A (4H, T, B) window, with
strided per-step blocks, gained nothing: each step's rows then lie on different pages.)
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
        if len(h) == 1:
            a = h @ p["Wh"]                                         # (1, 4H): a matrix-vector product
        else:   # a few beams: the product turned around, as the window passes run it (see above)
            a = np.matmul(p["Wh"].T, h.T).T                         # (B, 4H), a view of (4H, B)
        a += xp                     # in place, here and below: at batch 1 each temporary costs
        self._gates(a)              # more than the arithmetic (same operations, same results)
        c = a[:, H:2 * H] * c
        c += a[:, :H] * a[:, 3 * H:]
        h = np.tanh(c)
        h *= a[:, 2 * H:3 * H]
        return h, c

    def forward(self, p, xp, state):
        T, B, _ = xp.shape
        H, H3 = self.H, 3 * self.H
        WhT = np.ascontiguousarray(p["Wh"].T)                       # (4H, H), once per window
        ws = self.workspace(T, B, xp.dtype, {
            "hsT": (T + 1, H, B), "csT": (T + 1, H, B),             # [0] = incoming state
            "tanh_cT": (T, H, B), "actsT": (T, 4 * H, B),           # acts: i, f, o, g activations
            "hs": (T + 1, B, H), "dxp": (T, B, 4 * H), "daT": (4 * H, B), "dgateT": (4 * H, B),
            "dhT": (H, B), "dcT": (H, B), "tmpT": (H, B), "dh_nextT": (H, B)})
        hsT, csT, tanh_cT, actsT, tmp = ws["hsT"], ws["csT"], ws["tanh_cT"], ws["actsT"], ws["tmpT"]
        hsT[0], csT[0] = state[0].T, state[1].T
        for t in range(T):
            a = actsT[t]                                            # (4H, B)
            if B == 1:  # a (4H, 1) column is a (1, 4H) row: the row product is the faster gemv
                np.matmul(hsT[t].T, p["Wh"], out=a.T)
            else:
                np.matmul(WhT, hsT[t], out=a)
            a += xp[t].T
            sigmoid(a[:H3], out=a[:H3])
            np.tanh(a[H3:], out=a[H3:])
            np.multiply(a[H:2 * H], csT[t], out=csT[t + 1])        # c' = f * c + i * g
            np.multiply(a[:H], a[H3:], out=tmp)
            csT[t + 1] += tmp
            np.tanh(csT[t + 1], out=tanh_cT[t])
            np.multiply(a[2 * H:H3], tanh_cT[t], out=hsT[t + 1])   # h' = o * tanh(c')
        hs = ws["hs"]                                               # (T + 1, B, H), [0] = incoming h
        np.copyto(hs, hsT.transpose(0, 2, 1))
        return hs[1:], (hs[T].copy(), csT[T].T.copy()), ws

    def backward(self, p, cache, dhs, dstate):
        ws = cache.check()
        hs, csT, tanh_cT, actsT, dxp = ws["hs"], ws["csT"], ws["tanh_cT"], ws["actsT"], ws["dxp"]
        da, dgate, dh, dc, tmp, dh_next = (ws[k] for k in ("daT", "dgateT", "dhT", "dcT", "tmpT", "dh_nextT"))
        T, B, H = dhs.shape
        H3, Wh = 3 * H, p["Wh"]
        dh_next[...], dc[...] = dstate[0].T, dstate[1].T
        for t in reversed(range(T)):
            a = actsT[t]                                            # (4H, B)
            i, f, o, g = a[:H], a[H:2 * H], a[2 * H:H3], a[H3:]
            np.add(dhs[t].T, dh_next, out=dh)
            # dc += dh * o * tanh'(c'): the path through h' on top of the carried dc
            np.multiply(tanh_cT[t], tanh_cT[t], out=tmp)
            np.subtract(1.0, tmp, out=tmp)
            tmp *= o
            tmp *= dh
            dc += tmp
            # gradients w.r.t. the activations, then times the local derivatives in one pass
            np.multiply(dh, tanh_cT[t], out=da[2 * H:H3])          # d o
            np.multiply(dc, g, out=da[:H])                          # d i
            np.multiply(dc, csT[t], out=da[H:2 * H])                # d f
            np.multiply(dc, i, out=da[H3:])                         # d g
            np.multiply(a[:H3], a[:H3], out=dgate[:H3])             # sigmoid' = s - s^2
            np.subtract(a[:H3], dgate[:H3], out=dgate[:H3])
            np.multiply(g, g, out=dgate[H3:])                       # tanh' = 1 - g^2
            np.subtract(1.0, dgate[H3:], out=dgate[H3:])
            da *= dgate                                             # grad_ai, grad_af, grad_ao, grad_ag
            dc *= f
            np.matmul(Wh, da, out=dh_next)                          # (H, 4H) @ (4H, B)
            np.copyto(dxp[t], da.T)
        # all T weight gradients as one product: (H, T*B) @ (T*B, 4H)
        dWh = hs[:T].reshape(T * B, H).T @ dxp.reshape(T * B, 4 * H)
        return dxp, {"Wh": dWh}, (np.ascontiguousarray(dh_next.T), np.ascontiguousarray(dc.T))
