"""The serving view of a trained CharModel: what the engine steps at batch 1 (or a few beams).

    net = Net(model, vocab)
    state = net.read(net.start, ids)    # ids (T,): the window path, one batched input projection
    state = net.step(ids, state)        # ids (B,): one step per row
    lp = net.logprobs(state)            # (B, V) log-probabilities, UNK excluded (-inf)
    z = net.logits(state)               # (B, V) the same up to a constant per row (for the mixer)
"""
from __future__ import annotations

import numpy as np

from completer.model.start import start_state


class Net:
    """A CharModel's serving view: per-layer params, the input table and the head, cached once."""

    def __init__(self, model, vocab, cells=None):
        """cells: the cells to run (default the model's); an adapted document's Net shares the
        engine's, whose window buffers are used under the engine lock only. `start` is the state
        every read begins from (completer.model.start: not the zero state)."""
        self.cells = model.cells if cells is None else cells
        # matrices in Fortran order: at batch 1, h @ W is a matrix-vector product, and OpenBLAS's
        # sgemv runs ~25% faster over W's transpose stored row by row (39 vs 53 us at 512 x 2048)
        self.params = [{k: np.asfortranarray(v) if v.ndim == 2 else v for k, v in model.layer_params(l).items()}
                       for l in range(len(model.cells))]
        self.table = model.input_table()                                    # (V, G*H)
        self.table.flags.writeable = False  # step hands cells views of its rows: read-only input
        self.head_W = np.asfortranarray(model.params["head.W"])             # (H, V)
        self.head_b = model.params["head.b"].copy()
        self.head_b[-1] = -np.inf   # Vocab puts UNK last: never suggest the unknown symbol
        self.start = start_state(model, vocab)

    def step(self, ids, state):
        """ids (B,) -> the state after reading them."""
        if len(ids) == 1:  # a row's view: fancy indexing costs 4 us of a ~90 us step
            i = int(ids[0])
            xp = self.table[i:i + 1]                                        # (1, G*H)
        else:
            xp = self.table[ids]                                            # (B, G*H)
        new = []
        for l, (cell, p) in enumerate(zip(self.cells, self.params)):
            if l:
                xp = h @ p["Wx"] + p["b"]
            s = cell.step(p, xp, state[l])
            new.append(s)
            h = s[0]                                                        # (B, H)
        return new

    def read(self, state, ids):
        """ids (T,) read from `state` through the window path; the final state."""
        if len(ids) <= 2:  # a window costs more set-up than a step or two
            for t in range(len(ids)):
                state = self.step(ids[t:t + 1], state)
            return state
        xp = self.table[ids][:, None, :]                                    # (T, 1, G*H)
        new = []
        for l, (cell, p) in enumerate(zip(self.cells, self.params)):
            if l:
                xp = hs @ p["Wx"] + p["b"]                                  # (T, 1, G*H)
            hs, s, _ = cell.forward(p, xp, state[l])                        # hs (T, 1, H)
            new.append(s)
        return new

    def logits(self, state) -> np.ndarray:
        """(B, V) float32 scores of the next character, log-probabilities up to a constant per row
        (UNK -inf). The memory's log-linear mixer takes these as they are: a row's constant
        cancels in its normalisation, so the log-softmax is only paid without it."""
        z = state[-1][0] @ self.head_W                                      # (B, V)
        z += self.head_b
        return z

    def logprobs(self, state) -> np.ndarray:
        """(B, V) float32 log-probabilities of the next character (UNK excluded)."""
        z = self.logits(state)
        if len(z) == 1:  # whole-array reductions: a third of the axis=1 ones' cost at batch 1
            z -= z.max()
            z -= np.float32(np.log(np.exp(z).sum()))
            return z
        z -= z.max(axis=1, keepdims=True)
        z -= np.log(np.exp(z).sum(axis=1, keepdims=True))
        return z

