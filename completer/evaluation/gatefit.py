"""Fitting the confidence gate (completer.engine.gate) from `completer eval --save-gate FILE`.

    pairs = []                                   # (features (F,), exact) of every suggestion
    evaluate(..., collect=pairs)
    fit_gate(pairs, meta).save("checkpoints/default.gate.json")

The label is Exact Match: the suggestion is the rest of the line (what the user would accept
whole). The default threshold maximises F1 of the gate read as a classifier of exact suggestions
(precision among the shown ones against the share of exact ones shown), on the fitting set;
frontends may set their own (serve's `gate` setting, the REPL's `:gate`).
"""
from __future__ import annotations

import numpy as np

from completer.engine.gate import Gate
from completer.errors import CompleterError

L2 = 1.0        # the weights' penalty (standardised features): a few thousand suggestions fit ~15 weights


def best_threshold(p: np.ndarray, y: np.ndarray) -> float:
    """The threshold (a multiple of 0.01) maximising F1 of `p >= t` against y."""
    best, best_f1 = 0.5, -1.0
    total = y.sum()
    for t in np.arange(0.01, 1.0, 0.01):
        shown = p >= t
        k = shown.sum()
        if not k or not total:
            continue
        prec, rec = y[shown].sum() / k, y[shown].sum() / total
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        if f1 > best_f1:
            best, best_f1 = float(round(t, 2)), f1
    return best


def fit_gate(pairs, meta: dict, l2: float = L2) -> Gate:
    if not pairs:
        raise CompleterError("--save-gate: no suggestions to fit the gate on")
    X = np.stack([f for f, _ in pairs])
    y = np.array([float(e) for _, e in pairs])
    gate = Gate.fit(X, y, l2=l2, meta=meta)
    p = gate.probs(X)
    gate.threshold = best_threshold(p, y)
    gate.meta.update(suggestions=int(len(y)), exact=int(y.sum()))
    return gate
