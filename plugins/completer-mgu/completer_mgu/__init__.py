"""completer-mgu: the Minimal Gated Unit (Zhou et al. 2016) as a completer cell plugin.

An example of a third-party cell: it only imports completer's public cell contract
(`completer.cells.base`) and is found through the `completer.cells` entry point declared in this
distribution's pyproject.toml. The MGU is a GRU with one gate, f, that both resets and updates:

  f  = sigmoid(Wf x + Uf h + bf)
  h~ = tanh(Wh x + Uh (f * h) + bh)
  h' = (1 - f) * h + f * h~

Two blocks of input projection (G = 2: f, then h~), so the model computes xp = x @ Wx + b of
shape (T, B, 2H), i.e. [Wf x + bf, Wh x + bh], for the whole window; the cell holds the
recurrent matrices Uf and Uh, both (H, H). They cannot be fused into one product per step
because Uh multiplies f * h, which needs f first: two (B, H) @ (H, H) products per step, against
one (B, H) @ (H, 3H) for the GRU, with 2/3 of the GRU's parameters.
"""
from __future__ import annotations

import numpy as np

from completer.cells.base import Cell, sigmoid

__version__ = "0.1.0"


class MGU(Cell):
    name = "mgu"
    gates = 2
    n_states = 1

    def init_params(self, rng, dtype=np.float32):
        p = super().init_params(rng, dtype)                         # Wx (D, 2H), b (2H,)
        p["Uf"] = self.uniform(rng, (self.H, self.H), dtype)
        p["Uh"] = self.uniform(rng, (self.H, self.H), dtype)
        return p

    def step(self, p, xp, state):
        (h,) = state
        H = self.H
        f = sigmoid(xp[:, :H] + h @ p["Uf"])                        # (B, H)
        hc = np.tanh(xp[:, H:] + (f * h) @ p["Uh"])                 # (B, H) candidate h~
        return (h + f * (hc - h),)

    def forward(self, p, xp, state):
        T, B, _ = xp.shape
        H, Uf, Uh = self.H, p["Uf"], p["Uh"]
        hs = np.empty((T + 1, B, H), xp.dtype)                      # hs[t] is the h entering step t
        acts = np.empty((T, B, 2 * H), xp.dtype)                    # f, h~ per step
        fh = np.empty((T, B, H), xp.dtype)                          # f * h, input of Uh
        hs[0] = state[0]
        for t in range(T):
            f, hc = acts[t, :, :H], acts[t, :, H:]
            np.matmul(hs[t], Uf, out=f)
            f += xp[t, :, :H]
            sigmoid(f, out=f)
            np.multiply(f, hs[t], out=fh[t])
            np.matmul(fh[t], Uh, out=hc)
            hc += xp[t, :, H:]
            np.tanh(hc, out=hc)
            np.subtract(hc, hs[t], out=hs[t + 1])                   # h' = h + f * (h~ - h)
            hs[t + 1] *= f
            hs[t + 1] += hs[t]
        return hs[1:], (hs[T].copy(),), (hs, acts, fh)

    def backward(self, p, cache, dhs, dstate):
        hs, acts, fh = cache
        T, B, H = dhs.shape
        UfT = np.ascontiguousarray(p["Uf"].T)                       # (H, H)
        UhT = np.ascontiguousarray(p["Uh"].T)
        dxp = np.empty_like(acts)                                   # (T, B, 2H): grad_af, grad_ahc
        dh_next = dstate[0].copy()
        for t in reversed(range(T)):
            h, f, hc = hs[t], acts[t, :, :H], acts[t, :, H:]
            grad_af, grad_ahc = dxp[t, :, :H], dxp[t, :, H:]
            dh = dhs[t] + dh_next                                   # (B, H) grad of h'
            np.multiply(dh * f, 1.0 - hc * hc, out=grad_ahc)        # through h~ = tanh(ahc)
            grad_fh = grad_ahc @ UhT                                # (B, H) grad of f * h
            grad_f = dh * (hc - h) + grad_fh * h
            np.multiply(grad_f, f * (1.0 - f), out=grad_af)         # through f = sigmoid(af)
            dh_next = dh * (1.0 - f) + grad_fh * f + grad_af @ UfT
        # weight gradients of the whole window as one product each
        dUf = hs[:T].reshape(T * B, H).T @ dxp[:, :, :H].reshape(T * B, H)
        dUh = fh.reshape(T * B, H).T @ dxp[:, :, H:].reshape(T * B, H)
        return dxp, {"Uf": dUf, "Uh": dUh}, (dh_next,)
