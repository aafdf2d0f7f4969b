"""Fitting the confidence gate (completer.engine.gate) from `completer eval --save-gate FILE`.

    pairs = []                                   # (features (F,), exact) of every suggestion
    evaluate(..., collect=pairs)
    fit_gate(pairs, meta).save("checkpoints/default.gate.json")

The label is Exact Match: the suggestion is the rest of the line (what the user would accept
whole). The default threshold is the lowest at which the shown suggestions of the fitting set are
right at least PRECISION of the time (issue 19's cold-start goal: 30%): the most suggestions shown
at that precision (if no threshold reaches it, the one maximising F1 of shown against exact).
The fitting set is unseen and cold to warm, so on a project the model and memory know, the same
threshold shows more right suggestions (docs/gate.md). Frontends may set their own (serve's `gate`
setting, the REPL's `:gate`).
"""
from __future__ import annotations

import numpy as np

from completer.engine.gate import Gate
from completer.errors import CompleterError

L2 = 1.0        # the weights' penalty (standardised features): a few thousand suggestions fit ~15 weights
PRECISION = 0.30


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


def precision_threshold(p: np.ndarray, y: np.ndarray, target: float = PRECISION) -> float | None:
    """The lowest threshold (a multiple of 0.01) at which y among p >= t averages >= target, or None."""
    for t in np.arange(0.01, 1.0, 0.01):
        shown = p >= t
        if shown.sum() >= 10 and y[shown].mean() >= target:
            return float(round(t, 2))
    return None


def fit_gate(pairs, meta: dict, l2: float = L2) -> Gate:
    if not pairs:
        raise CompleterError("--save-gate: no suggestions to fit the gate on")
    X = np.stack([f for f, _ in pairs])
    y = np.array([float(e) for _, e in pairs])
    gate = Gate.fit(X, y, l2=l2, meta=meta)
    p = gate.probs(X)
    t = precision_threshold(p, y)
    gate.threshold = t if t is not None else best_threshold(p, y)
    gate.meta.update(suggestions=int(len(y)), exact=int(y.sum()))
    return gate
