"""Validation loss: bits per character of a model over a text, with the window forward (no dropout).

The validation ids are cut into up to B contiguous rows (each starting from the zero state) and
read in chunks of T characters, carrying the hidden state from chunk to chunk, so every character
after a row's first is predicted from all of the row before it (the same carried-state reading
the trainer uses). The first character of each row is context only.
"""
from __future__ import annotations

import math

import numpy as np


class Abandoned(Exception):
    """Raised when `should_stop()` turns true mid-way (a signal arrived)."""


def log_softmax_nll(logits, targets) -> float:
    """Summed negative log-likelihood (nats) of targets (T, B) under logits (T, B, V)."""
    V = logits.shape[-1]
    z = logits.reshape(-1, V)
    m = z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z - m).sum(axis=1)) + m[:, 0]                     # (N,)
    picked = z[np.arange(z.shape[0]), targets.reshape(-1)]                 # (N,)
    return float((lse - picked).astype(np.float64).sum())


def evaluate_bpc(model, ids: np.ndarray, batch: int = 16, seq: int = 256, should_stop=None) -> float:
    """Mean bits per character of `ids` (N,) predicted left to right."""
    ids = np.asarray(ids, dtype=np.int32)
    B = max(1, min(batch, (len(ids) - 1) // 2))
    L = (len(ids) - 1) // B                                                  # predictions per row
    if L < 1:
        raise ValueError("validation text needs at least 2 characters")
    rows = np.stack([ids[b * L: b * L + L + 1] for b in range(B)], axis=1)  # (L+1, B)
    state, total = model.zero_state(B), 0.0
    for s in range(0, L, seq):
        if should_stop is not None and should_stop():
            raise Abandoned()
        e = min(s + seq, L)
        x, y = rows[s:e], rows[s + 1:e + 1]                                  # (t, B) each
        logits, state, _ = model.forward(x, state)
        total += log_softmax_nll(logits, y)
    return total / (L * B) / math.log(2)
